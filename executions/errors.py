"""The errors the domain raises when it refuses a request, under one base.

Each says what went wrong in words a user can read (its ``str``); none knows
HTTP. The edges decide how to show them: the REST API maps each class to a
status in one handler (``executions.api.errors``), the pages and the admin
turn them into messages. Each keeps the builtin base it had (``LookupError``,
``ValueError``, ``RuntimeError``), so code that catches those still works.
"""

from __future__ import annotations


class ExecutionsError(Exception):
    """A request the domain refuses; the message is meant for the user."""


class TargetNotFoundError(ExecutionsError, LookupError):
    """No pipeline or agent is registered under that type and id."""

    def __init__(self, target_type: str, target_id: str):
        label = "Agent" if target_type == "agent" else "Pipeline"
        super().__init__(f"{label} '{target_id}' not found")


class InputsInvalidError(ExecutionsError, ValueError):
    """The inputs do not fit the target's declaration; ``errors`` holds the messages per field."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("Invalid inputs")
        self.errors = errors


class UnsafeCallbackUrlError(ExecutionsError, ValueError):
    """The callback URL is not http(s), does not resolve, or points at a private address."""


class IdempotencyConflictError(ExecutionsError, ValueError):
    """The Idempotency-Key was used before, by the same user, with another request body."""

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used with a different request body")


class BrokerUnavailableError(ExecutionsError, RuntimeError):
    """The broker could not take the run's task message (Redis down); nothing was stored."""

    def __init__(self, cause: BaseException):
        super().__init__(f"The task queue is unavailable, try again shortly ({type(cause).__name__})")


class NotCancellableError(ExecutionsError, ValueError):
    """The execution has already ended (or is gone); ``status`` says how."""

    def __init__(self, status: str):
        super().__init__(f"Cannot cancel execution with status '{status}'")
        self.status = status


class NotResumableError(ExecutionsError, ValueError):
    """The execution cannot be resumed from its failed step (not durable, not failed, no failed step)."""
