from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """A strict CSP: scripts and styles only from our own origin, no inline script.

    Model output is rendered as sanitised Markdown; the CSP is the second line of defence should a payload
    ever slip through the sanitiser.

    Sync-only, like every middleware here: oversight.ops.handler runs the whole chain, the view and the
    response in one thread hop, as Django's WSGI handler would.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = "; ".join(
            [
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data:",
                "connect-src 'self' ws: wss:",
                "frame-ancestors 'none'",
                "base-uri 'self'",
                "form-action 'self' https:" if not settings.DEBUG else "form-action 'self' http: https:",
                "object-src 'none'",
            ]
        )

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
