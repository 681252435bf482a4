"""The execution feed: one socket for many executions, ``WS /api/v1/executions/ws``.

A ``snapshot`` frame of the executions not ended yet, then for each execution
the socket follows: ``created``, ``started``, ``progress`` (at most one per
``PROGRESS_FEED_INTERVAL_SECONDS``, the latest state winning) and its terminal
frame (docs/protocol/feed.md). The socket joins one group (its user's,
or everyone's for staff) and never hears of an execution it may not show.
Every execution appears in the snapshot or a ``created`` frame before any of
its other frames, and each frame of it has a higher ``seq`` than the last.
Gaps are not filled frame by frame: the re-check sends what is overdue.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.utils import timezone

from core.db import chunks, read_db
from executions.frames import created_frame, dumps, execution_dict, snapshot_frame
from executions.models import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES, UNENDED_STATUSES, Execution
from executions.selectors import event_frame_at, execution_feed_for_user, execution_visible_to

from .auth import session_key_of
from .consumers import StreamConsumer
from .protocol import (
    CLOSE_BAD_REQUEST,
    FEED_GROUP_EVERYONE,
    STAFF_ONLY,
    UNAUTHENTICATED,
    FeedMessage,
    LayerReconnectedMessage,
    feed_group_of_user,
)
from .recheck import StreamAccess, Verdict, rechecker

#: The most executions a snapshot holds (the newest).
SNAPSHOT_MAX = 100
#: How many ended executions a socket remembers, so that a late message about one is ignored.
ENDED_MEMORY = 1000
#: The re-check looks for submits it missed from this long before the snapshot was read.
MISSED_SUBMITS_MARGIN = timedelta(seconds=5)


@dataclass(frozen=True)
class FeedRequest:
    """What the socket was asked to follow."""

    statuses: tuple[str, ...] = tuple(str(status) for status in UNENDED_STATUSES)
    #: ``scope=all``: every execution the (staff) user may see, not only their own.
    everyone: bool = False


def parse_feed_query(query_string: bytes) -> FeedRequest | str:
    """The request, or the message of the refusal (closed with ``CLOSE_BAD_REQUEST``).

    ``status``: comma-separated ``pending`` / ``running`` (the socket only
    carries executions that have not ended); ``scope``: ``own`` (the default)
    or ``all``. Each at most once; other parameters are ignored.
    """
    params = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    statuses = FeedRequest.statuses
    if "status" in params:
        values = params["status"]
        wanted = [part.strip() for part in values[-1].split(",")]
        if len(values) > 1 or not all(part in statuses for part in wanted):
            return "Invalid status"
        statuses = tuple(status for status in FeedRequest.statuses if status in wanted)
    everyone = False
    if "scope" in params:
        values = params["scope"]
        if len(values) > 1 or values[0] not in ("own", "all"):
            return "Invalid scope"
        everyone = values[0] == "all"
    return FeedRequest(statuses=statuses, everyone=everyone)


# --- database reads (run through ``read_db``) --------------------------------------------------


@dataclass
class Snapshot:
    """The first frame, and the seq of each execution it holds."""

    frame: str
    seqs: dict[str, int]
    #: When it was read: the re-check looks for submits made after it.
    read_at: datetime


def read_snapshot(*, user: Any, request: FeedRequest) -> Snapshot:
    """The executions not ended yet that the socket shows, newest first (at most ``SNAPSHOT_MAX``)."""
    now = timezone.now()
    executions = list(
        execution_feed_for_user(user=user, everyone=request.everyone, statuses=request.statuses)[:SNAPSHOT_MAX]
    )
    frame = snapshot_frame(executions=[execution_dict(execution) for execution in executions], timestamp=now)
    return Snapshot(frame=dumps(frame), seqs={e.id: e.seq for e in executions}, read_at=now)


def _feed_scope(user: Any, everyone: bool) -> Any:
    query = execution_visible_to(user)
    return query if everyone else query.filter(owner=user)


@dataclass
class Learned:
    """An execution the socket had not followed: its ``created`` frame, and its terminal one if it has ended."""

    created: str
    seq: int
    terminal: str | None


def _learned(execution: Execution) -> Learned:
    terminal = None
    if execution.status in TERMINAL_STATUSES:
        terminal = event_frame_at(execution_id=execution.id, seq=execution.seq)
    frame = created_frame(execution=execution_dict(execution), timestamp=timezone.now())
    return Learned(created=dumps(frame), seq=execution.seq, terminal=terminal)


def read_learned(*, user: Any, everyone: bool, execution_id: str) -> Learned | None:
    """The current state of an execution an event named; None if the user may not see it here."""
    execution = _feed_scope(user, everyone).filter(pk=execution_id).first()
    return None if execution is None else _learned(execution)


@dataclass
class Repair:
    """What a re-check found the socket missing."""

    #: The stored seq of each followed execution that is ahead of what the socket sent.
    ahead: dict[str, int] = field(default_factory=dict)
    #: (execution_id, seq, frame, terminal): the latest stored frame of a followed execution
    #: that was already overdue (ahead in the previous round too, or ``force``).
    updates: list[tuple[str, int, str, bool]] = field(default_factory=list)
    #: Executions submitted since the snapshot that the socket does not follow (their created message was lost).
    learned: dict[str, Learned] = field(default_factory=dict)


def read_repair(
    *,
    user: Any,
    request: FeedRequest,
    followed: dict[str, int],
    overdue: set[str],
    ended: set[str],
    since: datetime,
) -> Repair:
    """The frames to repair: ``followed`` maps each followed execution to the seq the socket
    sent; only those in ``overdue`` get their frame read (the others are only reported ahead)."""
    result = Repair()
    scope = _feed_scope(user, request.everyone)
    for chunk in chunks(followed):
        rows = scope.filter(pk__in=chunk).values_list("id", "seq", "status")
        for execution_id, seq, status in rows:
            if seq <= followed[execution_id]:
                continue
            result.ahead[execution_id] = seq
            if execution_id in overdue:
                frame = event_frame_at(execution_id=execution_id, seq=seq)
                if frame is not None:
                    result.updates.append((execution_id, seq, frame, status in TERMINAL_STATUSES))
    recent = execution_feed_for_user(user=user, everyone=request.everyone, statuses=request.statuses).filter(
        created_at__gte=since - MISSED_SUBMITS_MARGIN
    )
    recent_ids = recent.values_list("id", flat=True)[:SNAPSHOT_MAX]
    unknown = [pk for pk in recent_ids if pk not in followed and pk not in ended]
    for execution in scope.filter(pk__in=unknown):
        result.learned[execution.id] = _learned(execution)
    return result


# --- the consumer ------------------------------------------------------------------------------


@dataclass
class Followed:
    """What the socket sent of one execution, and the progress frame it holds back."""

    last_seq: int = 0
    #: The stored seq the last re-check saw ahead of ``last_seq`` (0: none).
    recheck_target: int = 0
    #: ``loop.time()`` of the last progress frame sent.
    progress_sent_at: float = float("-inf")
    #: The progress message held back until the interval is over (the latest wins).
    pending: FeedMessage | None = None
    timer: asyncio.TimerHandle | None = None

    def drop_pending(self) -> None:
        self.pending = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class RecentlyEnded:
    """The ids of the last ``size`` executions whose terminal frame this socket sent."""

    def __init__(self, size: int = ENDED_MEMORY) -> None:
        self.size = size
        self.ids: OrderedDict[str, None] = OrderedDict()

    def add(self, execution_id: str) -> None:
        self.ids[execution_id] = None
        while len(self.ids) > self.size:
            self.ids.popitem(last=False)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self.ids


class ExecutionFeedConsumer(StreamConsumer):
    """``WS /api/v1/executions/ws``: the execution feed of one user (or everyone's, for staff)."""

    feed_group: str | None = None

    async def connect(self) -> None:
        """Check the request, join the feed group, then send the snapshot and join the re-check."""
        self.followed: dict[str, Followed] = {}
        self.ended = RecentlyEnded()
        self.order = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        await self.open()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse(*UNAUTHENTICATED)
        request = parse_feed_query(self.scope.get("query_string", b""))
        if isinstance(request, str):
            return await self.refuse(request, CLOSE_BAD_REQUEST)
        if request.everyone and not user.is_staff:
            return await self.refuse(*STAFF_ONLY)
        self.request = request
        # Join before reading the snapshot, so that nothing falls between the two.
        self.feed_group = FEED_GROUP_EVERYONE if request.everyone else feed_group_of_user(user.pk)
        await self.channel_layer.group_add(self.feed_group, self.channel_name)
        snapshot = await read_db(read_snapshot)(user=user, request=request)
        self.since = snapshot.read_at
        async with self.order:
            await self.send_frame(snapshot.frame)
            self.followed = {execution_id: Followed(last_seq=seq) for execution_id, seq in snapshot.seqs.items()}
        rechecker().add(self)

    async def disconnect(self, code: int) -> None:
        """Leave the re-check, stop the held-back frames' timers and tasks, leave the group."""
        rechecker().discard(self)
        for task in getattr(self, "tasks", ()):
            if task is not asyncio.current_task():
                task.cancel()
        for followed in getattr(self, "followed", {}).values():
            followed.drop_pending()
        await super().disconnect(code)
        if self.feed_group is not None:
            group, self.feed_group = self.feed_group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- messages from the channel layer -------------------------------------------------------

    async def feed_frame(self, message: FeedMessage) -> None:
        """An event or a submit of an execution this user may see."""
        async with self.order:
            if not self.closed:
                await self.forward(message)

    async def layer_reconnected(self, message: LayerReconnectedMessage) -> None:
        """The channel layer is back after Redis was away: what was published meanwhile is lost."""
        if not self.closed:
            self.spawn(self.repair(force=True))

    async def forward(self, message: FeedMessage) -> None:
        """Send the message's frame if the socket follows its execution and has not sent it yet.

        An event of an execution the socket does not follow yet (its ``created``
        message came late, it was beyond the snapshot's cap, or it has just
        reached a status the socket asked for) makes the socket read that
        execution and announce it with a ``created`` frame of its state first.
        """
        execution_id, event, seq = message["execution_id"], message["event"], message["seq"]
        if execution_id in self.ended:
            return
        followed = self.followed.get(execution_id)
        if followed is None:
            if message["status"] not in self.request.statuses:
                return
            if event == "created":
                self.followed[execution_id] = Followed()
                await self.send_frame(message["frame"], message["timestamp"])
                return
            learned = await read_db(read_learned)(
                user=self.scope["user"], everyone=self.request.everyone, execution_id=execution_id
            )
            if learned is None or self.closed:
                return
            followed = await self.follow(execution_id, learned)
            if followed is None:
                return
        if event == "created" or seq <= followed.last_seq:
            return
        if event == "progress":
            await self.offer_progress(execution_id, followed, message)
            return
        followed.drop_pending()
        await self.send_frame(message["frame"], message["timestamp"])
        followed.last_seq = seq
        if event in TERMINAL_EVENT_TYPES:
            self.forget(execution_id)

    async def follow(self, execution_id: str, learned: Learned) -> Followed | None:
        """Announce an execution with a ``created`` frame of its state; None if it has already ended."""
        await self.send_frame(learned.created)
        if learned.terminal is not None:
            await self.send_frame(learned.terminal)
            self.ended.add(execution_id)
            return None
        followed = self.followed[execution_id] = Followed(last_seq=learned.seq)
        return followed

    def forget(self, execution_id: str) -> None:
        """Its terminal frame is out: follow it no more, and ignore late messages about it."""
        followed = self.followed.pop(execution_id, None)
        if followed is not None:
            followed.drop_pending()
        self.ended.add(execution_id)

    # --- at most one progress frame per execution per interval --------------------------------

    async def offer_progress(self, execution_id: str, followed: Followed, message: FeedMessage) -> None:
        """Send a progress frame now if the interval is over, else hold the latest until it is."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        interval = settings.PROGRESS_FEED_INTERVAL_SECONDS
        if followed.pending is None and now - followed.progress_sent_at >= interval:
            await self.send_frame(message["frame"], message["timestamp"])
            followed.last_seq = message["seq"]
            followed.progress_sent_at = now
            return
        if followed.pending is None or message["seq"] > followed.pending["seq"]:
            followed.pending = message  # the latest state wins
        if followed.timer is None:
            delay = max(0.0, followed.progress_sent_at + interval - now)
            followed.timer = loop.call_later(delay, lambda: self.spawn(self.send_held_progress(execution_id)))

    async def send_held_progress(self, execution_id: str) -> None:
        """The interval is over: send the progress frame held back, unless something newer went out."""
        async with self.order:
            followed = self.followed.get(execution_id)
            if followed is None or self.closed:
                return
            followed.timer = None
            message, followed.pending = followed.pending, None
            if message is None or message["seq"] <= followed.last_seq:
                return
            await self.send_frame(message["frame"], message["timestamp"])
            followed.last_seq = message["seq"]
            followed.progress_sent_at = asyncio.get_running_loop().time()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task of this socket (cancelled when it disconnects)."""
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the periodic re-check (progress.recheck.RecheckedStream) ------------------------------

    @property
    def access(self) -> StreamAccess | None:
        """What the round checks for this socket (the credentials, and staff for ``scope=all``)."""
        if self.closed:
            return None
        return StreamAccess(
            user_pk=self.scope["user"].pk,
            token_key=self.scope.get("auth_token"),
            session_key=session_key_of(self.scope),
            execution_id=None,
            staff_only=self.request.everyone,
        )

    async def apply_verdict(self, verdict: Verdict) -> None:
        """Close if access is gone; otherwise repair what the channel layer lost."""
        if verdict.lost is not None:
            async with self.order:
                if not self.closed:
                    await self.refuse(*verdict.lost)
            return
        await self.repair()

    async def repair(self, *, force: bool = False) -> None:
        """Send what the channel layer lost, read from the database.

        The latest stored frame of each followed execution the socket has
        stayed behind for a whole round (frames under load arrive late, and a
        held-back progress frame is sent by its timer), so a lost frame arrives
        within two rounds; of every followed one when ``force`` (after a
        reconnect to Redis, everything published meanwhile is gone). Then a
        ``created`` frame for each execution submitted since the snapshot
        whose announcement was lost.
        """
        if self.closed:
            return
        result = await read_db(read_repair)(
            user=self.scope["user"],
            request=self.request,
            followed={execution_id: f.last_seq for execution_id, f in self.followed.items()},
            overdue={
                execution_id
                for execution_id, f in self.followed.items()
                if force or f.last_seq < f.recheck_target
            },
            ended=set(self.ended.ids),
            since=self.since,
        )
        async with self.order:
            if self.closed:
                return
            for execution_id, seq, frame, terminal in result.updates:
                followed = self.followed.get(execution_id)
                if followed is None or seq <= followed.last_seq:
                    continue
                followed.drop_pending()
                await self.send_frame(frame)
                followed.last_seq = seq
                if terminal:
                    self.forget(execution_id)
            for execution_id, followed in self.followed.items():
                ahead = result.ahead.get(execution_id, 0)
                followed.recheck_target = ahead if ahead > followed.last_seq else 0
            for execution_id, learned in result.learned.items():
                if execution_id not in self.followed and execution_id not in self.ended:
                    await self.follow(execution_id, learned)
