"""Load generators of the benchmarks: keep-alive HTTP/1.1 GETs and WebSocket watchers.

They run in the benchmark's process, on the same two cores as the server, so
they are written to cost as little as possible per request: the HTTP client is
a bare asyncio stream speaking HTTP/1.1 with ``Content-Length`` bodies (all
this server sends to these requests), the WebSocket client is ``websockets``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

#: Give up on anything that should take well under this.
TIMEOUT = 60.0


def frame_time(frame: dict[str, Any]) -> float:
    """A frame's ``timestamp`` (when its event was recorded) as a Unix time."""
    return datetime.fromisoformat(frame["timestamp"].replace("Z", "+00:00")).timestamp()


@dataclass
class HttpResult:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0


class HttpClient:
    """One kept-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def http_load(
    host: str, port: int, paths: list[str], tokens: list[str], *, duration: float, warmup: float = 1.0
) -> tuple[HttpResult, float]:
    """One client per token, each GETting its path in a loop for ``duration`` s; (result, elapsed).

    Requests answered during the first ``warmup`` seconds are not counted.
    """
    result = HttpResult()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client(path: str, token: str) -> None:
        conn = HttpClient(host, port, {"Authorization": f"Token {token}"})
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    status, _ = await asyncio.wait_for(conn.get(path), TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    result.errors += 1
                    await conn.close()
                    continue
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    result.latencies.append(t1 - t0)
                    result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(client(p, t) for p, t in zip(paths, tokens, strict=True)))
    return result, time.perf_counter() - measure_from


@dataclass
class Watcher:
    """What one WebSocket client received."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    received: list[float] = field(default_factory=list)  # Unix time, comparable to frame timestamps
    connect_started: float = 0.0
    first_frame_after: float | None = None  # seconds from the connect to the first frame
    close_code: int | None = None
    error: str | None = None

    def whole(self) -> bool:
        """status, then every seq once in order, one terminal frame, close 1000."""
        if self.close_code != 1000 or not self.frames or self.frames[0]["type"] != "status":
            return False
        seqs = [f["seq"] for f in self.frames[1:]]
        first = self.frames[0]["seq"] + 1
        terminal = [f for f in self.frames if f["type"] in ("completed", "failed", "cancelled")]
        return seqs == list(range(first, first + len(seqs))) and len(terminal) == 1 and self.frames[-1] is terminal[0]


async def watch(url: str, token: str, watcher: Watcher, connected: asyncio.Event | None = None) -> None:
    """Connect, record every frame with its arrival time, until the server closes."""
    watcher.connect_started = time.perf_counter()
    try:
        async with connect(
            url, additional_headers={"Authorization": f"Token {token}"}, max_queue=None,
            ping_interval=None, open_timeout=TIMEOUT, close_timeout=5,
        ) as ws:
            first = await asyncio.wait_for(ws.recv(), TIMEOUT)
            watcher.first_frame_after = time.perf_counter() - watcher.connect_started
            watcher.received.append(time.time())
            watcher.frames.append(json.loads(first))
            if connected is not None:
                connected.set()
            try:
                while True:
                    text = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    watcher.received.append(time.time())
                    watcher.frames.append(json.loads(text))
            except ConnectionClosed as closed:
                watcher.close_code = closed.rcvd.code if closed.rcvd is not None else None
    except Exception as exc:  # noqa: BLE001 - counted as a broken stream, reported
        watcher.error = repr(exc)
    finally:
        if connected is not None:
            connected.set()


def event_delays(watchers: list[Watcher]) -> list[float]:
    """Seconds from each event frame's timestamp to its arrival, over every watcher."""
    return [
        received - frame_time(frame)
        for w in watchers
        for frame, received in zip(w.frames[1:], w.received[1:], strict=True)
    ]
