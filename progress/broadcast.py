"""The only ``group_send`` of the project: every recorded event and submit, to the channel layer.

Receivers of the domain's signals (sent after commit): an event goes to its
execution's group and, with every submit, to the feed groups of its owner and
of staff (``progress.protocol`` names the groups and builds the messages).
Sync code publishes through one long-lived event loop per process, in a daemon
thread, so the channel layer keeps its pooled Redis connections. Publishing is
best effort by design: the database is the truth and streams repair by ``seq``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.dispatch import receiver

from core import metrics
from executions.events import RecordedEvent
from executions.services import CreatedExecution
from executions.signals import event_recorded, execution_created

from .protocol import (
    FEED_GROUP_EVERYONE,
    EventMessage,
    FeedMessage,
    event_message,
    execution_group,
    feed_group_of_user,
    feed_message,
)

logger = logging.getLogger(__name__)

#: A channel-layer message of this module (``progress.protocol``).
Message = EventMessage | FeedMessage

#: The most messages one round trip to the channel layer carries.
MAX_BATCH = 500


class _Publisher:
    """A per-process event loop thread that sends messages in submission order.

    Messages wait in a queue; the loop thread is woken once per burst, not once
    per message (each wake-up is a thread hop, a future and a write, and an
    event makes three messages). One drain runs
    at a time and takes the queue in order, so frames of one execution leave in
    the order they were recorded.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[tuple[str, Message]] = collections.deque()
        self._draining: concurrent.futures.Future[None] | None = None
        self._last: concurrent.futures.Future[None] | None = None
        self._guard = threading.Lock()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        # A prefork Celery child inherits the parent's object but not its
        # thread: start a fresh loop (and queue) in every process.
        if self._pid != os.getpid() or self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                ready.set()
                loop.run_forever()

            threading.Thread(target=run, name="progress-publisher", daemon=True).start()
            ready.wait()
            self._loop, self._pid = loop, os.getpid()
            self._queue, self._draining, self._last = collections.deque(), None, None
        return self._loop

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            with self._guard:
                if not self._queue:
                    self._draining = None
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            send_many = getattr(layer, "group_send_many", None)
            if send_many is not None:  # the hub: the whole batch in one round trip
                try:
                    await send_many(batch)
                except Exception:  # the database already holds the events
                    metrics.publish_failed(len(batch))
                    logger.exception(
                        "group_send of %d messages failed; streams repair from the database", len(batch)
                    )
                continue
            for group, message in batch:
                try:
                    await layer.group_send(group, message)
                except Exception:  # the database already holds the event
                    metrics.publish_failed()
                    logger.exception("group_send to %s failed; streams repair from the database", group)

    def publish(self, group: str, message: Message) -> None:
        with self._guard:
            loop = self._ensure_started()
            self._queue.append((group, message))
            if self._draining is None:
                self._draining = asyncio.run_coroutine_threadsafe(self._drain(), loop)
                self._last = self._draining

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything published so far has been handed to the layer."""
        # The drain running now takes whatever is queued before it ends.
        last = self._last
        if last is not None and self._pid == os.getpid():
            try:
                last.result(timeout=timeout)
            except Exception:  # noqa: BLE001 - waiting is best effort: the database holds every event
                logger.warning("publisher flush did not finish within %.1fs", timeout)


_publisher = _Publisher()


def publish_event(
    *, execution_id: str, seq: int, event_type: str, frame_text: str, timestamp: str | None = None
) -> None:
    """Send one recorded event to everyone watching the execution (call after commit)."""
    _publisher.publish(
        execution_group(execution_id),
        event_message(seq=seq, event_type=event_type, frame_text=frame_text, timestamp=timestamp),
    )


def publish_to_feeds(*, owner_id: Any, message: FeedMessage) -> None:
    """Send a feed message to the owner's feed sockets and to the staff ones that follow everyone."""
    _publisher.publish(feed_group_of_user(owner_id), message)
    _publisher.publish(FEED_GROUP_EVERYONE, message)


def flush(timeout: float = 5.0) -> None:
    """Wait until everything published so far has been handed to the layer."""
    _publisher.flush(timeout)


@receiver(event_recorded, dispatch_uid="progress.publish_recorded_event")
def publish_recorded_event(sender: type[RecordedEvent], *, event: RecordedEvent, **kwargs: Any) -> None:
    """Publish every recorded event; wait for a terminal one to be handed over.

    Waiting for the last frame of a run means a worker child that is recycled
    or stopped right after the run cannot take its terminal frame with it.
    """
    publish_event(
        execution_id=event.execution_id, seq=event.seq, event_type=event.type, frame_text=event.frame_text,
        timestamp=event.timestamp or None,
    )
    if event.owner_id is not None:
        publish_to_feeds(
            owner_id=event.owner_id,
            message=feed_message(
                execution_id=event.execution_id, seq=event.seq, event_type=event.type, status=event.status,
                frame_text=event.frame_text, timestamp=event.timestamp or None,
            ),
        )
    if event.is_terminal:
        flush()


@receiver(execution_created, dispatch_uid="progress.publish_created_execution")
def publish_created_execution(sender: type[CreatedExecution], *, execution: CreatedExecution, **kwargs: Any) -> None:
    """Tell the feed sockets about a new execution."""
    publish_to_feeds(
        owner_id=execution.owner_id,
        message=feed_message(
            execution_id=execution.execution_id, seq=0, event_type="created", status="pending",
            frame_text=execution.frame_text, timestamp=execution.timestamp,
        ),
    )
