"""The domain's rows: an Execution (its current state), its numbered event history
(ProgressSnapshot), the stored steps of a durable run (ExecutionStep), its webhook
attempts, the idempotency keys of submits, and the workers' heartbeats (WorkerBeat).

No logic lives here. Every state change after submission goes through
``executions.events.event_record``, the one writer of events; every step row
through ``executions.steps``. The terminal statuses (``TERMINAL_STATUSES``) are
defined here once; everything else derives them.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_execution_id() -> str:
    """A new execution id: ``exec_`` and 12 random hex digits."""
    return "exec_" + secrets.token_hex(6)


class ExecutionType(models.TextChoices):
    """What kind of target an execution runs."""

    PIPELINE = "pipeline", "Pipeline"
    AGENT = "agent", "Agent"


class ExecutionStatus(models.TextChoices):
    """Where an execution is in its life; the terminal ones are never left."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: The statuses an execution never leaves: the one definition of "ended".
TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
#: The others, in order (pending, running): the execution can still change, and be cancelled.
UNENDED_STATUSES = tuple(status for status in ExecutionStatus if status not in TERMINAL_STATUSES)


class Execution(models.Model):
    """One run of a pipeline or agent: what was submitted, and its current state."""

    id = models.CharField(primary_key=True, max_length=17, default=new_execution_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="executions"
    )
    type = models.CharField(max_length=16, choices=ExecutionType.choices)
    target_id = models.CharField(max_length=100)
    status = models.CharField(
        max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING
    )
    # {"current_step", "total_steps", "percentage", "current_step_name"} or null.
    progress = models.JSONField(null=True, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True, default="")
    # The seq of the last recorded event (0 while pending).
    seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Liveness (not part of the public shape). When the task message was last
    # handed to the broker: a pending execution whose message is gone is
    # queued again (``executions.maintenance``).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # The Celery worker (node name) that claimed the run, and the last time its
    # monitor thread said the run is alive; a stale heartbeat fails the run (a
    # durable one is handed over instead). A running execution with no worker
    # was handed over and not yet claimed again: the ``resumed`` event claims it.
    worker = models.CharField(max_length=255, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Durable runs (``executions.steps``). ``attempt`` is 1 for a run never
    # handed over; each hand-over adds one, and only the current attempt may
    # write (events and steps are fenced on it). ``durable`` is the target's
    # flag, copied at submit: the target's declaration may change later.
    attempt = models.PositiveIntegerField(default=1)
    durable = models.BooleanField(default=False)
    # Made by "resume from the failed step": its first steps are the
    # original's stored results (``ExecutionStep.reused_from``).
    from_failed_step = models.BooleanField(default=False)
    # The execution this one repeats (``execution_rerun``): its id, kept as text
    # so that it still says where the run came from once the original is pruned.
    rerun_of = models.CharField(max_length=17, null=True, blank=True)  # noqa: DJ001 - null is the contract's "not a rerun"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="exec_owner_created"),
            models.Index(fields=["status", "-created_at"], name="exec_status_created"),
            models.Index(fields=["type", "-created_at"], name="exec_type_created"),
            models.Index(fields=["target_id", "-created_at"], name="exec_target_created"),
            models.Index(fields=["started_at"], name="exec_started"),
            models.Index(fields=["completed_at"], name="exec_completed"),
            # The sweeper's two queries: running by heartbeat, pending by enqueue time.
            models.Index(fields=["status", "heartbeat_at"], name="exec_status_heartbeat"),
            models.Index(fields=["status", "enqueued_at"], name="exec_status_enqueued"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.target_id}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        """Whether it has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def percentage(self) -> float | None:
        """The progress's percentage, or None before any progress."""
        return None if self.progress is None else self.progress.get("percentage")


class EventType(models.TextChoices):
    """What an event records: the start, a progress change, or the end."""

    STARTED = "started", "Started"
    PROGRESS = "progress", "Progress"
    #: A durable run handed over to another worker was claimed again.
    RESUMED = "resumed", "Resumed"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: A terminal event is named after the terminal status it leads to.
TERMINAL_EVENT_TYPES = frozenset(EventType(status) for status in TERMINAL_STATUSES)


class ProgressSnapshot(models.Model):
    """One stored event: the numbered, append-only history of an execution."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=16, choices=EventType.choices)
    status = models.CharField(max_length=16)
    progress = models.JSONField(null=True, blank=True)
    # Type-specific keys of the frame (outputs, error).
    payload = models.JSONField(null=True, blank=True)
    timestamp = models.DateTimeField()
    # The exact JSON text sent on the WebSocket, serialised once when recorded:
    # replays and the events endpoint send it as stored.
    frame = models.TextField()

    class Meta:
        # The table was created by the ``progress`` app, which owned the model
        # before the domain did; keeping its name keeps existing data in place.
        db_table = "progress_progresssnapshot"
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="snapshot_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} #{self.seq} {self.type}"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class ExecutionStep(models.Model):
    """One declared step of a durable run: its state and, once completed, its stored result.

    Durable runs (and their reruns from the failed step) only: a row per
    declared step, written at the run's first start. A completed row is final:
    its result is returned instead of running the step again.
    """

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="steps")
    #: 0-based position in the declared step list.
    index = models.PositiveIntegerField()
    name = models.TextField()
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING)
    #: The attempt that ran it last; null until it runs.
    attempt = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: The step function's JSON result; null until completed.
    result = models.JSONField(null=True, blank=True)
    #: The last ``ctx.checkpoint()`` of the step, read back as ``ctx.resume_state``.
    checkpoint = models.JSONField(null=True, blank=True)
    #: The execution whose stored result this row reuses (resume from the failed step).
    reused_from = models.CharField(max_length=17, null=True, blank=True)  # noqa: DJ001 - null is "ran here"

    class Meta:
        ordering = ["execution", "index"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "index"], name="step_unique_index"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} step {self.index + 1} {self.name} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of an execution's terminal event to its ``callback_url``."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="webhook_attempts")
    attempt = models.PositiveSmallIntegerField()
    url = models.URLField(max_length=2000)
    event = models.CharField(max_length=32)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    delivered = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["execution", "attempt"]

    def __str__(self) -> str:
        return f"{self.execution_id} webhook #{self.attempt}"


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a user sent with a submit, and the execution it made.

    Stored in the submit's own transaction, with the execution: the unique
    constraint is what makes two simultaneous requests with one key create one
    execution. Live for ``IDEMPOTENCY_KEY_HOURS`` (``executions.idempotency``).
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    #: sha256 of the request body as parsed JSON (key order and spacing do not matter).
    fingerprint = models.CharField(max_length=64)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="idempotency_keys")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_unique_owner_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key!r} of user {self.owner_id} -> {self.execution_id}"


class WorkerBeat(models.Model):
    """A Celery worker that is (or was) alive: written by every worker every few seconds.

    ``/readyz`` needs at least one worker seen within the heartbeat window.
    """

    hostname = models.CharField(primary_key=True, max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.hostname} (last seen {self.last_seen_at:%Y-%m-%d %H:%M:%S})"
