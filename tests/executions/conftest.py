"""Fixtures of the domain's tests: a Redis database that stands for the Celery broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from config.celery import app
from executions.broker import RUN_TASK

#: A Redis database of the test run's server that nothing else uses.
BROKER_DB = 12
QUEUE = "celery"


@dataclass
class Broker:
    """A Redis database of its own, which ``executions.broker`` reads as the broker."""

    url: str
    client: redis.Redis

    def publish(self, execution_id: str) -> None:
        """A real task message for the run, as a submit queues it."""
        with app.connection_for_write(self.url) as conn:
            app.send_task(RUN_TASK, args=[execution_id], connection=conn)

    @contextmanager
    def prefetched(self) -> Iterator[Any]:
        """A worker's prefetch: the next message leaves the queue for the unacked hash, while in the block."""
        with app.connection_for_read(self.url) as conn:
            message = conn.default_channel.basic_get(QUEUE, no_ack=False)
            assert message is not None, "nothing queued"
            yield message

    def queued(self) -> int:
        return int(self.client.llen(QUEUE))

    def unacked(self) -> int:
        return int(self.client.hlen("unacked"))


@pytest.fixture
def broker(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    url = urlsplit(redis_url)._replace(path=f"/{BROKER_DB}").geturl()
    # What Celery's connection_for_read() uses, before any setting.
    monkeypatch.setenv("CELERY_BROKER_READ_URL", url)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield Broker(url, client)
    finally:
        client.flushdb()
        client.close()
