"""Writes that start or stop executions (events themselves: ``executions.events``).

Each service owns its transaction and raises the domain's errors
(``executions.errors``) for a request it refuses, leaving nothing stored. A
run's task is queued only after the transaction that stored it commits
(``executions.broker``), so a worker never looks for a row it cannot see.
This module imports none of the running code (tasks, runner, webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from .broker import run_enqueue
from .callbacks import resolve_callback_url
from .errors import BrokerUnavailableError, NotCancellableError, NotResumableError, TargetNotFoundError
from .events import RecordedEvent, event_record
from .frames import created_frame, dumps, execution_dict, iso
from .idempotency import idempotency_key_store, idempotent_execution
from .limits import run_time_limits
from .models import EventType, Execution, ExecutionStatus
from .registry import get_target
from .signals import execution_created, send_robust_logged
from .steps import steps_copy_for_resume, steps_resume_index


@dataclass(frozen=True)
class CreatedExecution:
    """A submitted execution, as ``signals.execution_created`` announces it: primitives and its frame."""

    execution_id: str
    owner_id: int
    #: The ``created`` frame (``frames.created_frame``) as JSON text.
    frame_text: str
    timestamp: str


@dataclass(frozen=True)
class Submission:
    """What a submit made: the execution, and whether an earlier request with its key made it."""

    execution: Execution
    replayed: bool = False


def execution_create(
    *,
    owner: User,
    type: str,  # noqa: A002 - the contract's name
    target_id: str,
    inputs: dict[str, Any],
    config: dict[str, Any],
    callback_url: str = "",
    rerun_of: str | None = None,
    resume_of: Execution | None = None,
    idempotency_key: str = "",
    request_fingerprint: str = "",
) -> Execution:
    """Validate against the target's declaration, store, queue after commit, then announce it.

    Raises ``UnsafeCallbackUrlError`` (a ``callback_url`` on a private
    address), ``TargetNotFoundError`` or ``InputsInvalidError``, checked in
    that order, and ``BrokerUnavailableError`` when the broker cannot take the
    task: the row is then deleted again, so a refused submit leaves nothing.
    With an ``idempotency_key``, the key is stored in the same transaction
    (``IntegrityError`` when another request stored it first: use
    :func:`execution_submit`). ``signals.execution_created`` goes out once the
    task is queued. ``durable`` is copied from the target. With ``resume_of``
    (a failed durable execution), the new one resumes it from its failed step:
    its step rows are copied in the same transaction (``NotResumableError``
    when it cannot be).
    """
    if callback_url:
        resolve_callback_url(callback_url)
    target = get_target(type, target_id)
    if target is None:
        raise TargetNotFoundError(type, target_id)
    cleaned = target.validate_inputs(inputs)
    if resume_of is not None and not target.durable:
        raise NotResumableError(f"The target '{target_id}' is no longer durable: it has no steps to resume")
    execution: Execution | None = None
    try:
        with transaction.atomic():
            execution = Execution.objects.create(
                owner=owner,
                type=type,
                target_id=target_id,
                inputs=cleaned,
                config=config,
                callback_url=callback_url or "",
                enqueued_at=timezone.now(),
                rerun_of=rerun_of,
                durable=target.durable,
                from_failed_step=resume_of is not None,
            )
            if resume_of is not None:
                steps_copy_for_resume(original=resume_of, new_execution=execution)
            if idempotency_key:
                idempotency_key_store(
                    owner=owner, key=idempotency_key, fingerprint=request_fingerprint, execution=execution
                )
            created = execution
            # After commit, or the worker may not find the row; robust=False
            # so that a broker failure reaches this caller, and the
            # announcement registered after it is then never sent.
            transaction.on_commit(lambda: execution_enqueue(created), robust=False)
            transaction.on_commit(lambda: _announce_created(created), robust=True)
    except BrokerUnavailableError:
        if execution is not None:
            Execution.objects.filter(pk=execution.id, status=ExecutionStatus.PENDING, seq=0).delete()
        raise
    return execution


def _announce_created(execution: Execution) -> None:
    now = timezone.now()
    created = CreatedExecution(
        execution_id=execution.id,
        owner_id=execution.owner_id,
        frame_text=dumps(created_frame(execution=execution_dict(execution), timestamp=now)),
        timestamp=iso(now),
    )
    send_robust_logged(execution_created, f"created {execution.id}", sender=CreatedExecution, execution=created)


def execution_submit(
    *,
    owner: User,
    type: str,  # noqa: A002 - the contract's name
    target_id: str,
    inputs: dict[str, Any],
    config: dict[str, Any],
    callback_url: str = "",
    idempotency_key: str = "",
    request_fingerprint: str = "",
) -> Submission:
    """:func:`execution_create`, idempotent when an ``idempotency_key`` is given.

    The same key (same user, within ``IDEMPOTENCY_KEY_HOURS``) with the same
    ``request_fingerprint`` returns the execution the first request made,
    ``replayed``; with another fingerprint it raises
    ``IdempotencyConflictError``. Of two simultaneous requests with one
    key, the unique constraint lets one store it; the other finds its execution.
    Raises what :func:`execution_create` raises.
    """
    arguments: dict[str, Any] = {
        "owner": owner, "type": type, "target_id": target_id, "inputs": inputs, "config": config,
        "callback_url": callback_url,
    }
    if not idempotency_key:
        return Submission(execution_create(**arguments))
    earlier = idempotent_execution(owner=owner, key=idempotency_key, fingerprint=request_fingerprint)
    if earlier is not None:
        return Submission(earlier, replayed=True)
    try:
        return Submission(
            execution_create(**arguments, idempotency_key=idempotency_key, request_fingerprint=request_fingerprint)
        )
    except IntegrityError:
        # Another request stored the key between the look-up and this insert.
        earlier = idempotent_execution(owner=owner, key=idempotency_key, fingerprint=request_fingerprint)
        if earlier is None:
            raise
        return Submission(earlier, replayed=True)


def execution_rerun(*, original: Execution, owner: User, from_failed_step: bool = False) -> Execution:
    """A new execution of ``original``'s target with its inputs and config, owned by ``owner``.

    The caller has checked that ``owner`` may see ``original`` (selectors).
    The inputs are validated again (the target's declaration may have changed
    since); ``callback_url`` is not carried over (it was the original owner's
    choice). ``from_failed_step`` resumes a failed durable execution: the new
    one reuses the results of the steps the original completed and starts at
    its failed step; ``NotResumableError`` for any other execution, checked
    first. Raises what :func:`execution_create` raises.
    """
    if from_failed_step:
        steps_resume_index(original)
    return execution_create(
        owner=owner,
        type=original.type,
        target_id=original.target_id,
        inputs=original.inputs,
        config=original.config,
        rerun_of=original.id,
        resume_of=original if from_failed_step else None,
    )


def execution_enqueue(execution: Execution) -> None:
    """Hand the run's task to the broker, with its time limits; raise ``BrokerUnavailableError``.

    Also used to queue a pending execution again when its message was lost
    (``executions.maintenance``), and a durable run handed over
    (``executions.handover``): the run's claim makes a second delivery
    harmless. A handed-over run's limits are what remains of its time.
    """
    elapsed = 0.0
    if execution.status == ExecutionStatus.RUNNING and execution.started_at is not None:
        elapsed = max((timezone.now() - execution.started_at).total_seconds(), 0.0)
    soft, hard = run_time_limits(execution.config, elapsed_seconds=elapsed)
    run_enqueue(execution_id=execution.id, attempt=execution.attempt, soft_time_limit=soft, time_limit=hard)


def execution_cancel(*, execution_id: str) -> RecordedEvent:
    """Cancel a pending or running execution at once, in the database and on the sockets.

    A pending one never runs (its task's claim fails); a running one's target is
    interrupted by its monitor within ``PROGRESS_CANCEL_POLL_SECONDS``.
    Raises ``NotCancellableError`` when it has already ended.
    """
    recorded = event_record(execution_id=execution_id, event_type=EventType.CANCELLED)
    if recorded is None:
        status = Execution.objects.filter(pk=execution_id).values_list("status", flat=True).first()
        raise NotCancellableError(status or "unknown")
    return recorded
