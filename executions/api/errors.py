"""The REST API's answer to each domain error: one table, one exception handler.

The domain raises its own errors (``executions.errors``) and knows no HTTP;
the views call it without a try block. :func:`exception_handler` (DRF's
``EXCEPTION_HANDLER``) turns a domain error into the DRF exception of the
answer it gets, then lets ``core.api_errors.exception_handler`` render it like
any other: every error body has its ``detail`` string. A domain error missing
from the tables is a 500, and a test fails.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from core.api_errors import exception_handler as core_exception_handler
from executions.errors import (
    BrokerUnavailableError,
    ExecutionsError,
    IdempotencyConflictError,
    InputsInvalidError,
    NotCancellableError,
    NotResumableError,
    TargetNotFoundError,
    UnsafeCallbackUrlError,
)

#: Domain errors about one field of the request body: a 400 ``Invalid request``
#: with the messages under ``errors.<field>``, as a serializer's own errors.
FIELD_OF: dict[type[ExecutionsError], str] = {
    InputsInvalidError: "inputs",
    UnsafeCallbackUrlError: "callback_url",
}

#: The status of every other domain error; its message is the ``detail``.
STATUS_OF: dict[type[ExecutionsError], int] = {
    TargetNotFoundError: status.HTTP_404_NOT_FOUND,
    NotCancellableError: status.HTTP_400_BAD_REQUEST,
    NotResumableError: status.HTTP_400_BAD_REQUEST,
    IdempotencyConflictError: status.HTTP_409_CONFLICT,
    BrokerUnavailableError: status.HTTP_503_SERVICE_UNAVAILABLE,
}


class DomainErrorAnswer(APIException):
    """A domain error as DRF renders an exception: its message as ``detail``, with its status."""

    def __init__(self, error: ExecutionsError, status_code: int):
        super().__init__(detail=str(error))
        self.status_code = status_code


def api_exception(error: ExecutionsError) -> APIException:
    """The DRF exception whose answer ``error`` gets; KeyError for a class in neither table."""
    for error_class, field in FIELD_OF.items():
        if isinstance(error, error_class):
            messages = error.errors if isinstance(error, InputsInvalidError) else [str(error)]
            return ValidationError({field: messages})
    for error_class, status_code in STATUS_OF.items():
        if isinstance(error, error_class):
            return DomainErrorAnswer(error, status_code)
    raise KeyError(f"{type(error).__name__} has no answer in executions.api.errors")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: domain errors by the tables above, anything else by core's handler."""
    if not isinstance(exc, ExecutionsError):
        return core_exception_handler(exc, context)
    response = core_exception_handler(api_exception(exc), context)
    if response is not None and isinstance(exc, BrokerUnavailableError):
        response["Retry-After"] = str(settings.BROKER_RETRY_AFTER_SECONDS)
    return response
