#!/usr/bin/env python3
"""The Progress Query API demo that the guide names (its "Examples" section).

Against the running service (``python3 dev.py run`` prints the URL and a token)::

    .venv/bin/python examples/api_progress_query_demo.py --url http://127.0.0.1:8000 --token <token>

(``PROGRESS_URL`` and ``PROGRESS_TOKEN`` work too; ``--parts basic,stream`` runs some of
the parts). It probes ``GET /health`` first, then shows, each on ``demo_steps`` runs:

1. basic progress querying: ``GET /executions/{id}`` and ``GET .../progress`` (``204``
   while nothing has run yet) until the run ends;
2. WebSocket streaming: every frame of a run as it happens, then the server's close;
3. concurrent monitoring: three runs at once (one of them fails), one socket each;
4. a performance comparison: one run followed side by side by a poller that asks
   ``GET /executions/{id}`` once a second and by the WebSocket: how many of the run's
   events each saw, and how long after an event was recorded each learnt of it.

Exit code 0 when every part ran; 3 when the service cannot be reached or refuses the
token. Needs httpx and websockets (both in the project's requirements).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import websockets

TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: How often the poller of part 4 asks, as the guide recommends (1-2 s).
POLL_SECONDS = 1.0
PARTS = ("basic", "stream", "concurrent", "compare")


class ServiceUnavailableError(Exception):
    """The service did not answer, or refused the token: nothing to demonstrate."""


@dataclass
class Api:
    """The few calls the demo makes, on one HTTP connection pool."""

    base_url: str
    token: str
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers={"Authorization": f"Token {self.token}"}, timeout=10
        )

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def ws_url(self, execution_id: str, after_seq: int | None = None) -> str:
        url = self.base_url.replace("http", "ws", 1) + f"/api/v1/executions/{execution_id}/progress/ws"
        return url if after_seq is None else f"{url}?after_seq={after_seq}"

    async def probe(self) -> None:
        try:
            health = await self.http.get("/health")
            targets = await self.http.get("/api/v1/targets")
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(
                f"no answer from {self.base_url} ({exc}); start it with: python3 dev.py run"
            ) from exc
        if health.status_code != 200:
            raise ServiceUnavailableError(f"GET /health answered {health.status_code}")
        if targets.status_code == 401:
            raise ServiceUnavailableError("the token was refused (401): use the token `python3 dev.py run` printed")
        print(f"GET /health -> {health.status_code} {health.json()}; the token is accepted")

    async def submit(self, target_id: str = "demo_steps", **inputs: Any) -> str:
        response = await self.http.post(
            "/api/v1/executions", json={"type": "pipeline", "target_id": target_id, "inputs": inputs}
        )
        response.raise_for_status()
        return str(response.json()["execution_id"])

    async def execution(self, execution_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/v1/executions/{execution_id}")
        response.raise_for_status()
        return dict(response.json())

    async def progress(self, execution_id: str) -> dict[str, Any] | None:
        """The progress object, or None for ``204`` (pending: nothing has run yet)."""
        response = await self.http.get(f"/api/v1/executions/{execution_id}/progress")
        response.raise_for_status()
        return None if response.status_code == 204 else dict(response.json())


def progress_text(progress: dict[str, Any] | None) -> str:
    """``40.0% step_3 (2/5) eta 1.2 s`` from a progress object."""
    if not progress:
        return "no progress yet"
    text = f"{progress['percentage']:5.1f}%"
    if progress.get("current_step_name"):
        text += f" {progress['current_step_name']}"
    text += f" ({progress['current_step']}/{progress['total_steps']})"
    if progress.get("eta_seconds") is not None:
        text += f" eta {progress['eta_seconds']:g} s"
    return text


def frame_text(frame: dict[str, Any]) -> str:
    kind = frame.get("type", "?")
    if kind == "error":
        return f"error: {frame.get('message')}"
    line = f"#{frame.get('seq', '-'):<3} {kind:<9} {frame.get('status', ''):<9}"
    if frame.get("progress") is not None:
        line += " " + progress_text(frame["progress"])
    if frame.get("error"):
        line += f"  {frame['error']['type']}: {frame['error']['message']}"
    return line


def recorded_at(frame: dict[str, Any]) -> float:
    """When the server recorded the event (its timestamp), in epoch seconds."""
    return datetime.fromisoformat(frame["timestamp"]).timestamp()


# --- 1. basic progress querying ------------------------------------------------------------


async def basic(api: Api, step_seconds: float) -> None:
    execution_id = await api.submit(steps=3, step_seconds=step_seconds)
    print(f"POST /api/v1/executions -> {execution_id}")
    print(f"GET .../progress right away -> {progress_text(await api.progress(execution_id))}")
    last = None
    while True:
        execution = await api.execution(execution_id)
        shown = (execution["status"], execution["seq"])
        if shown != last:
            print(f"GET .../{execution_id} -> {execution['status']:<9} {progress_text(execution['progress'])}")
            last = shown
        if execution["status"] in TERMINAL:
            print(f"outputs: {json.dumps(execution['outputs'])}")
            return
        await asyncio.sleep(0.5)


# --- 2. WebSocket streaming ----------------------------------------------------------------


async def stream(api: Api, execution_id: str, prefix: str = "") -> dict[str, Any]:
    """Print every frame of one execution until the server closes; returns the last frame."""
    last: dict[str, Any] = {}
    async with websockets.connect(api.ws_url(execution_id), additional_headers=api.auth_header) as socket:
        async for message in socket:
            last = json.loads(message)
            print(prefix + frame_text(last))
    print(f"{prefix}closed by the server: {socket.close_code}")
    return last


async def streaming(api: Api, step_seconds: float) -> None:
    execution_id = await api.submit(steps=4, step_seconds=step_seconds)
    print(f"WS {api.ws_url(execution_id)}")
    await stream(api, execution_id)


# --- 3. concurrent monitoring ----------------------------------------------------------------


async def concurrent(api: Api, step_seconds: float) -> None:
    runs = {
        "4 steps": await api.submit(steps=4, step_seconds=step_seconds),
        "customer_service_flow": await api.submit("customer_service_flow", customer_query="Where is my package?"),
        "fails at step 2": await api.submit(steps=3, step_seconds=step_seconds, fail_at_step=2),
    }
    ends = await asyncio.gather(*(stream(api, execution_id, f"[{execution_id}] ") for execution_id in runs.values()))
    print("summary:")
    for (name, execution_id), end in zip(runs.items(), ends, strict=True):
        print(f"  {execution_id}  {name:<22} {end.get('status')}")


# --- 4. polling against push -----------------------------------------------------------------


@dataclass
class Watcher:
    """What one way of following a run learnt, and when (epoch seconds)."""

    name: str
    requests: int = 0
    #: seq -> when this watcher first knew of that event (or of a later one).
    known_at: dict[int, float] = field(default_factory=dict)
    #: the events whose own state this watcher saw (a poll sees only the latest state).
    seen: set[int] = field(default_factory=set)


def latency_report(watcher: Watcher, events: dict[int, float], since: float) -> str:
    """How many events the watcher saw, and how late it knew of them (events recorded after ``since``)."""
    delays = sorted(watcher.known_at[seq] - at for seq, at in events.items() if at >= since and seq in watcher.known_at)
    if not delays:
        return f"{watcher.name}: no event to measure"
    return (
        f"{watcher.name:<22} {watcher.requests:>3} request(s)  saw {len(watcher.seen & set(events)):>3} of "
        f"{len(events)} events  latency p50 {statistics.median(delays) * 1000:7.1f} ms, max {delays[-1] * 1000:7.1f} ms"
    )


async def compare(api: Api, steps: int, step_seconds: float) -> None:
    execution_id = await api.submit(steps=steps, step_seconds=step_seconds)
    print(f"{execution_id}: {steps} steps of {step_seconds:g} s, followed both ways at once")
    push, poll = Watcher("WebSocket push"), Watcher(f"REST poll every {POLL_SECONDS:g} s")
    events: dict[int, float] = {}  # seq -> recorded at, from the pushed frames
    started = time.time()

    async def pushed() -> None:
        push.requests = 1
        url = api.ws_url(execution_id, after_seq=0)  # every stored event, then live ones
        async with websockets.connect(url, additional_headers=api.auth_header) as socket:
            async for message in socket:
                frame, now = json.loads(message), time.time()
                if frame.get("type") in ("status", "error"):
                    continue
                events[frame["seq"]] = recorded_at(frame)
                push.known_at.setdefault(frame["seq"], now)
                push.seen.add(frame["seq"])

    async def polled() -> None:
        while True:
            execution = await api.execution(execution_id)
            now = time.time()
            poll.requests += 1
            poll.seen.add(execution["seq"])
            for seq in range(1, execution["seq"] + 1):
                poll.known_at.setdefault(seq, now)
            if execution["status"] in TERMINAL:
                return
            await asyncio.sleep(POLL_SECONDS)

    await asyncio.gather(pushed(), polled())
    missed = len(set(events) - poll.seen)
    print(latency_report(push, events, started))
    print(latency_report(poll, events, started))
    print(
        f"1 s polling never saw {missed} of the {len(events)} events (each answer shows only the latest "
        "state: the steps in between are gone); the socket delivered every one as it was recorded."
    )


# --- main --------------------------------------------------------------------------------------


async def demo(args: argparse.Namespace) -> int:
    api = Api(args.url, args.token)
    try:
        await api.probe()
        parts = args.parts.split(",")
        if "basic" in parts:
            print("\n== 1. Basic progress querying (REST) ==")
            await basic(api, args.step_seconds)
        if "stream" in parts:
            print("\n== 2. WebSocket streaming ==")
            await streaming(api, args.step_seconds)
        if "concurrent" in parts:
            print("\n== 3. Concurrent monitoring of three executions ==")
            await concurrent(api, args.step_seconds)
        if "compare" in parts:
            print("\n== 4. Performance: 1 s polling against push ==")
            await compare(api, args.steps, args.step_seconds)
    except ServiceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        await api.http.aclose()
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default=os.environ.get("PROGRESS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PROGRESS_TOKEN", ""))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--steps", type=int, default=20, help="steps of the run of part 4 (default 20)")
    parser.add_argument("--step-seconds", type=float, default=0.25, help="seconds per step (default 0.25)")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(demo(parse_args())))
