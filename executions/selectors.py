"""Reads: executions, always scoped to what the user may see, and their stored events."""

from __future__ import annotations

from collections.abc import Collection

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, F, QuerySet

from .models import Execution, ExecutionStatus, ProgressSnapshot

SORT_FIELDS = ("created_at", "started_at", "completed_at", "status")
#: The statuses of executions that have not ended: what the execution feed follows.
UNENDED_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


def execution_visible_to(user: User | AnonymousUser) -> QuerySet[Execution]:
    """Staff see every execution; anyone else only their own.

    The owner comes with each row: the public shape names it (``frames.execution_dict``).
    """
    if not user.is_authenticated or not user.is_active:
        return Execution.objects.none()
    if user.is_staff:
        return Execution.objects.select_related("owner")
    return Execution.objects.select_related("owner").filter(owner=user)


def execution_feed_for_user(
    *,
    user: User | AnonymousUser,
    everyone: bool = False,
    statuses: Collection[str] = UNENDED_STATUSES,
) -> QuerySet[Execution]:
    """The executions the execution feed shows ``user``: not ended, newest first.

    The user's own, or (``everyone``, staff only) all they may see; only those
    in ``statuses`` (a subset of :data:`UNENDED_STATUSES`).
    """
    query = execution_visible_to(user)
    if not everyone:
        query = query.filter(owner=user) if user.is_authenticated else query.none()
    wanted = [status for status in statuses if status in UNENDED_STATUSES]
    return query.filter(status__in=wanted).order_by("-created_at", "-id")


EXECUTION_ID_MAX_LENGTH: int = Execution._meta.pk.max_length  # type: ignore[assignment]  # set on the id field


def could_exist(execution_id: str) -> bool:
    """False for an id no execution can have: longer than the key column, or with a
    NUL character (which PostgreSQL refuses in a query with an error, not a miss)."""
    return len(execution_id) <= EXECUTION_ID_MAX_LENGTH and "\x00" not in execution_id


def execution_get_for_user(*, user: User | AnonymousUser, execution_id: str) -> Execution | None:
    """The execution, or None when it is missing or someone else's (indistinguishable)."""
    if not could_exist(execution_id):
        return None
    return execution_visible_to(user).filter(pk=execution_id).first()


def execution_list_for_user(
    *,
    user: User | AnonymousUser,
    status: str | None = None,
    type: str | None = None,  # noqa: A002 - the contract's name
    target_id: str | None = None,
    sort: str = "created_at",
    order: str = "desc",
) -> QuerySet[Execution]:
    query = execution_visible_to(user)
    if status:
        query = query.filter(status=status)
    if type:
        query = query.filter(type=type)
    if target_id:
        # PostgreSQL refuses a NUL in a query with an error; no target has one.
        query = query.filter(target_id=target_id) if "\x00" not in target_id else query.none()
    descending = order == "desc"

    def ordered(name: str):
        expr = F(name)
        return expr.desc(nulls_last=True) if descending else expr.asc(nulls_last=True)

    keys = [ordered(sort)]
    if sort != "created_at":
        keys.append(ordered("created_at"))
    keys.append(ordered("id"))
    return query.order_by(*keys)


def event_frames_after(
    *, execution_id: str, after_seq: int = 0, before_seq: int | None = None
) -> list[tuple[int, str, str]]:
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


def execution_counts_by_status() -> dict[str, int]:
    """How many executions are stored in each status, every status present (0 when none).

    For the metrics scrape: one grouped count (the status index serves it), so
    the numbers are right whichever process answers, with no bookkeeping at
    each transition.
    """
    counts = dict.fromkeys(ExecutionStatus.values, 0)
    for status, count in Execution.objects.order_by().values_list("status").annotate(count=Count("pk")):
        counts[status] = count
    return counts
