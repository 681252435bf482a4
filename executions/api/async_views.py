"""Async GETs of one execution (``/executions/{id}`` and ``.../progress``): the two that pollers hit.

The common request is answered on the event loop with one query, read in a
pooled thread: a ``GET`` with no query string, an ``Accept`` that JSON
satisfies, a token this process has cached (``core.authentication``), and an
execution the user may see. Anything else goes to the DRF view unchanged,
which answers as it always did and fills the token cache. Answers are
rendered by DRF's ``JSONRenderer`` with DRF's headers: a client cannot tell
the two paths apart (a test compares them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from core.authentication import peek_token
from core.db import read_db
from executions.frames import execution_dict
from executions.selectors import could_exist, execution_visible_to

#: ``Accept`` values the JSON renderer satisfies without negotiation.
JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})
#: What DRF sends for these views (``APIView.finalize_response``).
ALLOW = "GET, HEAD, OPTIONS"
NOT_FOUND = object()

#: Reads an execution for a user: its answer (a JSON-able value, or None for 204), or NOT_FOUND.
Reader = Callable[[Any, str], Any]


def token_key(request: HttpRequest) -> str | None:
    """The key of a well-formed ``Authorization: Token <key>`` header, else None."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token" or not key or " " in key:
        return None
    return key


def served_here(request: HttpRequest) -> bool:
    """Whether the request is one this path answers exactly as DRF would (see the module docstring)."""
    return (
        request.method == "GET"
        and not request.META.get("QUERY_STRING")
        and request.META.get("HTTP_ACCEPT", "").strip() in JSON_ACCEPTS
    )


def read_execution(user: Any, execution_id: str) -> Any:
    if not could_exist(execution_id):
        return NOT_FOUND
    execution = execution_visible_to(user).filter(pk=execution_id).first()
    return NOT_FOUND if execution is None else execution_dict(execution)


def read_progress(user: Any, execution_id: str) -> Any:
    if not could_exist(execution_id):
        return NOT_FOUND
    row = execution_visible_to(user).filter(pk=execution_id).values_list("progress").first()
    return NOT_FOUND if row is None else row[0]


def json_response(data: Any) -> HttpResponse:
    """200 with ``data`` as DRF renders it, or 204 without a body for None (as DRF does)."""
    if data is None:
        response = HttpResponse(status=204)
        del response["Content-Type"]
    else:
        response = HttpResponse(JSONRenderer().render(data), content_type="application/json")
    response["Allow"] = ALLOW
    response["Vary"] = "Accept"
    return response


def async_get(view_class: type[APIView], read: Reader) -> Callable[..., Awaitable[HttpResponseBase]]:
    """An async view: the fast path for ``read``, ``view_class`` for everything else.

    The function carries ``cls`` and ``initkwargs`` like ``APIView.as_view()``,
    so the OpenAPI generator documents ``view_class`` for the route.
    """
    drf_view = view_class.as_view()
    drf_view_async = sync_to_async(drf_view)

    async def view(request: HttpRequest, execution_id: str) -> HttpResponseBase:
        key = token_key(request) if served_here(request) else None
        token = peek_token(key) if key else None
        if token is not None:
            answer = await read_db(read)(token.user, execution_id)
            if answer is not NOT_FOUND:
                return json_response(answer)
        return await drf_view_async(request, execution_id=execution_id)

    # What APIView.as_view() sets on its function (drf-spectacular reads it); a plain function has no such slots.
    view.cls = view_class  # type: ignore[attr-defined]  # see above
    view.initkwargs = {}  # type: ignore[attr-defined]  # see above
    view.__name__ = view.__qualname__ = getattr(drf_view, "__name__", "view")
    view.__doc__ = view_class.__doc__
    return csrf_exempt(view)
