#!/usr/bin/env python3
"""A WebSocket watcher that resumes after any disconnect without losing or repeating a frame.

::

    .venv/bin/python examples/ws_watch.py --url http://127.0.0.1:8000 --token <token> --input steps=8
    .venv/bin/python examples/ws_watch.py exec_1a2b3c4d5e6f                # follow one already started
    .venv/bin/python examples/ws_watch.py --input steps=8 --drop-after 3   # cut its own socket once, to see a resume

(``PROGRESS_URL`` and ``PROGRESS_TOKEN`` work too.) The protocol
(docs/protocol/websocket.md) numbers every event with ``seq``; the watcher remembers
the last one it printed and, when the connection goes (a restart, a proxy's idle
timeout, a network change), reconnects with ``?after_seq=<that seq>``: the server sends the stored events
after it, then live ones. Reconnections back off (0.25 s doubling to 5 s, with jitter).
A refusal (close 4401, 4404, 4400) is final. The server closes with 1000 after the
terminal frame.

Exits 0 when the run completed, 1 failed, 2 cancelled, 3 on a refusal or when the
server stayed away (the CLI's codes). Needs httpx and websockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from collections.abc import Sequence
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

TERMINAL = {"completed": 0, "failed": 1, "cancelled": 2}
REFUSALS = {4400: "invalid request", 4401: "authentication required", 4404: "execution not found"}
MAX_ATTEMPTS_WITHOUT_A_FRAME = 8


def line(frame: dict[str, Any]) -> str:
    """``#4   progress   60.0%  step_3 (2/5)  eta 1.4 s``."""
    text = f"#{frame['seq']:<4} {frame['type']:<10}"
    progress = frame.get("progress")
    if progress:
        text += f" {progress['percentage']:5.1f}%"
        if progress.get("current_step_name"):
            text += f"  {progress['current_step_name']} ({progress['current_step']}/{progress['total_steps']})"
        if progress.get("eta_seconds") is not None and frame["status"] == "running":
            text += f"  eta {progress['eta_seconds']:g} s"
    if frame.get("error"):
        text += f"  {frame['error']['type']}: {frame['error']['message']}"
    return text


class Watcher:
    """Follows one execution; ``last_seq`` is the last event printed (None before the first frame)."""

    def __init__(self, base_url: str, token: str, execution_id: str, drop_after: int | None = None) -> None:
        self.ws_base = base_url.rstrip("/").replace("http", "ws", 1)
        self.headers = {"Authorization": f"Token {token}"}
        self.execution_id = execution_id
        self.last_seq: int | None = None
        self.drop_after = drop_after  # frames after which to cut the first connection (a demonstration)
        self.frames = 0

    def url(self) -> str:
        url = f"{self.ws_base}/api/v1/executions/{self.execution_id}/progress/ws"
        return url if self.last_seq is None else f"{url}?after_seq={self.last_seq}"

    def handle(self, frame: dict[str, Any]) -> str | None:
        """Print the frame if it is new; the final status once the run has ended."""
        if frame["type"] == "error":
            print(f"server: {frame['message']}")
            return None
        if frame["type"] == "status":
            # The starting state (no after_seq); an ended run's terminal frame follows it.
            percentage = f", {frame['progress']['percentage']:.1f}%" if frame["progress"] else ""
            print(f"now: {frame['status']}{percentage}")
            if self.last_seq is None:
                self.last_seq = frame["seq"] - 1 if frame["status"] in TERMINAL else frame["seq"]
            return None
        if self.last_seq is not None and frame["seq"] <= self.last_seq:
            return None  # never printed twice
        self.last_seq = frame["seq"]
        print(line(frame))
        return frame["status"] if frame["type"] in TERMINAL else None

    async def run(self) -> int:
        attempts = 0
        while True:
            try:
                async with websockets.connect(self.url(), additional_headers=self.headers) as socket:
                    async for message in socket:
                        attempts = 0
                        ended = self.handle(json.loads(message))
                        if ended:
                            return TERMINAL[ended]
                        self.frames += 1
                        if self.drop_after is not None and self.frames == self.drop_after:
                            self.drop_after = None
                            print(f"(cutting the connection after seq {self.last_seq}, as asked)")
                            break
                code = socket.close_code
            except (OSError, InvalidStatus, ConnectionClosed) as exc:
                code = None
                print(f"connection lost ({exc.__class__.__name__})")
            if code in REFUSALS:
                print(f"refused: {REFUSALS[code]} ({code})", file=sys.stderr)
                return 3
            attempts += 1
            if attempts > MAX_ATTEMPTS_WITHOUT_A_FRAME:
                print("the server stayed away; giving up", file=sys.stderr)
                return 3
            delay = min(5.0, 0.25 * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
            print(f"reconnecting in {delay:.2f} s, resuming after seq {self.last_seq}")
            await asyncio.sleep(delay)


def start(base_url: str, token: str, target: str, inputs: dict[str, Any]) -> str:
    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=10) as client:
        types = [t["type"] for t in client.get("/api/v1/targets").raise_for_status().json()["targets"]
                 if t["target_id"] == target]
        if not types:
            raise SystemExit(f"error: no target {target!r}")
        body = {"type": types[0], "target_id": target, "inputs": inputs}
        return str(client.post("/api/v1/executions", json=body).raise_for_status().json()["execution_id"])


def parse_input(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Watch one execution over the WebSocket, resuming after disconnects.")
    parser.add_argument("execution", nargs="?", help="an execution id (default: start one)")
    parser.add_argument("--url", default=os.environ.get("PROGRESS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PROGRESS_TOKEN", ""))
    parser.add_argument("--target", default="demo_steps")
    parser.add_argument("--input", type=parse_input, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--after-seq", type=int, help="start after this seq (a resume from a saved position)")
    parser.add_argument("--drop-after", type=int, help="cut the connection once after this many frames")
    args = parser.parse_args(argv)
    try:
        execution_id = args.execution or start(args.url, args.token, args.target, dict(args.input))
    except httpx.HTTPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(f"watching {execution_id}")
    watcher = Watcher(args.url, args.token, execution_id, drop_after=args.drop_after)
    watcher.last_seq = args.after_seq
    return asyncio.run(watcher.run())


if __name__ == "__main__":
    sys.exit(main())
