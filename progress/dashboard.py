"""The socket that follows many executions: ``WS /api/v1/executions/ws[?status=...][&scope=all]``.

A dashboard (the list page, a team's monitor) watches every execution a user
may see on one connection, instead of one socket per execution. The protocol
is in the README ("One socket for many executions"); in short:

* first a ``snapshot`` frame: the executions not ended yet (``status``
  narrows them to ``pending`` and/or ``running``), newest first, at most
  :data:`SNAPSHOT_MAX`, in the REST shape;
* then, for each execution the socket follows, its frames: ``created`` when it
  is submitted, ``started``, ``progress`` (at most one per
  ``PROGRESS_FEED_INTERVAL_SECONDS`` per execution, the latest state winning;
  ``started`` and the terminal frame are never held back or dropped), and its
  terminal frame, after which it is no longer followed.

Fan-out: the writer's receiver (``progress.broadcast``) publishes every event
and every submit to the owner's feed group and to the group of staff sockets
that follow everyone, so this socket joins exactly one group, whatever the
number of executions, and never hears of one it may not show.

Unlike the per-execution socket, this one does not repair gaps: a frame the
channel layer drops is simply superseded by a later one. What must not be lost
is repaired from the database by the process's periodic re-check
(``progress.resync``, every ``PROGRESS_WS_RESYNC_SECONDS``, one round for all
of the process's streams), and at once when the channel layer reconnects: the
latest stored frame of a followed execution that moved on (its terminal frame
above all, so a row always settles), and executions submitted since the
snapshot whose ``created`` message was lost. As for an execution's stream, a
followed execution's frame is read only once the socket has stayed behind it
for a whole round (frames under load arrive late, and a held-back progress
frame is sent by its timer), so a lost frame arrives within two rounds. The
same round's verdict closes the socket when the user's access is gone (4401),
or their staff rights for ``scope=all`` (4403).

An event of an execution the socket does not follow yet (its ``created``
message arrives after its ``started`` one, or it was beyond the snapshot's
cap, or it has just reached a status the socket asked for) makes the socket
read that execution and send a ``created`` frame with its current state first:
every execution appears in the snapshot or a ``created`` frame before any of
its other frames, and each frame of an execution has a higher ``seq`` than
what was sent of it before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from core import metrics
from core.db import read_db
from executions.frames import created_frame, dumps, error_frame, execution_dict, snapshot_frame
from executions.models import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES, Execution
from executions.selectors import UNENDED_STATUSES, event_frame_at, execution_feed_for_user, execution_visible_to

from .auth import session_key_of
from .broadcast import FEED_GROUP_EVERYONE, feed_group_of_user
from .resync import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, STAFF_ONLY, Verdict, Watch, resyncer
from .streams import CLOSE_BAD_REQUEST

logger = logging.getLogger(__name__)

#: The most executions a snapshot holds (the newest).
SNAPSHOT_MAX = 100
#: How many ended executions a socket remembers, so that a late message about one is ignored.
ENDED_MEMORY = 1000
#: The resync looks for submits it missed from this long before the snapshot was read.
RESYNC_SINCE_MARGIN = timedelta(seconds=5)
#: Rows per query when the resync reads the followed executions.
RESYNC_CHUNK = 500


@dataclass(frozen=True)
class FeedRequest:
    """What the socket was asked to follow."""

    statuses: tuple[str, ...] = tuple(str(status) for status in UNENDED_STATUSES)
    #: ``scope=all``: every execution the (staff) user may see, not only their own.
    everyone: bool = False


def parse_feed_query(query_string: bytes) -> FeedRequest | str:
    """The request, or the message of the refusal (closed with 4400).

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
    frame: str
    seqs: dict[str, int]
    #: When it was read: the resync looks for submits made after it.
    read_at: datetime


def read_snapshot(*, user: Any, request: FeedRequest) -> Snapshot:
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
    ids = list(followed)
    for start in range(0, len(ids), RESYNC_CHUNK):
        rows = scope.filter(pk__in=ids[start : start + RESYNC_CHUNK]).values_list("id", "seq", "status")
        for execution_id, seq, status in rows:
            if seq <= followed[execution_id]:
                continue
            result.ahead[execution_id] = seq
            if execution_id in overdue:
                frame = event_frame_at(execution_id=execution_id, seq=seq)
                if frame is not None:
                    result.updates.append((execution_id, seq, frame, status in TERMINAL_STATUSES))
    recent = execution_feed_for_user(user=user, everyone=request.everyone, statuses=request.statuses).filter(
        created_at__gte=since - RESYNC_SINCE_MARGIN
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
    resync_target: int = 0
    #: ``loop.time()`` of the last progress frame sent.
    progress_sent_at: float = float("-inf")
    pending: dict[str, Any] | None = None
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


class ExecutionFeedConsumer(AsyncWebsocketConsumer):
    #: True once the close frame has been asked for: nothing may be sent after it.
    closed: bool = False
    #: True while this socket counts in the open-sockets gauge.
    counted: bool = False
    feed_group: str | None = None

    async def connect(self) -> None:
        self.followed: dict[str, Followed] = {}
        self.ended = RecentlyEnded()
        self.order = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        # Accept first: every refusal is an error frame and an application close code.
        await self.accept()
        self.counted = True
        metrics.socket_opened()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self.refuse("Authentication required", CLOSE_UNAUTHENTICATED)
        request = parse_feed_query(self.scope.get("query_string", b""))
        if isinstance(request, str):
            return await self.refuse(request, CLOSE_BAD_REQUEST)
        if request.everyone and not user.is_staff:
            return await self.refuse(STAFF_ONLY, CLOSE_FORBIDDEN)
        self.request = request
        # Join before reading the snapshot, so that nothing falls between the two.
        self.feed_group = FEED_GROUP_EVERYONE if request.everyone else feed_group_of_user(user.pk)
        await self.channel_layer.group_add(self.feed_group, self.channel_name)
        snapshot = await read_db(read_snapshot)(user=user, request=request)
        self.since = snapshot.read_at
        async with self.order:
            await self.send_frame(snapshot.frame)
            self.followed = {execution_id: Followed(last_seq=seq) for execution_id, seq in snapshot.seqs.items()}
        # Re-checked with the process's other streams every PROGRESS_WS_RESYNC_SECONDS.
        resyncer().add(self)

    # --- sending -----------------------------------------------------------------------------

    async def send_frame(self, text: str, event_timestamp: str | None = None) -> None:
        if self.closed:
            return
        await self.send(text_data=text)
        metrics.frame_sent(event_timestamp)

    async def refuse(self, message: str, code: int) -> None:
        await self.send_frame(dumps(error_frame(message)))
        await self.close(code=code)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        resyncer().discard(self)
        for task in getattr(self, "tasks", ()):
            if task is not asyncio.current_task():
                task.cancel()
        for followed in getattr(self, "followed", {}).values():
            followed.drop_pending()
        if self.counted:
            self.counted = False
            metrics.socket_closed()
        if self.feed_group is not None:
            group, self.feed_group = self.feed_group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # As on the per-execution socket: client frames are not part of the protocol.
        if not self.closed:
            await self.send_frame(dumps(error_frame("Unsupported message")))

    # --- messages from the channel layer -------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without a thread hop per message (see ``ExecutionProgressConsumer.dispatch``)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def feed_frame(self, message: dict[str, Any]) -> None:
        async with self.order:
            if not self.closed:
                await self.forward(message)

    async def progress_resync(self, message: dict[str, Any]) -> None:
        """The channel layer is back after Redis was away: what was published meanwhile is lost."""
        if not self.closed:
            self.spawn(self.repair(force=True))

    async def forward(self, message: dict[str, Any]) -> None:
        execution_id, event = message["execution_id"], message["event"]
        seq = int(message["seq"])
        if execution_id in self.ended:
            return
        followed = self.followed.get(execution_id)
        if followed is None:
            if message.get("status") not in self.request.statuses:
                return
            if event == "created":
                self.followed[execution_id] = Followed()
                await self.send_frame(message["frame"], message.get("timestamp"))
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
        await self.send_frame(message["frame"], message.get("timestamp"))
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
        followed = self.followed.pop(execution_id, None)
        if followed is not None:
            followed.drop_pending()
        self.ended.add(execution_id)

    # --- at most one progress frame per execution per interval --------------------------------

    async def offer_progress(self, execution_id: str, followed: Followed, message: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        interval = settings.PROGRESS_FEED_INTERVAL_SECONDS
        if followed.pending is None and now - followed.progress_sent_at >= interval:
            await self.send_frame(message["frame"], message.get("timestamp"))
            followed.last_seq = int(message["seq"])
            followed.progress_sent_at = now
            return
        if followed.pending is None or int(message["seq"]) > int(followed.pending["seq"]):
            followed.pending = message  # the latest state wins
        if followed.timer is None:
            delay = max(0.0, followed.progress_sent_at + interval - now)
            followed.timer = loop.call_later(delay, lambda: self.spawn(self.send_held_progress(execution_id)))

    async def send_held_progress(self, execution_id: str) -> None:
        async with self.order:
            followed = self.followed.get(execution_id)
            if followed is None or self.closed:
                return
            followed.timer = None
            message, followed.pending = followed.pending, None
            if message is None or int(message["seq"]) <= followed.last_seq:
                return
            await self.send_frame(message["frame"], message.get("timestamp"))
            followed.last_seq = int(message["seq"])
            followed.progress_sent_at = asyncio.get_running_loop().time()

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the periodic re-check (progress/resync.py) and repair from the database -----------------

    def watch(self) -> Watch | None:
        """What the round checks for this socket (the credentials, and staff for ``scope=all``)."""
        if self.closed:
            return None
        return Watch(
            user_pk=self.scope["user"].pk,
            token_key=self.scope.get("auth_token"),
            session_key=session_key_of(self.scope),
            execution_id=None,
            staff_only=self.request.everyone,
        )

    async def apply_resync(self, verdict: Verdict) -> None:
        """Close if access is gone; otherwise repair what the channel layer lost."""
        if verdict.lost is not None:
            async with self.order:
                if not self.closed:
                    await self.refuse(*verdict.lost)
            return
        await self.repair()

    async def repair(self, *, force: bool = False) -> None:
        """Send the frames the channel layer lost: every followed execution's latest frame
        when ``force`` (after a reconnect to Redis, everything published meanwhile is
        gone), else only those the socket has stayed behind for a whole round."""
        if self.closed:
            return
        result = await read_db(read_repair)(
            user=self.scope["user"],
            request=self.request,
            followed={execution_id: f.last_seq for execution_id, f in self.followed.items()},
            overdue={
                execution_id
                for execution_id, f in self.followed.items()
                if force or f.last_seq < f.resync_target
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
                followed.resync_target = ahead if ahead > followed.last_seq else 0
            for execution_id, learned in result.learned.items():
                if execution_id not in self.followed and execution_id not in self.ended:
                    await self.follow(execution_id, learned)
