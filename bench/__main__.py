"""``python -m bench``: the performance issue's measures P1-P5 on the real stack, one table.

Starts Redis (unless ``REDIS_URL`` is set), ``manage.py serve`` (``--workers``
daphne processes, 2 by default) and a prefork Celery worker (concurrency 2) on a
throw-away SQLite file, once per channel layer (``--layers``, default
``hub,pubsub,core``: ours, channels-redis's ``RedisPubSubChannelLayer`` and
channels-redis's default ``RedisChannelLayer``), and measures:

* **P1** report -> frame at one watcher: a ``demo_steps`` run of 50 steps of
  50 ms; the delay from each frame's ``timestamp`` (taken when its event is
  recorded) to its arrival at the client.
* **P2** one execution at 10 events/s (``demo_steps``, ``step_seconds`` 0.1)
  with N watchers on one server (``--watchers``, default 100, 500, 1000): how
  many streams arrived whole (status, every seq once, one terminal frame, close
  1000), event -> frame delay p50/p99, the server's peak RSS (all its
  processes) and the CPU it spent. A REST poller (``GET /executions/{id}``
  every second) runs beside the watchers: its latency is the time from an
  event to the first poll that shows it.
* **P3** step events of one execution: ``demo_steps`` with 5,000 steps and
  ``step_seconds`` 0, events/s between ``started`` and ``completed``.
* **P4** ``GET /executions/{id}/progress`` (and ``GET /executions/{id}``) with
  50 concurrent clients, each with its own token and keep-alive connection:
  req/s, p50/p99.
* **P5** 200 WebSocket clients connecting at once: time to the first
  ``status`` frame, p50/p95/max.
* **report()** inside a target: ``bench.report_loop``'s loop, ns per call.

P1, P3 and P4 do not depend on the channel layer (P1 a little), so they run on
the first layer only. The load generators run in this process, on the same two
cores as the server, the worker and Redis: the figures are for the whole
machine, not for the server alone. Nothing is asserted; ``--repeat`` runs
everything again to show the spread.

Run::

    .venv/bin/python -m bench                          # all of it, about 4.5 minutes
    .venv/bin/python -m bench --layers hub --watchers 1000
    .venv/bin/python -m bench --workers 1              # one server process
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils import timezone

# Sets Django up at import (its docstring), so it comes before the models.
from bench._setup import BENCH, BenchEnv, create_user_with_token, percentile
from bench.load import HttpClient, Watcher, event_delays, http_load, watch
from bench.report_loop import measure
from devtools import processes
from executions.models import Execution, ProgressSnapshot
from executions.services import execution_cancel, execution_enqueue

API = "/api/v1"
LAYER_NAMES = {
    "hub": "hub (progress/hub.py)",
    "pubsub": "channels-redis RedisPubSubChannelLayer",
    "core": "channels-redis RedisChannelLayer",
}
GOALS = {
    "P1": "p50 <= 5 ms, p99 <= 25 ms",
    "P2": "1,000: all whole, p99 <= 250 ms, RSS <= 300 MB",
    "P3": ">= 1,000 events/s",
    "P4": ">= 1,000 req/s, p99 <= 100 ms",
    "P5": "p95 <= 200 ms",
    "report()": "<= 20 us",
}


@dataclass
class Row:
    measure: str
    layer: str
    result: str
    goal: str = ""


# --- the server's processes ------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the serve supervisor and its daphne workers)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry.name))
    return pids


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            pass
    return total


class ServerSampler:
    """Peak RSS and CPU time of the server's processes while a measure runs."""

    def __init__(self, server_pid: int) -> None:
        self.pids = process_tree(server_pid)
        self.peak = rss_bytes(self.pids)
        self.cpu_start = cpu_seconds(self.pids)
        self.cpu = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pids))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
        self.peak = max(self.peak, rss_bytes(self.pids))
        self.cpu = cpu_seconds(self.pids) - self.cpu_start


# --- fixtures in the database (shared with the servers) -----------------------------------------


def make_users(count: int) -> list[tuple[Any, str]]:
    return [create_user_with_token() for _ in range(count)]


def pending_execution(owner: Any, *, steps: int, step_seconds: float) -> Any:
    """A pending demo_steps execution, not queued yet: watchers connect first."""
    return Execution.objects.create(
        owner=owner, type="pipeline", target_id="demo_steps",
        inputs={"steps": steps, "step_seconds": step_seconds, "fail_at_step": None}, config={},
        enqueued_at=timezone.now(),
    )


def enqueue(execution: Any) -> None:
    execution_enqueue(execution)


def event_times(execution_id: str) -> dict[int, float]:
    stored = ProgressSnapshot.objects.filter(execution_id=execution_id).values_list("seq", "timestamp")
    return {seq: ts.timestamp() for seq, ts in stored}


# --- measures -----------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


async def poll_rest(client: HttpClient, execution_id: str, seen: list[tuple[float, int]], stop: asyncio.Event) -> None:
    """A 1 s REST poller: (arrival time, seq shown) for each answer."""
    while not stop.is_set():
        status, body = await client.get(f"{API}/executions/{execution_id}")
        if status == 200:
            data = json.loads(body)
            seen.append((time.time(), data["seq"]))
            if data["status"] in ("completed", "failed", "cancelled"):
                return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def poller_delays(seen: list[tuple[float, int]], events: dict[int, float]) -> tuple[list[float], int]:
    """Per event, from its timestamp to the first poll showing it; and how many polls showed an event itself."""
    delays = []
    shown = set()
    for seq, recorded in events.items():
        first = next((arrived for arrived, polled in seen if polled >= seq), None)
        if first is not None:
            delays.append(first - recorded)
    for _, polled in seen:
        shown.add(polled)
    return delays, len(shown & set(events))


async def watchers_run(
    stack: processes.AppServers, token: str, owner: Any, *, watchers: int, steps: int, step_seconds: float,
    connect_batch: int = 100,
) -> dict[str, Any]:
    """N watchers on one pending execution, then it runs; everything a P1/P2 row needs."""
    execution = await asyncio.to_thread(pending_execution, owner, steps=steps, step_seconds=step_seconds)
    url = f"{stack.ws_url}{API}/executions/{execution.id}/progress/ws"
    crowd = [Watcher() for _ in range(watchers)]
    tasks = []
    connect_started = time.perf_counter()
    for start in range(0, watchers, connect_batch):
        batch = crowd[start : start + connect_batch]
        events = [asyncio.Event() for _ in batch]
        tasks += [asyncio.create_task(watch(url, token, w, e)) for w, e in zip(batch, events, strict=True)]
        await asyncio.gather(*(e.wait() for e in events))
    connected_in = time.perf_counter() - connect_started
    assert stack.daphne is not None
    sampler = ServerSampler(stack.daphne.pid)
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    poller = HttpClient("127.0.0.1", stack.port, {"Authorization": f"Token {token}"})
    seen: list[tuple[float, int]] = []
    polling = asyncio.create_task(poll_rest(poller, execution.id, seen, stop))
    await asyncio.to_thread(enqueue, execution)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), steps * step_seconds + 120)
    finally:
        stop.set()
        await sampling
        await polling
        await poller.close()
    events = await asyncio.to_thread(event_times, execution.id)
    delays = event_delays(crowd)
    poll, polls_showing = poller_delays(seen, events)
    run_seconds = max(events.values()) - min(events.values()) if events else 0.0
    return {
        "watchers": watchers,
        "whole": sum(w.whole() for w in crowd),
        "errors": [w.error for w in crowd if w.error][:3],
        "connected_in": connected_in,
        "delays": delays,
        "poll": poll,
        "polls_showing": polls_showing,
        "events": len(events),
        "rss": sampler.peak,
        "cpu": sampler.cpu,
        "run_seconds": run_seconds,
        "frames": len(delays),
    }


def describe_stream(result: dict[str, Any]) -> str:
    delays = result["delays"]
    if not delays:
        return f"no frames; errors {result['errors']}"
    cpu_per_frame = result["cpu"] / max(result["frames"], 1) * 1e6
    text = (
        f"{result['whole']}/{result['watchers']} whole; p50 {ms(percentile(delays, 50))}, "
        f"p99 {ms(percentile(delays, 99))}, max {ms(max(delays))}; RSS {result['rss'] / 2**20:,.0f} MB; "
        f"server CPU {result['cpu']:.1f} s for {result['frames']:,} frames ({cpu_per_frame:,.0f} us/frame) "
        f"in a {result['run_seconds']:.1f} s run"
    )
    if result["errors"]:
        text += f"; errors e.g. {result['errors'][0]}"
    return text


def describe_poller(result: dict[str, Any]) -> str:
    poll = result["poll"]
    if not poll:
        return "no answers"
    return (
        f"p50 {ms(percentile(poll, 50))}, p99 {ms(percentile(poll, 99))}; "
        f"{result['polls_showing']} of {result['events']} events ever shown as the current state"
    )


async def p5_connect_storm(stack: processes.AppServers, token: str, owner: Any, clients: int) -> str:
    execution = await asyncio.to_thread(pending_execution, owner, steps=1, step_seconds=0)
    url = f"{stack.ws_url}{API}/executions/{execution.id}/progress/ws"
    crowd = [Watcher() for _ in range(clients)]
    events = [asyncio.Event() for _ in crowd]
    tasks = [asyncio.create_task(watch(url, token, w, e)) for w, e in zip(crowd, events, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
    firsts = [w.first_frame_after for w in crowd if w.first_frame_after is not None]
    # Cancelling ends every stream (terminal frame, close 1000).
    await asyncio.to_thread(cancel, execution.id)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    if not firsts:
        return f"no client got a frame; e.g. {crowd[0].error}"
    return (
        f"{len(firsts)}/{clients} got status; p50 {ms(percentile(firsts, 50))}, p95 {ms(percentile(firsts, 95))}, "
        f"max {ms(max(firsts))}"
    )


def cancel(execution_id: str) -> None:
    execution_cancel(execution_id=execution_id)


def p3_step_events(stack: processes.AppServers, owner: Any, steps: int) -> str:
    execution = pending_execution(owner, steps=steps, step_seconds=0)
    enqueue(execution)
    deadline = time.monotonic() + 300
    while True:
        row = Execution.objects.filter(pk=execution.id).values("status", "started_at", "completed_at", "seq").get()
        if row["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if row["status"] != "completed":
        return f"ended {row['status']}"
    seconds = (row["completed_at"] - row["started_at"]).total_seconds()
    return f"{row['seq']:,} stored events in {seconds:.2f} s: {row['seq'] / seconds:,.0f} events/s"


async def p4_rest(stack: processes.AppServers, users: list[tuple[Any, str]], suffix: str, duration: float) -> str:
    executions = await asyncio.to_thread(finished_executions, [u for u, _ in users])
    paths = [f"{API}/executions/{e}{suffix}" for e in executions]
    result, elapsed = await http_load("127.0.0.1", stack.port, paths, [t for _, t in users], duration=duration)
    lat = result.latencies
    if not lat:
        return f"no answers ({result.errors} errors)"
    statuses = ", ".join(f"{count} x {status}" for status, count in sorted(result.statuses.items()))
    return (
        f"{len(lat) / elapsed:,.0f} req/s; p50 {ms(percentile(lat, 50))}, p99 {ms(percentile(lat, 99))} "
        f"({len(users)} clients, {statuses}, {result.errors} errors)"
    )


def finished_executions(owners: list[Any]) -> list[str]:
    """One completed execution per owner, with a progress to answer."""
    now = timezone.now()
    progress = {"current_step": 5, "total_steps": 5, "percentage": 100.0, "current_step_name": None}
    return [
        Execution.objects.create(
            owner=owner, type="pipeline", target_id="demo_steps", status="completed", progress=progress,
            inputs={"steps": 5, "step_seconds": 0, "fail_at_step": None}, config={}, outputs={"steps_completed": 5},
            seq=7, started_at=now, completed_at=now,
        ).id
        for owner in owners
    ]


def report_cost(reports: int = 100_000) -> str:
    seconds, events = measure(reports)
    return f"{seconds / reports * 1e9:,.0f} ns per call ({reports:,} calls, {len(events)} events recorded)"


# --- the run --------------------------------------------------------------------------------------------


def run_layer(
    bench_env: BenchEnv, layer: str, args: argparse.Namespace, users: list[tuple[Any, str]], first: bool
) -> list[Row]:
    rows: list[Row] = []
    env = dict(os.environ)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    # As deployed: debug off (no SQL recorded per query, no browsable API).
    env.update(
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY=secrets.token_urlsafe(32), DJANGO_SECURE_COOKIES="0",
        CHANNEL_LAYER=layer, LOG_LEVEL="WARNING", EXECUTION_REQUEUE_SECONDS="600",
        PROMETHEUS_MULTIPROC_DIR=str(Path(bench_env.work_dir) / f"prometheus-{layer}"),
    )
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(exist_ok=True)
    web: processes.WebCommand = functools.partial(processes.serve_command, workers=args.workers)
    if args.server == "daphne":
        web = processes.daphne_command
    log_dir = Path(bench_env.work_dir) / f"log-{layer}"
    stack = processes.AppServers(env, processes.free_port(), log_dir, web_command=web)
    name = LAYER_NAMES[layer]
    print(f"[{layer}] starting the server ({args.server}, {args.workers} workers) and a Celery worker ...", flush=True)
    stack.start()
    owner, token = users[0]
    try:
        print(f"[{layer}] P5: {args.storm} clients connecting at once ...", flush=True)
        rows.append(Row("P5", name, asyncio.run(p5_connect_storm(stack, token, owner, args.storm)), GOALS["P5"]))
        if first:
            print(f"[{layer}] P1: one watcher, 50 events ...", flush=True)
            p1 = asyncio.run(watchers_run(stack, token, owner, watchers=1, steps=50, step_seconds=0.05))
            rows.append(Row("P1", name, describe_stream(p1).split("; RSS")[0], GOALS["P1"]))
            rows.append(Row("P1 vs 1 s poller", name, describe_poller(p1)))
        for count in args.watchers:
            print(f"[{layer}] P2: {count} watchers, 10 events/s for {args.p2_seconds:g} s ...", flush=True)
            result = asyncio.run(
                watchers_run(stack, token, owner, watchers=count, steps=int(args.p2_seconds * 10), step_seconds=0.1)
            )
            rows.append(Row(f"P2 N={count}", name, describe_stream(result), GOALS["P2"] if count == 1000 else ""))
            rows.append(Row(f"P2 N={count} vs 1 s poller", name, describe_poller(result)))
        if first:
            print(f"[{layer}] P3: demo_steps of {args.p3_steps} steps ...", flush=True)
            rows.append(Row("P3", name, p3_step_events(stack, owner, args.p3_steps), GOALS["P3"]))
            print(f"[{layer}] P4: 50 token clients on GET .../progress for {args.p4_seconds:g} s ...", flush=True)
            p4 = asyncio.run(p4_rest(stack, users, "/progress", args.p4_seconds))
            rows.append(Row("P4 /progress", name, p4, GOALS["P4"]))
            rows.append(Row("P4 /executions/{id}", name, asyncio.run(p4_rest(stack, users, "", args.p4_seconds / 2))))
    finally:
        stack.stop()
    return rows


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print()
    serve = f"manage.py serve with {args.workers} daphne processes"
    print(f"Server: {serve}" if args.server == "serve" else "Server: one daphne process")
    print("Load generators, server, Celery worker (concurrency 2) and Redis share this machine's "
          f"{os.cpu_count()} cores: the figures are for the whole machine.")
    widths = [max(len(r.measure) for r in rows), max(len(r.layer) for r in rows)]
    print(f"| {'measure':<{widths[0]}} | {'channel layer':<{widths[1]}} | result | goal |")
    print(f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|---|---|")
    for r in rows:
        print(f"| {r.measure:<{widths[0]}} | {r.layer:<{widths[1]}} | {r.result} | {r.goal} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="hub,pubsub,core", help="channel layers to compare (hub,pubsub,core)")
    parser.add_argument("--workers", type=int, default=2, help="daphne processes of manage.py serve (default 2)")
    parser.add_argument("--server", choices=("serve", "daphne"), default="serve", help="manage.py serve, or one daphne")
    parser.add_argument("--watchers", default="100,500,1000", help="P2 sizes (default 100,500,1000)")
    parser.add_argument("--p2-seconds", type=float, default=5.0, help="length of each P2 run at 10 events/s (5)")
    parser.add_argument("--p3-steps", type=int, default=5000, help="P3 steps (5000)")
    parser.add_argument("--p4-seconds", type=float, default=8.0, help="P4 measuring time (8)")
    parser.add_argument("--storm", type=int, default=200, help="P5 clients (200)")
    parser.add_argument("--repeat", type=int, default=1, help="run everything this many times (1)")
    args = parser.parse_args()
    args.watchers = [int(n) for n in args.watchers.split(",") if n]
    layers = [layer for layer in args.layers.split(",") if layer]

    started = time.monotonic()
    bench_env = BENCH
    users = make_users(50)
    all_rows: list[list[Row]] = []
    for repetition in range(args.repeat):
        rows: list[Row] = []
        for i, layer in enumerate(layers):
            rows += run_layer(bench_env, layer, args, users, first=i == 0)
        rows.append(Row("report()", "-", report_cost(), GOALS["report()"]))
        all_rows.append(rows)
        print_table(rows, args)
        print(f"(run {repetition + 1} of {args.repeat}; {time.monotonic() - started:.0f} s so far)", flush=True)


if __name__ == "__main__":
    main()
