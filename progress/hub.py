"""The channel layer: one Redis subscription per group per process, delivered locally.

A server process subscribes once to each group one of its sockets is in (Redis
``SUBSCRIBE``) and puts each message on the local queue of every member: one
``PUBLISH`` per event whatever the number of watchers, and no Redis round trip
to connect a socket. It outlives Redis: membership is kept locally, the reader
reconnects and subscribes again, then puts a ``layer.reconnected`` message
(``progress.protocol``) on every member's queue, since pub/sub keeps no backlog.
Delivery is best effort (at most once), messages are msgpack of primitives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from .protocol import layer_reconnected_message

logger = logging.getLogger(__name__)

RECONNECT_BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)
#: How long ``group_add`` waits for Redis before relying on the ``layer.reconnected`` message.
SUBSCRIBE_WAIT_SECONDS = 2.0


@dataclass
class _LoopState:
    """Connections and local membership for one event loop.

    A channel's queue exists while the channel is in a group or a receive waits
    on it, and not a moment longer (:meth:`HubChannelLayer._release`): nothing
    else tells the layer that a consumer is gone.
    """

    #: Commands and publishes (health-checked before use after an idle spell).
    client: aioredis.Redis
    #: The subscription connection. Never health-checked: a check reads its answer
    #: in-band, while the reader task is reading the same connection (a group_add
    #: after an idle spell then raised RuntimeError into the consumer). The reader's
    #: reads notice a closed connection; TCP keep-alive, a silent one.
    subscriber: aioredis.Redis
    channels: dict[str, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    #: The groups each channel is in (the reverse of ``groups``).
    memberships: dict[str, set[str]] = field(default_factory=dict)
    #: How many receives wait on each channel.
    receiving: dict[str, int] = field(default_factory=dict)
    #: Groups subscribed on the current connection (``pubsub``), if any.
    subscribed: set[str] = field(default_factory=set)
    pubsub: aioredis.client.PubSub | None = None
    #: Set while ``pubsub`` is connected and subscribed to every wanted group.
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    wanted_changed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


class HubChannelLayer:
    """A Channels layer (``channels.layers.BaseChannelLayer`` interface, groups extension)."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: list[str] | None = None,
        prefix: str = "executions",
        capacity: int = 1000,
        health_check_seconds: float = 10.0,
        **kwargs: Any,
    ):
        self.url = (hosts or ["redis://127.0.0.1:6379/0"])[0]
        self.health_check_seconds = health_check_seconds
        #: The subscription connection's name in Redis (``CLIENT LIST``).
        self.subscriber_name = f"{prefix}-subscriber"
        self.prefix = prefix
        #: A member queue holding this many messages drops the next ones (the
        #: consumer fills the gap from the database); a stuck socket cannot
        #: grow the server's memory without bound.
        self.capacity = capacity
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    # --- per loop -----------------------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = _LoopState(
                client=aioredis.Redis.from_url(
                    self.url, socket_connect_timeout=2, health_check_interval=self.health_check_seconds
                ),
                subscriber=aioredis.Redis.from_url(
                    self.url, socket_connect_timeout=2, socket_keepalive=True, client_name=self.subscriber_name
                ),
            )
            self._states[loop] = state
        return state

    def _redis_channel(self, group: str) -> str:
        return f"{self.prefix}:group:{group}"

    # --- the layer API ------------------------------------------------------------------
    async def new_channel(self, prefix: str = "specific.") -> str:
        """A name only: the queue comes with the first receive or group_add."""
        return f"{self.prefix}.{prefix}{uuid.uuid4().hex}"

    async def receive(self, channel: str) -> dict[str, Any]:
        state = self._state()
        queue = self._queue(state, channel)
        state.receiving[channel] = state.receiving.get(channel, 0) + 1
        try:
            return await queue.get()
        except asyncio.CancelledError:
            # Channels cancels the receive when the consumer ends: forget the
            # channel's memberships too, in case the consumer did not leave.
            self._forget(state, channel)
            raise
        finally:
            waiting = state.receiving.pop(channel, 1) - 1
            if waiting:
                state.receiving[channel] = waiting
            self._release(state, channel)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Only channels of this process can be sent to (consumers here never need more).

        A channel in no group with no receive waiting has no queue: what is sent
        to it then is dropped.
        """
        queue = self._state().channels.get(channel)
        if queue is not None:
            _offer(queue, message)

    async def group_add(self, group: str, channel: str) -> None:
        """Join locally; subscribe the process if it is the group's first member here.

        Returns once the subscription is active, so that nothing published
        afterwards is missed; while Redis is unreachable it returns at once
        (after ``SUBSCRIBE_WAIT_SECONDS`` at most), and the member gets a
        ``layer.reconnected`` message when the subscription is back.
        """
        state = self._state()
        self._queue(state, channel)
        state.groups.setdefault(group, set()).add(channel)
        state.memberships.setdefault(channel, set()).add(group)
        if group in state.subscribed:
            return
        state.wanted_changed.set()
        self._ensure_reader(state)
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                await state.connected.wait()
                if group not in state.subscribed and state.pubsub is not None:
                    await state.pubsub.subscribe(self._redis_channel(group))
                    state.subscribed.add(group)
        except (TimeoutError, RedisError, OSError) as exc:
            # The reader reconnects and subscribes every wanted group again.
            logger.debug("subscription to %s deferred: %r", group, exc)

    async def group_discard(self, group: str, channel: str) -> None:
        state = self._state()
        self._leave(state, group, channel)
        self._release(state, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """One PUBLISH, whoever listens; raises if Redis cannot be reached (the caller logs it)."""
        await self._state().client.publish(self._redis_channel(group), msgpack.packb(message, use_bin_type=True))

    async def group_send_many(self, sends: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Several group sends in one round trip (a pipeline of PUBLISHes, in order).

        ``progress.broadcast`` sends an event to three groups (the execution's, its
        owner's feed, the staff feed) and drains bursts of events: one round trip per
        message made Redis the limit of a fast run's events.
        """
        async with self._state().client.pipeline(transaction=False) as pipe:
            for group, message in sends:
                pipe.publish(self._redis_channel(group), msgpack.packb(message, use_bin_type=True))
            await pipe.execute()

    async def flush(self) -> None:
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            if state.reader is not None:
                state.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.reader
            await state.client.aclose()
            await state.subscriber.aclose()

    # --- local membership -------------------------------------------------------------
    def _queue(self, state: _LoopState, channel: str) -> asyncio.Queue[dict[str, Any]]:
        queue = state.channels.get(channel)
        if queue is None:
            queue = state.channels[channel] = asyncio.Queue(maxsize=self.capacity)
        return queue

    def _leave(self, state: _LoopState, group: str, channel: str) -> None:
        groups = state.memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del state.memberships[channel]
        members = state.groups.get(group)
        if members is None:
            return
        members.discard(channel)
        if not members:
            del state.groups[group]
            state.wanted_changed.set()

    def _release(self, state: _LoopState, channel: str) -> None:
        """Drop the channel's queue once it is in no group and nobody waits on it.

        Whatever order a consumer's end takes (its receive cancelled before it
        even started, a message delivered in the same turn as the disconnect,
        the group left before or after), the last of these steps drops it: a
        closed socket leaves nothing behind. Messages still queued then are
        group messages of groups the channel has left, which its consumer no
        longer wants.
        """
        if channel not in state.memberships and not state.receiving.get(channel):
            state.channels.pop(channel, None)

    def _forget(self, state: _LoopState, channel: str) -> None:
        for group in list(state.memberships.get(channel, ())):
            self._leave(state, group, channel)
        state.channels.pop(channel, None)

    # --- local delivery -----------------------------------------------------------------

    def _deliver(self, state: _LoopState, group: str, message: dict[str, Any]) -> None:
        for channel in state.groups.get(group, ()):
            queue = state.channels.get(channel)
            if queue is not None:
                _offer(queue, message)

    def _ensure_reader(self, state: _LoopState) -> None:
        if state.reader is None or state.reader.done():
            state.reader = asyncio.get_running_loop().create_task(self._read(state), name="channel-layer-reader")

    async def _read(self, state: _LoopState) -> None:
        """Own the subscription connection: (re)subscribe, receive, reconnect; never raise."""
        attempt = 0
        while True:
            if not state.groups:
                # Nothing to listen to (yet, or any more): wait for a group_add.
                state.wanted_changed.clear()
                await state.wanted_changed.wait()
                continue
            pubsub = state.subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                wanted = set(state.groups)
                await pubsub.subscribe(*(self._redis_channel(g) for g in wanted))
                state.pubsub, state.subscribed = pubsub, wanted
                state.connected.set()
                if attempt:
                    # Whatever was published while the subscription was down
                    # was lost (pub/sub keeps no backlog): members check the
                    # database. (On a first connection group_add waited for
                    # it, so nothing was missed.)
                    logger.warning("channel layer reconnected to Redis; members catch up from the database")
                    reconnected = dict(layer_reconnected_message())
                    for group in wanted:
                        self._deliver(state, group, reconnected)
                attempt = 0
                while True:
                    if state.wanted_changed.is_set():
                        state.wanted_changed.clear()
                        drop = state.subscribed - set(state.groups)
                        if drop:
                            state.subscribed -= drop
                            await pubsub.unsubscribe(*(self._redis_channel(g) for g in drop))
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        group = message["channel"].decode().split(":group:", 1)[1]
                        self._deliver(state, group, msgpack.unpackb(message["data"], raw=False))
            except asyncio.CancelledError:
                state.connected.clear()
                await _quietly_close(pubsub)
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away, or a bad message: never end every socket's feed
                state.connected.clear()
                state.pubsub, state.subscribed = None, set()
                delay = RECONNECT_BACKOFF_SECONDS[min(attempt, len(RECONNECT_BACKOFF_SECONDS) - 1)]
                attempt += 1
                if attempt == 1:
                    logger.warning("channel layer lost its Redis subscription (%r); reconnecting", exc)
                await _quietly_close(pubsub)
                await asyncio.sleep(delay * (0.5 + random.random()))


def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    # A member that far behind repairs from the database by seq.
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(message)


async def _quietly_close(pubsub: aioredis.client.PubSub) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection may fail again
        await pubsub.aclose()
