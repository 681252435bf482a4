"""Reads of the stored event history."""

from __future__ import annotations

from .models import ProgressSnapshot


def event_frames_after(*, execution_id: str, after_seq: int = 0, before_seq: int | None = None) -> list[tuple[int, str, str]]:
    """``(seq, type, frame_text)`` of the stored events after ``after_seq``, oldest first."""
    query = ProgressSnapshot.objects.filter(execution_id=execution_id, seq__gt=after_seq)
    if before_seq is not None:
        query = query.filter(seq__lt=before_seq)
    return list(query.order_by("seq").values_list("seq", "type", "frame"))


def event_frame_at(*, execution_id: str, seq: int) -> str | None:
    return (
        ProgressSnapshot.objects.filter(execution_id=execution_id, seq=seq)
        .values_list("frame", flat=True)
        .first()
    )
