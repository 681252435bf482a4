"""Scale-out: two web servers and two Celery workers on one database and one Redis.

The layout of a deployment on several machines, as processes on this one:
daphne on two ports (what a load balancer spreads clients over, with no
sticky sessions) and two workers under different node names (``-n``), all on
the test database (PostgreSQL in CI's PostgreSQL run, the SQLite file
otherwise) and on a Redis of their own (so the session's ``live_stack`` worker
cannot take their tasks). Executions must spread over both workers, a client
on either server must get any execution's whole stream, and a cancel sent to
one server must reach a client of the other within a second.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import processes
from devtools.launcher import fresh_metrics_dir
from executions.models import Execution
from tests import stack as stack_module
from tests.frames import published_schema

from .streams import Api, Stream, in_step, open_ws, read_frame, read_to_close, read_until

pytestmark = pytest.mark.e2e

WEB_SERVERS = 2
WORKER_NODES = ("scale-a", "scale-b")
#: Runs submitted at once: twice the worker processes, each run about 1.5 s long,
#: so neither worker can drain the queue alone before the other takes some.
RUNS = 8
RUN_INPUTS = {"steps": 3, "step_seconds": 0.5}
CANCEL_TRIALS = 6
CANCEL_BOUND_SECONDS = 1.0


@dataclass
class ScaledStack:
    webs: list[processes.Child]
    workers: list[processes.Child]

    def http_url(self, index: int) -> str:
        return self.webs[index].url or ""

    def ws_url(self, index: int) -> str:
        return self.http_url(index).replace("http://", "ws://", 1)


@pytest.fixture(scope="module")
def scaled_stack(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledStack]:
    """Redis, two daphne processes and two workers, started once for this module."""
    log_dir: Path = tmp_path_factory.mktemp("scale-out-logs")
    redis = processes.start_redis(log_dir / "redis", log_path=log_dir / "redis.log")
    children: list[processes.Child] = []
    try:
        env = stack_module.stack_env(redis.url or "")
        env.pop("CELERY_BROKER_URL", None)  # the broker is this Redis too
        env["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_dir(log_dir / "prometheus"))
        webs = []
        for number in range(1, WEB_SERVERS + 1):
            web = processes.start_web(
                env, processes.free_port(), log_path=log_dir / f"web{number}.log", name=f"web{number}"
            )
            children.append(web)
            webs.append(web)
        workers = []
        for node in WORKER_NODES:
            worker = processes.start_worker(env, log_path=log_dir / f"{node}.log", node_name=node)
            children.append(worker)
            workers.append(worker)
        yield ScaledStack(webs=webs, workers=workers)
    finally:
        # Workers first: a task still running gets its warm shutdown while the web servers are up.
        for child in sorted(children, key=lambda c: c.name.startswith("web")):
            child.stop()
        redis.stop()


def assert_whole(stream: Stream, history: list[dict[str, Any]]) -> None:
    """``status``, then exactly the stored events after its ``seq`` (text for text), then 1000.

    A run that had ended before the socket opened gives ``status`` and its
    stored terminal frame, with the same ``seq``.
    """
    assert stream.close_code == 1000, (stream.types, stream.close_code)
    status, rest = stream.frames[0], stream.frames[1:]
    assert status["type"] == "status", stream.types
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    if status["status"] in ("completed", "failed", "cancelled"):
        assert rest == [history[-1]], stream.types
        return
    assert rest == history[status["seq"]:], (stream.seqs, [e["seq"] for e in history])
    assert sum(f["type"] in ("completed", "failed", "cancelled") for f in rest) == 1


def follow(base_ws_url: str, execution_id: str, token: str) -> Stream:
    with open_ws(base_ws_url, execution_id, token) as ws:
        return read_to_close(ws, timeout=30)


def test_runs_spread_over_both_workers_and_stream_whole_from_either_server(
    scaled_stack: ScaledStack, api_user: tuple[Any, str]
) -> None:
    token = api_user[1]
    apis = [Api(scaled_stack.http_url(i), token) for i in range(WEB_SERVERS)]
    # Submitted through both servers in turn, as a load balancer would spread them.
    execution_ids = [
        apis[n % WEB_SERVERS].submit("demo_steps", inputs=RUN_INPUTS)["execution_id"] for n in range(RUNS)
    ]
    # Every execution watched from both servers, whichever worker runs it. The
    # frame checker builds the OpenAPI schema on first use, which is not thread-safe.
    published_schema()
    with ThreadPoolExecutor(max_workers=RUNS * WEB_SERVERS) as pool:
        watching = {
            (execution_id, server): pool.submit(follow, scaled_stack.ws_url(server), execution_id, token)
            for execution_id in execution_ids
            for server in range(WEB_SERVERS)
        }
        streams = {key: future.result(timeout=60) for key, future in watching.items()}

    for (execution_id, server), stream in streams.items():
        # The history as the *other* server reports it: the database is shared.
        history = apis[(server + 1) % WEB_SERVERS].events(execution_id)
        assert_whole(stream, history)
        assert history[-1]["type"] == "completed", history[-1]

    ran_on = Counter(
        worker.split("@", 1)[0]
        for worker in Execution.objects.filter(pk__in=execution_ids).values_list("worker", flat=True)
    )
    print(f"\nscale-out: {RUNS} runs by worker node: {dict(ran_on)}; {len(streams)} streams whole")
    assert set(ran_on) == set(WORKER_NODES), ran_on


def test_a_cancel_through_one_server_reaches_a_client_on_the_other_within_a_second(
    scaled_stack: ScaledStack, api_user: tuple[Any, str]
) -> None:
    token = api_user[1]
    apis = [Api(scaled_stack.http_url(i), token) for i in range(WEB_SERVERS)]
    latencies: list[float] = []
    for trial in range(CANCEL_TRIALS):
        cancel_via, watch_on = trial % WEB_SERVERS, (trial + 1) % WEB_SERVERS
        execution_id = apis[cancel_via].submit("demo_steps", inputs={"steps": 2, "step_seconds": 30})["execution_id"]
        with open_ws(scaled_stack.ws_url(watch_on), execution_id, token) as ws:
            stream = Stream()
            read_until(ws, stream, in_step(1), timeout=30)
            sent = time.monotonic()
            response = apis[cancel_via].cancel(execution_id)
            assert response.status_code == 200, response.text
            cancelled = read_until(ws, stream, lambda frame: frame["type"] == "cancelled", timeout=5)
            latencies.append(stream.arrived[-1] - sent)
            assert cancelled["seq"] == stream.frames[-2]["seq"] + 1
            assert read_frame(ws, stream, timeout=5) is None
            assert stream.close_code == 1000
    shown = ", ".join(f"{latency * 1000:.0f}" for latency in latencies)
    print(
        f"\nscale-out: cancel via one server -> cancelled frame on the other: {shown} ms "
        f"(median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms)"
    )
    assert max(latencies) < CANCEL_BOUND_SECONDS, latencies
