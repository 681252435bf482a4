"""The faults of issue 8, each played on real processes, for the tests and the benchmark.

A :class:`FaultLab` is an embedded Redis (its own, so that it can be stopped
and restarted), a daphne and the Celery workers a fault needs, all on one
database: the test database for ``tests/faults``, a throw-away SQLite file for
``bench/faults.py``. A scenario starts the workers it needs, injects its fault
(a signal to a process or its group, Redis stopped or restarted without
persistence, a task message published twice) while a WebSocket client
watches, then checks what every client and every operator can rely on:

* each execution has exactly one terminal event, the last of a gapless history,
  with the expected status and error type;
* the watching client got its whole stream: ``status``, every later event
  exactly once and in order (the same frames the database stores), exactly one
  terminal frame, then close 1000;
* the recovery happened within the bound the settings promise (plus
  :data:`SLACK_SECONDS`).

It returns an :class:`Outcome` (what happened, the measured recovery time and
its bound) for the tests to record and the benchmark to print. Everything is
observed from outside, through HTTP, the WebSocket, Redis and the processes
themselves, so the same code runs with the short liveness settings of the
tests (:data:`FAST`) and the defaults (the benchmark). Waits are on conditions
with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import functools
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from websockets.sync.client import ClientConnection

from config.celery import app
from devtools import processes

from ..e2e.streams import API, Api, Stream, open_ws, read_frame
from ..frames import TERMINAL_TYPES

#: Added to every bound: the sweep's own work, process scheduling and the
#: database write on a loaded 2-core CI machine (the measured excess is well
#: under a second).
SLACK_SECONDS = 2.0
#: A run that outlasts every bound here: the fault, not its end, decides how it ends.
STEP_SECONDS = 0.25
LONG_RUN = {"steps": 2000, "step_seconds": STEP_SECONDS}
#: How long a test waits for anything that has no bound of its own (a start, a submit).
WAIT_SECONDS = 30.0
#: How long Celery's warm shutdown takes once no task runs: measured 3-5 s for an
#: idle worker (a tick of its event loop, billiard's 1 s pause in each exiting
#: pool process, then the polls of the pool's handler threads).
WORKER_EXIT_SECONDS = 10.0
#: How often Celery's prefork pool looks for exited processes besides their exit
#: pipes (``AsynPool.timers``).
POOL_MAINTENANCE_SECONDS = 5.0
#: The Celery queue the runs go to (the default queue).
QUEUE = "celery"
#: Celery's log line for a task message the worker took from the broker.
RECEIVED = re.compile(r"Task executions\.run_execution\[[0-9a-f-]+\] received")


@dataclass(frozen=True)
class Liveness:
    """The settings every bound follows from (config/settings.py, "Liveness")."""

    heartbeat: float
    timeout: float
    sweep: float
    requeue: float
    grace: float

    @classmethod
    def from_settings(cls) -> Liveness:
        """What this process's settings say (the defaults unless the environment overrides them)."""
        return cls(
            heartbeat=settings.EXECUTION_HEARTBEAT_SECONDS,
            timeout=settings.EXECUTION_HEARTBEAT_TIMEOUT_SECONDS,
            sweep=settings.WORKER_SWEEP_SECONDS,
            requeue=settings.EXECUTION_REQUEUE_SECONDS,
            grace=settings.WORKER_SHUTDOWN_GRACE_SECONDS,
        )

    def env(self) -> dict[str, str]:
        """The same values as environment variables, for the processes."""
        return {
            "EXECUTION_HEARTBEAT_SECONDS": f"{self.heartbeat:g}",
            "EXECUTION_HEARTBEAT_TIMEOUT_SECONDS": f"{self.timeout:g}",
            "WORKER_SWEEP_SECONDS": f"{self.sweep:g}",
            "EXECUTION_REQUEUE_SECONDS": f"{self.requeue:g}",
            "WORKER_SHUTDOWN_GRACE_SECONDS": f"{self.grace:g}",
        }

    @property
    def longest_silence(self) -> float:
        """The longest a watching client may wait for its next frame in any scenario."""
        return self.timeout + self.sweep + self.grace + self.requeue + SLACK_SECONDS + WAIT_SECONDS


#: The tests' settings: every fault recovers within a few seconds.
FAST = Liveness(heartbeat=0.5, timeout=2.0, sweep=0.5, requeue=1.0, grace=2.0)
LIVENESS_VARIABLES = tuple(FAST.env())


@dataclass(frozen=True)
class Outcome:
    """One fault's row of the recovery table."""

    fault: str
    happened: str
    recovery_seconds: float | None = None
    bound_seconds: float | None = None
    #: What the recovery time measures, for the table.
    measured: str = ""

    @property
    def recovery_text(self) -> str:
        if self.recovery_seconds is None:
            return "-"
        bound = f" (bound {self.bound_seconds:.1f} s)" if self.bound_seconds is not None else ""
        what = f" {self.measured}" if self.measured else ""
        return f"{self.recovery_seconds:.2f} s{what}{bound}"


def table(outcomes: list[Outcome]) -> str:
    """A Markdown table: fault | what happened | recovery time."""
    lines = ["| fault | what happened | recovery time |", "|---|---|---|"]
    lines += [f"| {o.fault} | {o.happened} | {o.recovery_text} |" for o in outcomes]
    return "\n".join(lines)


def stamp(frame: Mapping[str, Any]) -> float:
    """A frame's ``timestamp`` (when the event was recorded) as seconds since the epoch."""
    return datetime.fromisoformat(str(frame["timestamp"]).replace("Z", "+00:00")).timestamp()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Watcher:
    """A WebSocket client that reads one execution's stream to the close, in a thread of its own."""

    def __init__(self, ws_base_url: str, execution_id: str, token: str, frame_timeout: float) -> None:
        self.execution_id = execution_id
        self.stream = Stream()
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._ws: ClientConnection = open_ws(ws_base_url, execution_id, token)
        self._thread = threading.Thread(
            target=self._read, args=(frame_timeout,), name=f"watch-{execution_id}", daemon=True
        )
        self._thread.start()

    def _read(self, frame_timeout: float) -> None:
        try:
            while True:
                frame = read_frame(self._ws, self.stream, timeout=frame_timeout)
                with self._changed:
                    self._changed.notify_all()
                if frame is None:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            with self._changed:
                self._changed.notify_all()

    def wait_for_frame(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        """The first frame received (so far or later) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for frame in list(self.stream.frames):
                    if predicate(frame):
                        return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    raise AssertionError(
                        f"{self.execution_id}: no such frame within {timeout:g} s "
                        f"(got {self.stream.types}, close {self.stream.close_code}, error {self.error!r})"
                    )
                self._changed.wait(remaining)

    def close(self) -> None:
        self._ws.close()

    def finish(self, timeout: float) -> Stream:
        """Wait for the server to close the socket; the whole stream."""
        self._thread.join(timeout)
        try:
            assert not self._thread.is_alive(), (
                f"{self.execution_id}: the socket is still open after {timeout:g} s: {self.stream.types}"
            )
            assert self.error is None, f"{self.execution_id}: the client failed: {self.error!r}"
        finally:
            self.close()
        return self.stream


def is_progress(frame: Mapping[str, Any]) -> bool:
    return frame["type"] == "progress"


class FaultLab:
    """Redis, daphne and workers for one fault, all on one database; :meth:`close` stops them.

    ``base_env`` points the processes at the database; the lab adds its own
    Redis (``REDIS_URL``, also the broker) and the liveness settings, unless
    ``liveness_env`` is false (the benchmark measures the defaults).
    """

    def __init__(
        self,
        *,
        base_env: Mapping[str, str],
        work_dir: Path,
        liveness: Liveness,
        liveness_env: bool = True,
        token: str = "",
    ) -> None:
        self.work_dir = work_dir
        self.redis_dir = work_dir / "redis"
        self.liveness = liveness
        self.token = token
        self.env = {k: v for k, v in base_env.items() if k not in LIVENESS_VARIABLES}
        # The lab's Redis is the broker too: a leftover CELERY_BROKER_URL would split them.
        self.env.pop("CELERY_BROKER_URL", None)
        self.env.setdefault("LOG_LEVEL", "INFO")  # the workers' "received" lines are evidence
        if liveness_env:
            self.env.update(liveness.env())
        self.redis: processes.Child | None = None
        self.web: processes.Child | None = None
        self.workers: list[processes.Child] = []
        self._watchers: list[Watcher] = []

    # --- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        """Redis, then daphne on it; stop what started if anything fails."""
        try:
            self.redis = processes.start_redis(self.redis_dir)
            self.env["REDIS_URL"] = self.redis_url
            self.web = processes.start_web(self.env, processes.free_port(), log_path=self.work_dir / "web.log")
        except BaseException:
            self.close()
            raise

    @property
    def redis_url(self) -> str:
        assert self.redis is not None and self.redis.url
        return self.redis.url

    @property
    def http_url(self) -> str:
        assert self.web is not None and self.web.url
        return self.web.url

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://", 1)

    def start_worker(self, name: str = "worker", concurrency: int = 1) -> processes.Child:
        worker = processes.start_worker(
            self.env, log_path=self.work_dir / f"{name}.log", node_name=name, concurrency=concurrency
        )
        self.workers.append(worker)
        return worker

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()

    def start_redis_again(self) -> None:
        """An empty server on the same port (nothing was persisted)."""
        assert self.redis is not None
        port = processes.redis_port(self.redis)
        self.redis = processes.start_redis(self.redis_dir, log_path=self.redis.log_path, port=port)

    def restart_redis(self) -> None:
        """Redis restarted without persistence: same port, nothing kept."""
        assert self.redis is not None
        self.redis = processes.restart_redis(self.redis, self.redis_dir)

    def close(self) -> None:
        """Workers first (a warm shutdown needs Redis and the database), then daphne and Redis."""
        for watcher in self._watchers:
            watcher.close()
        # All workers shut down at once: each warm shutdown takes seconds even when idle.
        for worker in self.workers:
            if worker.alive():
                worker.signal_leader(signal.SIGTERM)
        for worker in self.workers:
            worker.wait_exit(processes.WORKER_STOP_TIMEOUT)
        for child in [*self.workers, self.web, self.redis]:
            if child is not None:
                child.stop()

    # --- clients ----------------------------------------------------------------------------
    @functools.cached_property
    def api(self) -> Api:
        """One HTTP session for the whole scenario (it survives daphne's Redis going away)."""
        return Api(self.http_url, self.token)

    def watch(self, execution_id: str) -> Watcher:
        watcher = Watcher(self.ws_url, execution_id, self.token, frame_timeout=self.liveness.longest_silence)
        self._watchers.append(watcher)
        return watcher

    def submit(self, **inputs: Any) -> str:
        return str(self.api.submit("demo_steps", inputs=inputs)["execution_id"])

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def broker_counts(self) -> tuple[int, int]:
        """(messages waiting in the run queue, messages a worker fetched and has not acknowledged)."""
        client = self.broker()
        try:
            return int(client.llen(QUEUE)), int(client.hlen("unacked"))
        finally:
            client.close()

    def publish_run(self, execution_id: str) -> None:
        """One more task message for ``execution_id``, exactly as a submit queues it."""
        with app.connection_for_write(self.redis_url) as connection:
            app.send_task("executions.run_execution", args=[execution_id], connection=connection)


# --- what every scenario checks ----------------------------------------------------------------


def ended_once(api: Api, execution_id: str) -> list[dict[str, Any]]:
    """The stored history, checked: gapless, at most one ``started``, exactly one terminal event, last."""
    events = api.events(execution_id)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1)), f"{execution_id}: seqs {seqs}"
    types = [e["type"] for e in events]
    terminal = [t for t in types if t in TERMINAL_TYPES]
    assert len(terminal) == 1 and types[-1] in TERMINAL_TYPES, f"{execution_id}: {types}"
    assert types.count("started") <= 1, f"{execution_id}: {types}"
    assert api.get(execution_id)["status"] == types[-1]
    return events


def assert_whole_stream(stream: Stream, events: list[dict[str, Any]]) -> None:
    """The client got ``status``, then exactly the stored events after it, then close 1000."""
    assert stream.frames and stream.frames[0]["type"] == "status", stream.types
    status = stream.frames[0]
    rest = stream.frames[1:]
    if status["status"] in TERMINAL_TYPES:  # it had ended before the client connected
        expected = [e for e in events if e["seq"] == status["seq"]]
    else:
        expected = [e for e in events if e["seq"] > status["seq"]]
    sent, stored = [(f["type"], f["seq"]) for f in rest], [(e["type"], e["seq"]) for e in expected]
    assert rest == expected, f"frames {sent} != stored {stored}"
    assert [f["type"] in TERMINAL_TYPES for f in stream.frames[1:]].count(True) == 1, stream.types
    assert stream.close_code == 1000, stream.close_code


def assert_failed(events: list[dict[str, Any]], error_type: str) -> dict[str, Any]:
    terminal = events[-1]
    assert terminal["type"] == "failed", terminal
    assert terminal["error"]["type"] == error_type, terminal["error"]
    return terminal


def finish(lab: FaultLab, watcher: Watcher, timeout: float) -> list[dict[str, Any]]:
    """Wait for the execution to end; check its history and the watcher's stream; the events."""
    lab.api.wait_until_ended(watcher.execution_id, timeout=timeout)
    events = ended_once(lab.api, watcher.execution_id)
    assert_whole_stream(watcher.finish(timeout=WAIT_SECONDS), events)
    return events


def start_watched_run(lab: FaultLab, **inputs: Any) -> Watcher:
    """Submit, watch, and return once the run is reporting progress (mid-run)."""
    watcher = lab.watch(lab.submit(**(inputs or LONG_RUN)))
    watcher.wait_for_frame(is_progress)
    return watcher


def assert_exits(worker: processes.Child, timeout: float) -> float:
    """The worker process exits within ``timeout``; how long it took."""
    started = time.monotonic()
    code = worker.wait_exit(timeout)
    assert code is not None, f"{worker.name} still runs {timeout:g} s later:\n{worker.log_tail()}"
    return time.monotonic() - started


# --- the faults ---------------------------------------------------------------------------------


def worker_killed(lab: FaultLab) -> Outcome:
    """SIGKILL to the whole worker (its process group: OOM of the main process, a lost machine).

    Nothing in that worker can react: the run's heartbeat stops, and another
    worker's sweeper fails it as ``WorkerLostError`` once the heartbeat is
    older than the timeout, at its next sweep.
    """
    live = lab.liveness
    doomed = lab.start_worker("worker-a")
    watcher = start_watched_run(lab)
    lab.start_worker("worker-b")  # started after the claim, so the run is worker-a's
    killed_at = time.time()
    doomed.signal_group(signal.SIGKILL)
    bound = live.timeout + live.sweep + SLACK_SECONDS
    events = finish(lab, watcher, timeout=bound + WAIT_SECONDS)
    failed = assert_failed(events, "WorkerLostError")
    details = failed["error"]["details"]
    assert details["worker"].startswith("worker-a@"), details
    assert details["detected_by"].startswith("worker-b@"), details
    assert "worker-a@" in failed["error"]["message"], failed["error"]
    recovery = stamp(failed) - killed_at
    assert recovery <= bound, f"failed {recovery:.2f} s after the kill, bound {bound:g} s"
    return Outcome(
        "SIGKILL to the whole worker mid-run (a second worker alive)",
        "`failed` WorkerLostError, found by the other worker's sweeper; "
        "client: whole stream, 1 terminal frame, close 1000",
        recovery,
        bound,
        "kill → failed",
    )


def pool_child_killed(lab: FaultLab) -> Outcome:
    """SIGKILL to the pool process running the task (the OOM killer's usual pick).

    The worker's main process sees its child die and fails the run
    (``ExecutionRequest.on_failure``), then goes on serving with a new child.
    It notices through the child's exit pipe, at once; but when that pipe
    fires before the process can be reaped, Celery's check finds it still
    alive and only its pool maintenance timer (every 5 s) catches it. The
    heartbeat sweeper may then come first: either way the run fails as
    ``WorkerLostError``, within the sooner of the two bounds.
    """
    live = lab.liveness
    worker = lab.start_worker("worker", concurrency=1)
    watcher = start_watched_run(lab)
    (child,) = worker.children()
    killed_at = time.time()
    os.kill(child, signal.SIGKILL)
    bound = min(POOL_MAINTENANCE_SECONDS, live.timeout + live.sweep) + SLACK_SECONDS
    events = finish(lab, watcher, timeout=bound + WAIT_SECONDS)
    failed = assert_failed(events, "WorkerLostError")
    message = failed["error"]["message"]
    by_main_process = message.startswith("The worker process running this execution died")
    assert by_main_process or "stopped answering" in message, failed["error"]
    recovery = stamp(failed) - killed_at
    assert recovery <= bound, f"failed {recovery:.2f} s after the kill, bound {bound:g} s"
    # The worker replaced its child and keeps working.
    after = lab.watch(lab.submit(steps=2, step_seconds=0.05))
    assert finish(lab, after, timeout=WAIT_SECONDS)[-1]["type"] == "completed"
    assert worker.alive()
    how = "from the worker's main process" if by_main_process else "by the sweeper (Celery noticed the dead child late)"
    return Outcome(
        "SIGKILL to the pool child only",
        f"`failed` WorkerLostError {how}; the worker runs the next execution with a new child",
        recovery,
        bound,
        "kill → failed",
    )


def worker_group_terminated(lab: FaultLab) -> Outcome:
    """SIGTERM to every process of the worker (systemd's default stop).

    The pool child records ``WorkerShutdown`` for its run before it dies;
    the main process exits soon after.
    """
    worker = lab.start_worker("worker", concurrency=1)
    watcher = start_watched_run(lab)
    signalled_at = time.time()
    worker.signal_group(signal.SIGTERM)
    bound = SLACK_SECONDS
    events = finish(lab, watcher, timeout=bound + WAIT_SECONDS)
    failed = assert_failed(events, "WorkerShutdown")
    assert failed["error"]["details"]["signal"] == "SIGTERM", failed["error"]
    recovery = stamp(failed) - signalled_at
    assert recovery <= bound, f"failed {recovery:.2f} s after SIGTERM, bound {bound:g} s"
    exited_in = assert_exits(worker, processes.WORKER_STOP_TIMEOUT)
    return Outcome(
        "SIGTERM to every worker process (systemd's default)",
        f"`failed` WorkerShutdown, recorded by the pool child before it died; "
        f"the worker exited {exited_in:.1f} s later",
        recovery,
        bound,
        "SIGTERM → failed",
    )


def worker_terminated_long_run(lab: FaultLab) -> Outcome:
    """SIGTERM to the main process only (``docker stop``) while a run needs longer than the grace.

    The run goes on for the grace period, then ends ``WorkerShutdown``; its
    target stops at its next check and the worker's warm shutdown completes.
    """
    live = lab.liveness
    worker = lab.start_worker("worker", concurrency=1)
    watcher = start_watched_run(lab)
    signalled_at = time.time()
    worker.signal_leader(signal.SIGTERM)
    bound = live.grace + SLACK_SECONDS
    events = finish(lab, watcher, timeout=bound + WAIT_SECONDS)
    failed = assert_failed(events, "WorkerShutdown")
    assert failed["error"]["details"]["grace_seconds"] == live.grace, failed["error"]
    recovery = stamp(failed) - signalled_at
    assert live.grace <= recovery <= bound, f"failed {recovery:.2f} s after SIGTERM, grace {live.grace:g} s"
    during_grace = [e for e in events if e["type"] == "progress" and stamp(e) > signalled_at]
    assert during_grace, "the run kept reporting during the grace period"
    exited_in = assert_exits(worker, WORKER_EXIT_SECONDS)
    return Outcome(
        f"SIGTERM to the main process only (`docker stop`), run longer than the {live.grace:g} s grace",
        f"ran on through the grace ({len(during_grace)} progress events), then `failed` WorkerShutdown; "
        f"the worker exited {exited_in:.1f} s after that",
        recovery,
        bound,
        "SIGTERM → failed",
    )


def worker_terminated_short_run(lab: FaultLab) -> Outcome:
    """SIGTERM to the main process only while a run needs less than the grace: it completes, then the worker exits."""
    live = lab.liveness
    worker = lab.start_worker("worker", concurrency=1)
    steps = max(2, math.floor(live.grace / 4 / STEP_SECONDS))
    watcher = start_watched_run(lab, steps=steps, step_seconds=STEP_SECONDS)
    signalled_at = time.time()
    worker.signal_leader(signal.SIGTERM)
    bound = live.grace  # the run needs less than that after the signal: the grace never cuts it
    events = finish(lab, watcher, timeout=bound + WAIT_SECONDS)
    assert events[-1]["type"] == "completed", events[-1]
    completed_in = stamp(events[-1]) - signalled_at
    assert completed_in <= bound, f"completed {completed_in:.2f} s after SIGTERM, grace {bound:g} s"
    exited_in = assert_exits(worker, WORKER_EXIT_SECONDS)
    return Outcome(
        f"SIGTERM to the main process only, run shorter than the grace ({steps * STEP_SECONDS:g} s in all)",
        f"`completed`, whole stream; the worker exited {exited_in:.1f} s after that",
        completed_in,
        bound,
        "SIGTERM → completed",
    )


def redis_restarted(lab: FaultLab) -> Outcome:
    """Redis restarted without persistence while messages wait in the queue and the worker holds some.

    The worker reconnects; the runs it was executing go on; the messages
    Redis lost are queued again by the sweeper once their executions have
    waited ``EXECUTION_REQUEUE_SECONDS`` with no message in the broker.
    Clients connect after Redis is back (:func:`redis_restarted_while_watching`
    has one watching across the restart).
    """
    live = lab.liveness
    concurrency, waiting, busy_seconds, short_seconds = 2, 4, 4.0, 1.0
    lab.start_worker("worker", concurrency=concurrency)
    # Both pool processes busy through the restart, then messages for the rest.
    busy = [lab.submit(steps=int(busy_seconds / 0.5), step_seconds=0.5) for _ in range(concurrency)]
    wait_until(
        lambda: all(lab.api.get(i)["status"] == "running" for i in busy), WAIT_SECONDS, f"{concurrency} running"
    )
    rest = [lab.submit(steps=2, step_seconds=short_seconds / 2) for _ in range(waiting)]
    # Not running, so in Redis: in the queue, or fetched by the worker and not yet acknowledged.
    wait_until(lambda: sum(lab.broker_counts()) == waiting, WAIT_SECONDS, "the broker to hold the rest")
    queued, held = lab.broker_counts()
    lab.restart_redis()
    back_at = time.time()
    assert all(lab.api.get(i)["status"] == "running" for i in busy), "the busy runs outlast the set-up"
    assert all(lab.api.get(i)["status"] == "pending" for i in rest)
    watchers = [lab.watch(i) for i in busy + rest]
    # The waiting ones may run one at a time: after a broker reconnect, Celery 5.5's
    # prefork pool can stop handing work to an idle process until its backlog has
    # drained (celery/celery#7515; fixed upstream by celery/celery#10346).
    bound = max(live.requeue + live.sweep, busy_seconds) + waiting * short_seconds + SLACK_SECONDS
    for watcher in watchers:
        lab.api.wait_until_ended(watcher.execution_id, timeout=bound + WAIT_SECONDS)
    timeline = []  # (started, ended) of the lost ones, relative to Redis coming back
    last_end = 0.0
    for watcher in watchers:
        events = ended_once(lab.api, watcher.execution_id)
        assert events[-1]["type"] == "completed", events[-1]
        assert_whole_stream(watcher.finish(timeout=WAIT_SECONDS), events)
        last_end = max(last_end, stamp(events[-1]) - back_at)
        if watcher.execution_id in rest:
            timeline.append((round(stamp(events[0]) - back_at, 2), round(stamp(events[-1]) - back_at, 2)))
    assert last_end <= bound, (
        f"the last execution ended {last_end:.2f} s after Redis came back, bound {bound:g} s; "
        f"(started, ended) of the lost ones after Redis came back: {timeline}"
    )
    first_start = min(started for started, _ in timeline)
    at_once = max(sum(s <= start < e for s, e in timeline) for start, _ in timeline)
    return Outcome(
        "Redis restarted without persistence while messages are queued and held",
        f"{concurrency} running, {held} held by the worker, {queued} queued when Redis restarted; the "
        f"{waiting} lost ones queued again by the sweeper, the first started {first_start:.1f} s after Redis was back, "
        f"at most {at_once} at once (concurrency {concurrency}); all {concurrency + waiting} `completed`, "
        "one terminal event each, whole streams",
        last_end,
        bound,
        "Redis back → last one ended",
    )


def redis_restarted_while_watching(lab: FaultLab) -> Outcome:
    """Redis restarted without persistence while a client watches a run.

    The socket must not close (it used to close with 1011 when the channel
    layer's receive raised): it stays open, the per-process re-check fills it
    from the database while the layer is down, the layer subscribes again when
    Redis is back (and tells the stream to catch up), and the client gets every
    frame once and the terminal one, then close 1000.
    """
    outage_seconds, step_seconds, steps = 2.0, 0.25, 40
    lab.start_worker("worker", concurrency=1)
    watcher = lab.watch(lab.submit(steps=steps, step_seconds=step_seconds))
    watcher.wait_for_frame(is_progress)
    lab.stop_redis()
    down_at = time.time()
    seen_at_stop = len(watcher.stream.frames)
    # Events keep being recorded (the database is the truth) while nothing can be published.
    wait_until(lambda: time.time() - down_at >= outage_seconds, outage_seconds + WAIT_SECONDS, "the outage")
    lab.start_redis_again()
    back_at = time.time()
    after_back = watcher.wait_for_frame(lambda f: stamp(f) > back_at, timeout=WAIT_SECONDS)
    live_again = time.time() - back_at
    events = finish(lab, watcher, timeout=steps * step_seconds + WAIT_SECONDS)
    assert events[-1]["type"] == "completed", events[-1]
    recorded_while_down = [e["seq"] for e in events if down_at <= stamp(e) < back_at]
    assert recorded_while_down, "no event was recorded while Redis was down: the outage proved nothing"
    received = {f["seq"] for f in watcher.stream.frames[1:]}
    assert set(recorded_while_down) <= received, (recorded_while_down, sorted(received))
    return Outcome(
        "Redis restarted while a client watches",
        f"the socket stayed open ({seen_at_stop} frames before the stop); {len(recorded_while_down)} events "
        f"recorded during the {outage_seconds:g} s outage reached it; live frames again "
        f"{live_again:.2f} s after Redis was back (seq {after_back['seq']}); whole stream, one terminal "
        "frame, close 1000",
        live_again,
        None,
        "Redis back → a live frame",
    )


def duplicate_message(lab: FaultLab) -> Outcome:
    """The same task message delivered twice: the claim lets one delivery run."""
    execution_id = lab.submit(steps=3, step_seconds=0.1)
    lab.publish_run(execution_id)
    assert lab.broker_counts() == (2, 0), "two messages for one execution wait in the queue"
    watcher = lab.watch(execution_id)
    worker = lab.start_worker("worker", concurrency=2)  # both deliveries at once: a real race
    events = finish(lab, watcher, timeout=WAIT_SECONDS)
    types = [e["type"] for e in events]
    assert types.count("started") == 1 and types[-1] == "completed", types
    wait_until(lambda: lab.broker_counts() == (0, 0), WAIT_SECONDS, "both messages consumed")
    received = len(RECEIVED.findall(worker.read_log()))
    assert received >= 2, worker.log_tail()
    return Outcome(
        "The same task message delivered twice",
        f"the worker received {received} messages for it: one `started`, one `completed`; the second claim did nothing",
    )


def submit_while_redis_down(lab: FaultLab) -> Outcome:
    """Submit while Redis is down: 503 with ``detail`` and ``Retry-After``, nothing stored; then it works again."""
    lab.start_worker("worker", concurrency=1)
    api = lab.api
    before = api.session.get(f"{lab.http_url}{API}/executions", timeout=WAIT_SECONDS).json()["pagination"]
    lab.stop_redis()
    asked_at = time.monotonic()
    response = api.session.post(
        f"{lab.http_url}{API}/executions",
        json={"type": "pipeline", "target_id": "demo_steps", "inputs": {}},
        timeout=WAIT_SECONDS,
    )
    answered_in = time.monotonic() - asked_at
    assert response.status_code == 503, response.text
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert int(response.headers["Retry-After"]) > 0, response.headers
    after = api.session.get(f"{lab.http_url}{API}/executions", timeout=WAIT_SECONDS).json()["pagination"]
    assert after == before, "a refused submit stores nothing"
    lab.start_redis_again()
    back_at = time.time()
    execution_id = lab.submit(steps=2, step_seconds=0.1)
    watcher = lab.watch(execution_id)
    events = finish(lab, watcher, timeout=WAIT_SECONDS)
    assert events[-1]["type"] == "completed", events[-1]
    recovery = stamp(events[-1]) - back_at
    return Outcome(
        "Submit while Redis is down",
        f"`503` in {answered_in:.2f} s with `detail` and "
        f"`Retry-After: {response.headers['Retry-After']}`, nothing stored; "
        "once Redis was back the next submit was accepted and completed (worker reconnected)",
        recovery,
        None,
        "Redis back → a new run completed",
    )


#: Every scenario, in the order of the table.
SCENARIOS: tuple[Callable[[FaultLab], Outcome], ...] = (
    worker_killed,
    pool_child_killed,
    worker_group_terminated,
    worker_terminated_long_run,
    worker_terminated_short_run,
    redis_restarted,
    redis_restarted_while_watching,
    duplicate_message,
    submit_while_redis_down,
)
