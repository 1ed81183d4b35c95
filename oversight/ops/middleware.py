"""Middleware that keeps Django's async request path free of thread hops.

Under ASGI Django runs its middleware chain on the event loop and adapts each middleware that can only run
synchronously with a hop into a thread and back (`sync_to_async` / `async_to_sync`). WhiteNoise's middleware is
sync-only, so every request paid two extra hops for it (and two more for any other sync-only middleware), each a
trip through the request's thread and the loop; the view itself is the one hop a request needs.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise that also runs on the loop: a static file is found by a dict lookup (a stat with autorefresh,
    i.e. DEBUG) and served from the request's thread; anything else goes straight on to the next middleware."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
