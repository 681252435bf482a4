"""Connect churn against one daphne for minutes, printing its memory (RSS) over time.

The load of issue 8, item 5: ``--clients`` WebSocket clients (20) each connect
to an execution, read its first frame (``status``) and disconnect, in a loop;
every ``--run-every`` seconds (3) a short ``demo_steps`` run (5 steps of 0.3 s) is submitted and
one more client follows it to the end, checking the stream is whole (``status``,
every later ``seq`` once and in order, one terminal frame, close 1000). The
churn clients pick among a long execution that stays running and the recent
short runs, so both ways a socket ends are exercised: the client leaving a live
stream, and the server closing an ended one.

Every ``--sample`` seconds (10) it prints daphne's RSS and the connects so far;
at the end, RSS after the warm-up (``--warmup``, 120 s: caches, thread pools
and the allocator's arenas settle about two minutes in) against the last sample,
and the least-squares slope over the samples after warm-up, in KB per 1,000
connects and in % per 30 minutes. Flat memory after warm-up is the goal (at
most +10 % over 30 minutes).

``--trace`` runs daphne with tracemalloc (``core.memtrace``) and takes heap
snapshots inside daphne after the warm-up, half-way through the rest and at the
end, each once the load has paused and daphne has no socket open (its
``/metrics``), so no connection is in flight in any of them. It prints the
allocation sites that grew in both halves, with the bytes per connect: what
each connection leaves behind (a cache that fills up grows once; a leak keeps
growing). tracemalloc slows daphne down and raises its RSS, so the RSS
series of a traced run is not comparable with an untraced one.

Starts Redis (embedded, unless ``REDIS_URL`` is set), daphne and a prefork
Celery worker (concurrency 2) on a throw-away SQLite file, or on
``DATABASE_URL`` when set (it is migrated). Debug is off, as in production
(Django keeps every query of a connection in debug). The clients run in this
process, on the same cores as the servers.

Run::

    .venv/bin/python -m bench.soak                 # 5 minutes
    .venv/bin/python -m bench.soak --minutes 30
    .venv/bin/python -m bench.soak --minutes 3 --trace
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from devtools import processes
from devtools.launcher import fresh_metrics_dir

API = "/api/v1"
TIMEOUT = 30.0
USERNAME = "soak"
#: How many recent short runs the churn clients choose from (besides the long one).
RECENT_RUNS = 10
#: Allocation sites printed by ``--trace``.
TRACE_TOP = 15
#: Innermost frames printed per traceback by ``--trace``.
TRACE_FRAMES = 10
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Counters:
    connects: int = 0
    connect_failures: int = 0
    runs: int = 0
    whole_streams: int = 0
    broken_streams: list[str] = field(default_factory=list)


@dataclass
class Sample:
    elapsed: float
    connects: int
    rss_kb: int


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KB (Linux: VmRSS in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def slope_per_second(samples: list[Sample], key: str) -> float:
    """Least-squares slope of RSS (KB) against ``key`` (elapsed seconds, or connects)."""
    xs = [float(getattr(s, key)) for s in samples]
    ys = [float(s.rss_kb) for s in samples]
    if len(samples) < 2 or len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def is_whole(frames: list[dict[str, Any]]) -> bool:
    """``status``, then every later event once and in order, ending with the one terminal frame.

    An execution that had ended before the socket opened gets ``status`` and its
    terminal frame with the same ``seq`` (docs/protocol/websocket.md).
    """
    if len(frames) < 2 or frames[0]["type"] != "status" or frames[-1]["type"] not in TERMINAL:
        return False
    if sum(f["type"] in TERMINAL for f in frames) != 1:
        return False
    seqs = [f["seq"] for f in frames]
    if frames[0]["status"] in TERMINAL:
        return seqs == [seqs[0], seqs[0]]
    return seqs[1:] == list(range(seqs[0] + 1, seqs[0] + len(seqs)))


# --- the stack --------------------------------------------------------------------------
def server_env(work_dir: Path, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_SECURE_COOKIES": "0",
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "METRICS_TOKEN": secrets.token_urlsafe(24),
            "PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(work_dir / "prometheus")),
        }
    )
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    if not env.get("DATABASE_URL"):
        env["SQLITE_PATH"] = str(work_dir / "soak.sqlite3")
    return env


def create_token(env: dict[str, str]) -> str:
    """A user and its API token, through management commands (this process never loads Django)."""
    processes.manage({**env, "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16)},
           "createsuperuser", "--noinput", "--username", USERNAME, "--email", "soak@example.com")
    output = processes.manage(env, "drf_create_token", USERNAME)
    match = re.search(r"\b([0-9a-f]{40})\b", output)
    if match is None:
        raise SystemExit(f"no token in: {output}")
    return match.group(1)


# --- the load ---------------------------------------------------------------------------
class Load:
    """The churn clients, the short runs and the samples, sharing one event loop."""

    def __init__(
        self, http_url: str, ws_url: str, token: str, metrics_token: str, args: argparse.Namespace, daphne_pid: int
    ) -> None:
        self.http_url = http_url
        self.metrics_token = metrics_token
        self.ws_url = ws_url
        self.headers = {"Authorization": f"Token {token}"}
        self.args = args
        self.daphne_pid = daphne_pid
        self.session = requests.Session()
        self.session.headers.update(self.headers)
        self.counters = Counters()
        self.samples: list[Sample] = []
        self.targets: deque[str] = deque(maxlen=RECENT_RUNS)
        self.followers: set[asyncio.Task[None]] = set()
        self.long_run = ""
        self.stop = asyncio.Event()
        #: Cleared while the server is left to settle for a heap snapshot.
        self.going = asyncio.Event()
        self.going.set()
        #: Sockets this process has open (churn and followers).
        self.open_sockets = 0
        self.started = time.monotonic()

    def submit(self, inputs: dict[str, Any]) -> str:
        response = self.session.post(
            f"{self.http_url}{API}/executions", timeout=TIMEOUT,
            json={"type": "pipeline", "target_id": "demo_steps", "inputs": inputs},
        )
        response.raise_for_status()
        return str(response.json()["execution_id"])

    def ws(self, execution_id: str) -> Any:
        return connect(
            f"{self.ws_url}{API}/executions/{execution_id}/progress/ws",
            additional_headers=self.headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None,
        )

    async def churn(self) -> None:
        """Connect, read the ``status`` frame, disconnect; again until stopped."""
        while not self.stop.is_set():
            await self.going.wait()
            execution_id = random.choice([self.long_run, *self.targets])
            self.open_sockets += 1
            try:
                async with self.ws(execution_id) as ws:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if frame.get("type") != "status":
                        raise ValueError(f"first frame {frame.get('type')}")
                self.counters.connects += 1
            except (OSError, TimeoutError, ValueError, WebSocketException) as exc:
                self.counters.connect_failures += 1
                if self.counters.connect_failures <= 5:
                    print(f"  connect to {execution_id} failed: {exc!r}", flush=True)
            finally:
                self.open_sockets -= 1

    async def short_runs(self) -> None:
        """A short run every ``--run-every`` seconds, followed whole by one client."""
        while not self.stop.is_set():
            await self.going.wait()
            execution_id = await asyncio.to_thread(self.submit, {"steps": 5, "step_seconds": 0.3})
            self.targets.append(execution_id)
            self.counters.runs += 1
            # Kept: the event loop holds only weak references to tasks.
            follower = asyncio.create_task(self.follow(execution_id))
            self.followers.add(follower)
            follower.add_done_callback(self.followers.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.run_every)

    async def follow(self, execution_id: str) -> None:
        frames: list[dict[str, Any]] = []
        close_code: int | None = None
        self.open_sockets += 1
        try:
            async with self.ws(execution_id) as ws:
                await self.read_all(ws, frames)
                close_code = ws.close_code
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.counters.broken_streams.append(f"{execution_id}: {exc!r}")
            return
        finally:
            self.open_sockets -= 1
        whole = close_code == 1000 and is_whole(frames)
        if whole:
            self.counters.whole_streams += 1
        else:
            self.counters.broken_streams.append(f"{execution_id}: close {close_code}, {[f['type'] for f in frames]}")

    @staticmethod
    async def read_all(ws: ClientConnection, frames: list[dict[str, Any]]) -> None:
        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
        except ConnectionClosed:
            return

    def sample(self) -> Sample:
        sample = Sample(time.monotonic() - self.started, self.counters.connects, rss_kb(self.daphne_pid))
        self.samples.append(sample)
        first = self.samples[0].rss_kb
        print(
            f"  {sample.elapsed / 60:5.1f} min  connects {sample.connects:7,d}  "
            f"RSS {sample.rss_kb / 1024:6.1f} MB  ({(sample.rss_kb - first) / first * 100:+5.1f} % since start)"
            f"  runs {self.counters.runs}, whole {self.counters.whole_streams}, "
            f"broken {len(self.counters.broken_streams)}",
            flush=True,
        )
        return sample

    def server_sockets(self) -> float:
        """The server's open WebSockets, from its /metrics (``executions_websockets_open``)."""
        response = requests.get(
            f"{self.http_url}/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"}, timeout=TIMEOUT
        )
        response.raise_for_status()
        match = re.search(r"^executions_websockets_open (\S+)$", response.text, re.MULTILINE)
        return float(match.group(1)) if match else float("nan")

    async def settle(self) -> None:
        """Pause the load until neither side has a socket open, so a snapshot holds no connection in flight."""
        self.going.clear()
        deadline = time.monotonic() + 2 * TIMEOUT
        while self.open_sockets or await asyncio.to_thread(self.server_sockets) != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"sockets still open after {2 * TIMEOUT:g} s: {self.open_sockets} here")
            await asyncio.sleep(0.1)

    async def run(self, snapshot: Callable[[int], None] | None) -> None:
        """The load for ``--minutes``.

        With ``snapshot``, the load pauses after the warm-up, half-way through the
        rest and at the end, until the server has no socket open, and ``snapshot``
        is called with the connects so far.
        """
        self.long_run = await asyncio.to_thread(self.submit, {"steps": 100, "step_seconds": 60})
        self.sample()
        tasks = [asyncio.create_task(self.churn()) for _ in range(self.args.clients)]
        tasks.append(asyncio.create_task(self.short_runs()))
        end = self.started + self.args.minutes * 60
        warmup = min(self.args.warmup, self.args.minutes * 60 / 2)
        snapshot_due = [warmup, (warmup + self.args.minutes * 60) / 2] if snapshot else []
        while time.monotonic() < end:
            await asyncio.sleep(min(self.args.sample, max(end - time.monotonic(), 0)))
            self.sample()
            if snapshot and snapshot_due and self.samples[-1].elapsed >= snapshot_due[0]:
                snapshot_due.pop(0)
                await self.settle()
                await asyncio.to_thread(snapshot, self.counters.connects)
                self.going.set()
        if snapshot:
            await self.settle()
            await asyncio.to_thread(snapshot, self.counters.connects)
        self.stop.set()
        self.going.set()
        await asyncio.gather(*tasks)
        cancel_url = f"{self.http_url}{API}/executions/{self.long_run}/cancel"
        await asyncio.to_thread(self.session.post, cancel_url, timeout=TIMEOUT)


# --- tracemalloc --------------------------------------------------------------------------
class Tracer:
    """Asks daphne for heap snapshots (SIGUSR2, see ``core.memtrace``) and compares them."""

    def __init__(self, directory: Path, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self.taken: list[tuple[Path, int]] = []

    def __call__(self, connects: int) -> None:
        number = len(self.taken) + 1
        os.kill(self.pid, signal.SIGUSR2)
        path = self.directory / f"{self.pid}-{number:03d}.tracemalloc"
        deadline = time.monotonic() + 120
        while not path.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"daphne wrote no snapshot {path}")
            time.sleep(0.1)
        self.taken.append((path, connects))
        print(f"  heap snapshot {number} at {connects:,d} connects", flush=True)

    def report(self) -> None:
        """What grew between the snapshots, per connect; sites that grew in both halves are the suspects.

        A cache filling up grows once and stops; a leak grows in proportion to
        the connects, so it shows in both halves of the run.
        """
        if len(self.taken) < 3:
            return
        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        ]
        first, middle, last = (tracemalloc.Snapshot.load(str(path)).filter_traces(ignore) for path, _ in self.taken[:3])
        connects = max(self.taken[2][1] - self.taken[0][1], 1)
        total = sum(t.size for t in last.traces) - sum(t.size for t in first.traces)
        print(
            f"\ntraced heap: {total / 1024:+,.0f} KB over {connects:,d} connects "
            f"= {total / connects:+,.1f} B per connect"
        )
        first_half = {stat.traceback: stat.size_diff for stat in middle.compare_to(first, "traceback")}
        growth = [stat for stat in last.compare_to(first, "traceback") if stat.size_diff > 0]
        steady = [
            stat
            for stat in growth
            if first_half.get(stat.traceback, 0) > 0 and stat.size_diff > first_half[stat.traceback]
        ]
        print(f"allocation sites that grew in both halves ({len(steady)} of {len(growth)} that grew), largest first:")
        for stat in steady[:TRACE_TOP]:
            print(f"  {stat.size_diff / 1024:+9.1f} KB {stat.count_diff:+8d} blocks "
                  f"({stat.size_diff / connects:+7.1f} B per connect), innermost frame last:")
            for frame in list(stat.traceback)[-TRACE_FRAMES:]:
                print(f"      {frame.filename}:{frame.lineno}")


def summary(load: Load, args: argparse.Namespace) -> None:
    after_warmup = [s for s in load.samples if s.elapsed >= args.warmup] or load.samples[-1:]
    base, last = after_warmup[0], load.samples[-1]
    per_second = slope_per_second(after_warmup, "elapsed")
    per_connect = slope_per_second(after_warmup, "connects")
    counters = load.counters
    print(f"\nsoak: {args.minutes:g} min, {args.clients} churn clients, a short run every {args.run_every:g} s")
    print(f"  connects {counters.connects:,d} ({counters.connects / max(last.elapsed, 1):.0f}/s), "
          f"failed {counters.connect_failures}; runs {counters.runs}, whole streams {counters.whole_streams}, "
          f"broken {len(counters.broken_streams)}")
    for broken in counters.broken_streams[:5]:
        print(f"    broken: {broken}")
    print(f"  RSS: start {load.samples[0].rss_kb / 1024:.1f} MB, after warm-up ({base.elapsed / 60:.1f} min) "
          f"{base.rss_kb / 1024:.1f} MB, end {last.rss_kb / 1024:.1f} MB: "
          f"{(last.rss_kb - base.rss_kb) / base.rss_kb * 100:+.1f} % since warm-up")
    print(f"  trend after warm-up: {per_connect * 1000:+.1f} KB per 1,000 connects, "
          f"{per_second * 1800 / base.rss_kb * 100:+.1f} % per 30 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the churn runs (default 5)")
    parser.add_argument("--clients", type=int, default=20, help="churn clients (default 20)")
    parser.add_argument("--run-every", type=float, default=3.0, help="seconds between short runs (default 3)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples (default 10)")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the trend counts (default 120)")
    parser.add_argument("--trace", action="store_true", help="tracemalloc snapshots in daphne, diffed at the end")
    parser.add_argument("--trace-frames", type=int, default=10, help="frames kept per allocation (default 10)")
    args = parser.parse_args()

    work_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    redis: processes.Child | None = None
    children: list[processes.Child] = []
    try:
        redis_url = os.environ.get("REDIS_URL", "")
        if not redis_url:
            redis = processes.start_redis(work_dir / "redis")
            redis_url = redis.url or ""
        env = server_env(work_dir, redis_url)
        processes.manage(env, "migrate", "--noinput")
        token = create_token(env)
        trace_dir = work_dir / "trace" if args.trace else None
        web_env = env
        if trace_dir is not None:
            web_env = {**env, "MEMORY_TRACE_DIR": str(trace_dir), "MEMORY_TRACE_FRAMES": str(args.trace_frames)}
        port = processes.free_port()
        print(f"starting daphne (port {port}) and a Celery worker; logs in {work_dir} ...", flush=True)
        daphne = processes.start_web(web_env, port, log_path=work_dir / "web.log")
        children.append(daphne)
        children.append(processes.start_worker(env, log_path=work_dir / "worker.log"))
        tracer = Tracer(trace_dir, daphne.pid) if trace_dir is not None else None
        load = Load(daphne.url or "", f"ws://127.0.0.1:{port}", token, env["METRICS_TOKEN"], args, daphne.pid)
        print(f"churn for {args.minutes:g} min: RSS of daphne (pid {daphne.pid}) every {args.sample:g} s", flush=True)
        asyncio.run(load.run(tracer))
        summary(load, args)
        if tracer is not None:
            tracer.report()
    finally:
        for child in reversed(children):
            child.stop()
        if redis is not None:
            redis.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
