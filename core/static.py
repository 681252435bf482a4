"""WhiteNoise's static-file middleware, usable by an async request path.

``whitenoise.middleware.WhiteNoiseMiddleware`` is sync only, and one sync
middleware makes Django run the whole chain, and every view, in a thread
started for each request. This subclass is both: in an async chain a request
outside the static prefix goes straight on, and a static file is looked up
and opened in a pooled thread (file system work), as WhiteNoise does.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None) -> None:
        super().__init__(get_response)
        self.async_mode = iscoroutinefunction(get_response)
        # Only WHITENOISE_ROOT serves files outside the static prefix.
        self.prefix_only = not getattr(settings, "WHITENOISE_ROOT", None)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    def static_response(self, request: HttpRequest) -> HttpResponseBase | None:
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        return self.serve(static_file, request) if static_file is not None else None

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not self.prefix_only or request.path_info.startswith(self.static_prefix):
            response = await sync_to_async(self.static_response, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)
