import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")

# Django must be set up before anything imports models (the consumers do).
django.setup(set_prefix=False)

from oversight.ops.handler import OneHopASGIHandler  # noqa: E402

# What django.core.asgi.get_asgi_application() gives, with each request's sync work in one thread hop.
django_asgi_app = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from oversight.core.broadcast import bind_event_loop  # noqa: E402
from oversight.ops import gate  # noqa: E402
from oversight.realtime.routing import websocket_urlpatterns  # noqa: E402

if settings.DEADLINE_SWEEPER:
    from oversight.ops.sweeper import start_sweeper

    start_sweeper()

# Service code called from these connections publishes its channel-layer notes without blocking (broadcast).
application = bind_event_loop(
    ProtocolTypeRouter(
        {
            # A fixed set of threads for the views, and 503 + Retry-After past them (oversight/ops/gate.py).
            "http": gate.wrap(
                django_asgi_app,
                threads=settings.WEB_THREADS,
                queue_s=settings.WEB_QUEUE_S,
                queue_max=settings.WEB_QUEUE_MAX,
                static_url=settings.STATIC_URL,
            ),
            # Participants are addressed by their token; researchers (the monitor) by their session.
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
