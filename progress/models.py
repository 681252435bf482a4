"""ProgressSnapshot: the numbered, append-only event history of an execution."""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    STARTED = "started", "Started"
    PROGRESS = "progress", "Progress"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_EVENT_TYPES = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})


class ProgressSnapshot(models.Model):
    execution = models.ForeignKey(
        "executions.Execution", on_delete=models.CASCADE, related_name="events"
    )
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
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="snapshot_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} #{self.seq} {self.type}"
