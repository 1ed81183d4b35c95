from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """A strict CSP: scripts and styles only from our own origin, no inline script.

    Model output is rendered as sanitised Markdown; the CSP is the second line of defence should a payload
    ever slip through the sanitiser. Runs on the loop under ASGI (a sync-only middleware costs every request two
    thread hops; oversight/ops/middleware.py).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
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
        if self.is_async:
            return self.__acall__(request)
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response

    async def __acall__(self, request):
        response = await self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
