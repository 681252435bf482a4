"""Fan-out of one execution's stream to many WebSocket clients on the real stack.

Starts Redis (unless ``REDIS_URL`` is set), daphne and a prefork Celery worker
(concurrency 2) on a throw-away SQLite file, as ``tests/stack.py`` does. Both
worker processes are kept busy by two long executions while K clients (50 by
default) connect to a pending ``demo_steps`` execution of 200 steps with
``step_seconds=0``; cancelling the two lets it start, so every client sees the
whole run: ``status`` (pending, seq 0), ``started``, 200 ``progress``,
``completed``, close 1000. Prints how long the delivery took, aggregate
frames/s, the delay from each frame's ``timestamp`` (when the event was
recorded) to its receipt, and how many clients got the full gapless sequence.

The clients run in this process, on the same 2 cores as daphne and the worker:
the numbers are for the whole machine, not for daphne alone.

Run::

    .venv/bin/python -m bench.ws_fanout
    .venv/bin/python -m bench.ws_fanout --clients 200 --steps 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# Sets Django up at import (its docstring), so it comes before the models.
from bench._setup import BENCH, create_user_with_token, describe_ms, start_servers

API = "/api/v1"
TIMEOUT = 60.0


@dataclass
class Client:
    frames: list[dict[str, Any]] = field(default_factory=list)
    received: list[float] = field(default_factory=list)  # wall clock, comparable to frame timestamps
    connected_in: float = 0.0
    close_code: int | None = None


def stamp(frame: dict[str, Any]) -> float:
    return datetime.fromisoformat(frame["timestamp"].replace("Z", "+00:00")).timestamp()


def gapless(client: Client, steps: int) -> bool:
    types = [f["type"] for f in client.frames]
    return (
        client.close_code == 1000
        and types == ["status", "started"] + ["progress"] * steps + ["completed"]
        and client.frames[0]["seq"] == 0
        and [f["seq"] for f in client.frames[1:]] == list(range(1, steps + 3))
    )


async def follow(url: str, token: str, client: Client, connected: asyncio.Event, go: asyncio.Event) -> None:
    start = time.perf_counter()
    async with connect(url, additional_headers={"Authorization": f"Token {token}"}, max_queue=None,
                       ping_interval=None, open_timeout=TIMEOUT) as ws:
        first = json.loads(await ws.recv())
        client.connected_in = time.perf_counter() - start
        client.frames.append(first)
        client.received.append(time.time())
        connected.set()
        await go.wait()
        try:
            while True:
                async with asyncio.timeout(TIMEOUT):
                    text = await ws.recv()
                client.received.append(time.time())
                client.frames.append(json.loads(text))
        except ConnectionClosed as closed:
            client.close_code = closed.rcvd.code if closed.rcvd is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients (default 50)")
    parser.add_argument("--steps", type=int, default=200, help="demo_steps steps (default 200)")
    args = parser.parse_args()

    bench = BENCH
    _, token = create_user_with_token()
    print(f"starting daphne and a Celery worker on {bench.sqlite_path} ...", flush=True)
    servers = start_servers(bench, concurrency=2)
    try:
        run(servers.http_url, servers.ws_url, token, args.clients, args.steps)
    finally:
        servers.stop()


def run(http_url: str, ws_base: str, token: str, clients: int, steps: int) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"

    def submit(inputs: dict[str, Any]) -> str:
        response = session.post(f"{http_url}{API}/executions", timeout=TIMEOUT,
                                json={"type": "pipeline", "target_id": "demo_steps", "inputs": inputs})
        assert response.status_code == 202, response.text
        return response.json()["execution_id"]

    def status(execution_id: str) -> str:
        return session.get(f"{http_url}{API}/executions/{execution_id}", timeout=TIMEOUT).json()["status"]

    def wait(execution_id: str, ok: set[str]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while status(execution_id) not in ok:
            assert time.monotonic() < deadline, f"{execution_id} never reached {ok}"
            time.sleep(0.05)

    # Both worker processes busy: the measured execution stays pending until released.
    blockers = [submit({"steps": 1, "step_seconds": 60}) for _ in range(2)]
    for blocker in blockers:
        wait(blocker, {"running"})
    execution_id = submit({"steps": steps, "step_seconds": 0})
    url = f"{ws_base}{API}/executions/{execution_id}/progress/ws"

    async def scenario() -> tuple[list[Client], float, float]:
        followers = [Client() for _ in range(clients)]
        connected = [asyncio.Event() for _ in range(clients)]
        go = asyncio.Event()
        connect_started = time.perf_counter()
        tasks = [asyncio.create_task(follow(url, token, c, e, go)) for c, e in zip(followers, connected, strict=True)]
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(e.wait() for e in connected))
        all_connected = time.perf_counter() - connect_started
        go.set()
        released = time.time()
        for blocker in blockers:  # frees a worker process: the measured run starts
            await asyncio.to_thread(session.post, f"{http_url}{API}/executions/{blocker}/cancel", timeout=TIMEOUT)
        await asyncio.gather(*tasks)
        return followers, all_connected, released

    followers, all_connected, released = asyncio.run(scenario())
    wait(execution_id, {"completed"})

    ok = [c for c in followers if gapless(c, steps)]
    events = [(f, r) for c in followers for f, r in zip(c.frames[1:], c.received[1:], strict=True)]
    delays = [r - stamp(f) for f, r in events]
    first_event = min(stamp(f) for f, _ in events)
    last_receipt = max(r for _, r in events)
    run_seconds = max(stamp(f) for f, _ in events) - first_event
    delivery = last_receipt - first_event
    print(f"ws_fanout: {clients} clients on one demo_steps run of {steps} steps (step_seconds=0), "
          f"{steps + 2} events each")
    print(f"  connect: all {clients} had their status frame after {all_connected:.2f} s "
          f"({describe_ms([c.connected_in for c in followers])})")
    print(f"  the run recorded its events in {run_seconds:.2f} s (started {first_event - released:.2f} s "
          f"after the blockers were cancelled)")
    print(f"  delivery: {len(events):,} frames to {clients} clients in {delivery:.2f} s from the started event "
          f"to the last receipt: {len(events) / delivery:,.0f} frames/s aggregate")
    print(f"  delay, frame timestamp -> receipt: {describe_ms(delays)}")
    print(f"  full gapless sequence and close 1000: OK {len(ok)}, FAIL {clients - len(ok)}")
    for client in followers:
        if client not in ok:
            print(f"    FAIL: close {client.close_code}, {len(client.frames)} frames, "
                  f"seqs {[f.get('seq') for f in client.frames][:5]}...")


if __name__ == "__main__":
    main()
