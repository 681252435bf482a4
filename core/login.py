"""The login pages (``/accounts/login/`` and the admin's), throttled per client address.

Django itself lets anyone guess passwords as fast as the server answers: here
an address that failed too often gets 429 with ``Retry-After``.
"""


from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse

from .throttles import FailedLoginThrottle, retry_after


def login_throttled(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """``view`` answering 429 once an address has failed too often; a failure is
    a POST answered with the form again (200), a success redirects."""

    @wraps(view)
    def throttled(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        throttle = FailedLoginThrottle()
        if not throttle.allow_request(request, None):
            wait = retry_after(throttle.wait())
            throttled_page = TemplateResponse(request, "registration/throttled.html", {"wait": wait}, status=429)
            throttled_page["Retry-After"] = str(wait)
            return throttled_page
        response = view(request, *args, **kwargs)
        if response.status_code == 200:
            throttle.record_failure()
        return response

    return throttled
