"""A deploy under load: N sockets and M event streams through a SIGHUP to ``manage.py serve``.

Starts Redis (unless ``REDIS_URL`` is set), ``manage.py serve`` (two processes)
and a prefork Celery worker on a throw-away SQLite file, as ``tests/stack.py``
does. A ``demo_steps`` run at 10 events/s is followed by ``--sockets``
WebSockets (500 by default), ``--streams`` event streams (100) and a REST
polling loop (``GET /executions/{id}`` every 100 ms, no retries); once every
follower has its first frame and the run is at seq 30, ``serve`` gets SIGHUP:
a new generation starts, the old one drains (1012, ends of streams). The
followers resume as ``progress_client`` does (``devtools.followers``).

Prints the reconnect time (from a stream stopping to the first frame of the next
connection, the client's random wait of up to 1 s included) p50/p99/max, how
the sockets were closed (1012, anything else), streams that are not whole
(gaps, repeats, a missing terminal frame), and the REST answers (5xx, failed
requests). Goal: reconnect p99 <= 3 s at 500 sockets, 0 gaps, 0 5xx. The
clients run in this process, on the same cores as the servers.

Run::

    .venv/bin/python -m bench.deploy
    .venv/bin/python -m bench.deploy --sockets 200 --streams 20
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import requests

# Sets Django up at import (its docstring), so it comes before the rest of ours.
from bench._setup import BENCH, create_user_with_token, percentile, start_servers
from devtools.followers import API, DeployRun, Followed, through_a_reload

#: 10 events/s for 40 s: long enough for 600 clients to connect, the new generation to
#: start under that load, the drain and every reconnect.
STEPS = 400
STEP_SECONDS = 0.1
RELOAD_AFTER_SEQ = 30
POLLERS = 1
POLL_SECONDS = 0.1


def describe_seconds(values: list[float]) -> str:
    if not values:
        return "(none)"
    return f"p50 {percentile(values, 50):.2f} s, p99 {percentile(values, 99):.2f} s, max {max(values):.2f} s"


def report(run: DeployRun, sockets: int, streams: int) -> None:
    socket_reconnects = [r for f in run.sockets for r in f.reconnects]
    stream_reconnects = [r for f in run.streams for r in f.reconnects]
    endings = Counter(code for f in run.sockets for code in f.endings)
    told = sum(1 for f in run.sockets if f.endings.count(1012) == 1)
    others = {code: count for code, count in endings.items() if code not in (1000, 1012)}
    broken: list[tuple[str, Followed]] = [
        *(("socket", f) for f in run.sockets if f.problems()),
        *(("stream", f) for f in run.streams if f.problems()),
    ]
    server_errors = sum(count for status, count in run.polled.statuses.items() if status >= 500)
    stream_failures = [failure for f in [*run.sockets, *run.streams] for failure in f.failures]
    every = socket_reconnects + stream_reconnects
    print(f"deploy: {sockets} sockets + {streams} event streams + a REST poller on a run at "
          f"{1 / STEP_SECONDS:.0f} events/s; SIGHUP at {run.reloaded_at:.1f} s, all whole at {run.took:.1f} s")
    print(f"  reconnect, all:     {describe_seconds(every)}   (goal: p99 <= 3 s)")
    print(f"  reconnect, sockets: {describe_seconds(socket_reconnects)}")
    print(f"  reconnect, streams: {describe_seconds(stream_reconnects)}")
    print(f"  sockets closed with 1012: {endings.get(1012, 0)} ({told} of {sockets} exactly once); "
          f"other close codes: {others or 'none'}")
    print(f"  streams not whole (gaps, repeats, terminal): {len(broken)}   (goal: 0)")
    print(f"  REST: {sum(run.polled.statuses.values())} answers {dict(sorted(run.polled.statuses.items()))}, "
          f"5xx {server_errors}, failed requests {len(run.polled.failures)}   (goal: 0 5xx)")
    print(f"  connections that could not be opened: {len(stream_failures)}")
    for kind, follower in broken[:5]:
        print(f"    {kind}: {follower.problems()} endings {follower.endings}")
    for failure in (run.polled.failures + stream_failures)[:5]:
        print(f"    {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=500, help="WebSocket followers (default 500)")
    parser.add_argument("--streams", type=int, default=100, help="event-stream followers (default 100)")
    args = parser.parse_args()

    _, token = create_user_with_token()
    print(f"starting manage.py serve and a Celery worker on {BENCH.sqlite_path} ...", flush=True)
    servers = start_servers(BENCH, concurrency=2)
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        response = session.post(
            f"{servers.http_url}{API}/executions", timeout=60,
            json={"type": "pipeline", "target_id": "demo_steps",
                  "inputs": {"steps": STEPS, "step_seconds": STEP_SECONDS}},
        )
        assert response.status_code == 202, response.text
        execution_id: str = response.json()["execution_id"]
        replaced: list[int] = []

        def reload() -> None:
            replaced.extend(servers.reload_web())

        started = time.monotonic()
        run = asyncio.run(
            through_a_reload(
                http_url=servers.http_url, ws_url=servers.ws_url, token=token, execution_id=execution_id,
                sockets=args.sockets, streams=args.streams, pollers=POLLERS, poll_seconds=POLL_SECONDS,
                reload=reload, reload_after_seq=RELOAD_AFTER_SEQ,
            )
        )
        servers.wait_reloaded(replaced)
        status: Any = session.get(f"{servers.http_url}{API}/executions/{execution_id}", timeout=60).json()["status"]
        report(run, args.sockets, args.streams)
        print(f"  the run: {status}; the whole scenario took {time.monotonic() - started:.1f} s")
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
