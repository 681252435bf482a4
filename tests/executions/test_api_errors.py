"""The REST API's answer to each domain error (``executions.api.errors``).

The views' own tests (``test_api``, ``test_api_responses``, ``test_rerun``,
``test_idempotency``) check these answers through real requests; here, that
every domain error has one, and exactly which.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.exceptions import NotFound

from executions.api.errors import exception_handler
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

#: One instance of every domain error, and the answer it gets: status and body.
ANSWERS: list[tuple[ExecutionsError, int, dict[str, Any]]] = [
    (TargetNotFoundError("pipeline", "nope"), 404, {"detail": "Pipeline 'nope' not found"}),
    (TargetNotFoundError("agent", "nope"), 404, {"detail": "Agent 'nope' not found"}),
    (
        InputsInvalidError({"steps": ["Must be a valid integer."]}),
        400,
        {"detail": "Invalid request", "errors": {"inputs": {"steps": ["Must be a valid integer."]}}},
    ),
    (
        UnsafeCallbackUrlError("Enter a valid http(s) URL."),
        400,
        {"detail": "Invalid request", "errors": {"callback_url": ["Enter a valid http(s) URL."]}},
    ),
    (
        IdempotencyConflictError(),
        409,
        {"detail": "This Idempotency-Key was already used with a different request body"},
    ),
    (
        BrokerUnavailableError(ConnectionRefusedError(111, "refused")),
        503,
        {"detail": "The task queue is unavailable, try again shortly (ConnectionRefusedError)"},
    ),
    (NotCancellableError("completed"), 400, {"detail": "Cannot cancel execution with status 'completed'"}),
    (
        NotResumableError("Execution 'exec_x' is not durable: it has no stored steps to resume from"),
        400,
        {"detail": "Execution 'exec_x' is not durable: it has no stored steps to resume from"},
    ),
]


def subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *subclasses(sub)}
    return found


def test_every_domain_error_has_an_answer_here() -> None:
    assert {type(error) for error, _, _ in ANSWERS} == subclasses(ExecutionsError)


@pytest.mark.parametrize(("error", "status", "body"), ANSWERS, ids=lambda value: type(value).__name__)
def test_the_answer_to_a_domain_error(error: ExecutionsError, status: int, body: dict[str, Any], settings: Any) -> None:
    settings.BROKER_RETRY_AFTER_SECONDS = 7
    response = exception_handler(error, {})
    assert response is not None
    assert (response.status_code, json.loads(json.dumps(response.data))) == (status, body)
    assert response.get("Retry-After") == ("7" if isinstance(error, BrokerUnavailableError) else None)


def test_other_errors_go_to_the_site_wide_handler() -> None:
    response = exception_handler(NotFound("Execution 'exec_x' not found"), {})
    assert response is not None and (response.status_code, response.data) == (
        404, {"detail": "Execution 'exec_x' not found"}
    )
    assert exception_handler(RuntimeError("a bug"), {}) is None
