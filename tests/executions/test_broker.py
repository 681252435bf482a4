"""The broker (``executions.broker``): queueing a run by the task's name, and reading what Redis holds.

Against the real Redis of the test run, in a database of its own (the
``broker`` fixture), with messages published and fetched the way Celery does.
"""

from __future__ import annotations

from typing import Any

import pytest
from kombu.exceptions import OperationalError

from executions.broker import RUN_TASK, run_enqueue, runs_held
from executions.errors import BrokerUnavailableError
from executions.tasks import run_execution

from .conftest import Broker


def test_the_run_task_is_named_by_the_broker() -> None:
    assert run_execution.name == RUN_TASK


def test_a_run_is_queued_by_the_task_name_with_its_time_limits(task_queue: Any) -> None:
    run_enqueue(execution_id="exec_0123456789ab", attempt=2, soft_time_limit=12, time_limit=22)
    assert task_queue.calls == [
        {"args": ["exec_0123456789ab"], "kwargs": {"attempt": 2}, "soft_time_limit": 12, "time_limit": 22}
    ]


@pytest.mark.parametrize("failure", [OperationalError("Error 111 connecting"), ConnectionRefusedError(111, "refused")])
def test_an_unreachable_broker_is_the_domain_error(monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(run_execution, "apply_async", broken)
    with pytest.raises(BrokerUnavailableError, match=r"task queue is unavailable") as caught:
        run_enqueue(execution_id="exec_0123456789ab", attempt=1, soft_time_limit=12, time_limit=22)
    assert caught.value.__cause__ is failure


def test_runs_held_are_those_queued_or_fetched_but_not_acknowledged(broker: Broker) -> None:
    queued, fetched, lost = "exec_00000000000a", "exec_00000000000b", "exec_00000000000c"
    broker.publish(fetched)
    broker.publish(queued)
    with broker.prefetched() as message:
        assert message.payload[0] == [fetched]
        assert (broker.queued(), broker.unacked()) == (1, 1)
        assert runs_held([queued, fetched, lost]) == {queued, fetched}
    assert runs_held([lost]) == set()


def test_a_broker_other_than_redis_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_READ_URL", "memory://")
    assert runs_held(["exec_00000000000a"]) is None
