"""Every API error has a human-readable ``detail`` string (the contract), site-wide:
the DRF exception handler and the JSON 404 for unrouted ``/api/`` paths (the
parser is in :mod:`core.parsers`)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .parsers import PayloadTooLarge
from .throttles import retry_after


def _first_message(errors: Any) -> str | None:
    if isinstance(errors, list) and errors:
        return _first_message(errors[0]) if not isinstance(errors[0], str) else str(errors[0])
    if isinstance(errors, dict) and errors:
        return _first_message(next(iter(errors.values())))
    return None


def _render_as_json(context: dict[str, Any]) -> None:
    """Errors are JSON whatever the view renders on success (the schema view's
    default is YAML, the browsable API's HTML): the contract's ``detail`` string."""
    request = context.get("request")
    if request is not None:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = "application/json"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    _render_as_json(context)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail
        if isinstance(errors, dict) and set(errors) == {"non_field_errors"}:
            detail = _first_message(errors) or "Invalid request"
            return Response({"detail": detail, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        if not isinstance(errors, dict):
            errors = {"non_field_errors": errors}
        return Response({"detail": "Invalid request", "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.Throttled):
        # DRF leaves the header out when the wait rounds to 0; the schema promises it.
        response["Retry-After"] = str(retry_after(exc.wait))  # type: ignore[attr-defined]  # set by Throttled(), unknown to the stubs
    data = response.data
    if not (isinstance(data, dict) and isinstance(data.get("detail"), str)):
        response.data = {"detail": _first_message(data) or "Request failed", "errors": data}
    return response


@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any method on a path under /api/ that no route serves: a JSON 404, not Django's page."""
    return JsonResponse({"detail": f"No API endpoint at '{request.path}'"}, status=404)
