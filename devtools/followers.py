"""Clients that follow one execution through a deploy, and record what they saw.

A WebSocket follower and an event-stream follower resume after the last
``seq`` they received, as ``progress_client`` and the pages do (a random
moment within ``jitter`` seconds after a stream stops); a REST poller counts
what every request got. :func:`through_a_reload` runs them all around a
SIGHUP to ``manage.py serve``. Used by tests/e2e/test_deploy.py and ``python
-m bench.deploy``; they know the service by its URLs only.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

API = "/api/v1"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: Anything that should take well under this on a healthy stack.
TIMEOUT = 60.0


@dataclass
class Followed:
    """What one follower received, across all its connections."""

    #: Every frame of the stream, in arrival order (a resume's ``status`` repeating the
    #: last seq is not an event, and left out).
    frames: list[dict[str, Any]] = field(default_factory=list)
    #: How each connection ended: its close code (WebSocket), or ``ended``/``broken``/``204`` (SSE).
    endings: list[Any] = field(default_factory=list)
    #: Seconds from a stream stopping to the first frame of the next connection.
    reconnects: list[float] = field(default_factory=list)
    #: Connections that could not be opened (repr of the error, or the refusal's status).
    failures: list[str] = field(default_factory=list)
    #: The ``retry:`` field of each event stream response.
    retry_fields: list[str] = field(default_factory=list)

    @property
    def seqs(self) -> list[int]:
        return [frame["seq"] for frame in self.frames]

    @property
    def done(self) -> bool:
        return bool(self.frames) and self.frames[-1]["type"] in TERMINAL

    def problems(self) -> list[str]:
        """Why the stream is not whole (empty when it is): ``status`` first, then every later
        seq once in order, exactly one terminal frame, last."""
        found = []
        if not self.frames or self.frames[0]["type"] != "status":
            return ["no status frame first"]
        status, events = self.frames[0], self.frames[1:]
        expected = list(range(status["seq"] + 1, status["seq"] + 1 + len(events)))
        if status["status"] in TERMINAL:
            expected = [status["seq"]]
        if [frame["seq"] for frame in events] != expected:
            found.append(f"seqs not contiguous: {self.seqs}")
        terminals = [frame for frame in events if frame["type"] in TERMINAL]
        if len(terminals) != 1 or terminals[0] is not self.frames[-1]:
            found.append(f"{len(terminals)} terminal frames")
        return found

    def take(self, frame: dict[str, Any], resumed_after: int | None, stopped_at: float | None) -> None:
        """A frame received; ``stopped_at``: when the previous connection stopped, for the first
        frame of a new one."""
        if stopped_at is not None:
            self.reconnects.append(time.monotonic() - stopped_at)
        if resumed_after is not None and frame["type"] == "status" and frame["seq"] == resumed_after:
            return  # nothing stored after the resume point yet: the state, not an event
        self.frames.append(frame)


def last_seq(followed: Followed) -> int | None:
    return followed.frames[-1]["seq"] if followed.frames else None


async def follow_socket(ws_base: str, execution_id: str, token: str, followed: Followed, jitter: float = 1.0) -> None:
    """The execution's WebSocket, resumed with ``?after_seq=`` after every stop, until its terminal frame."""
    headers = {"Authorization": f"Token {token}"}
    stopped_at: float | None = None
    while not followed.done:
        after = last_seq(followed)
        url = f"{ws_base}{API}/executions/{execution_id}/progress/ws"
        if after is not None:
            url += f"?after_seq={after}"
        code: int | None = None
        try:
            async with connect(url, additional_headers=headers, open_timeout=TIMEOUT, ping_interval=None,
                               max_queue=None) as ws:
                try:
                    async for message in ws:
                        followed.take(json.loads(message), after, stopped_at)
                        stopped_at = None
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else None
                else:
                    code = ws.close_code
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            followed.failures.append(repr(exc))
            await asyncio.sleep(0.5)
            continue
        followed.endings.append(code)
        if stopped_at is None:
            stopped_at = time.monotonic()
        if not followed.done:
            await asyncio.sleep(random.uniform(0.0, jitter))


async def follow_events(
    http: httpx.AsyncClient, execution_id: str, token: str, followed: Followed, jitter: float = 1.0
) -> None:
    """The execution's event stream, resumed with ``Last-Event-ID`` whenever a response ends, until
    the terminal event (then one more resume, answered 204, as a browser's EventSource makes)."""
    path = f"{API}/executions/{execution_id}/progress/stream"
    stopped_at: float | None = None
    while True:
        after = last_seq(followed)
        headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        try:
            async with http.stream("GET", path, headers=headers, timeout=TIMEOUT) as response:
                if response.status_code == 204:
                    followed.endings.append("204")
                    return
                if response.status_code != 200:
                    followed.failures.append(f"HTTP {response.status_code}")
                    await asyncio.sleep(0.5)
                    continue
                data = ""
                async for line in response.aiter_lines():
                    name, _, value = line.partition(": ")
                    if name == "retry":
                        followed.retry_fields.append(value)
                    elif name == "data":
                        data = value
                    elif line == "" and data:
                        followed.take(json.loads(data), after, stopped_at)
                        data, stopped_at = "", None
            followed.endings.append("ended")
        except httpx.HTTPError as exc:
            followed.endings.append("broken")
            followed.failures.append(repr(exc))
        if stopped_at is None:
            stopped_at = time.monotonic()
        await asyncio.sleep(random.uniform(0.0, jitter))


@dataclass
class Polled:
    """What a REST poller got: each answer's status, and each request that failed outright."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


async def poll(http: httpx.AsyncClient, path: str, token: str, polled: Polled, stop: asyncio.Event,
               interval: float = 0.05) -> None:
    """GET ``path`` on a kept-alive connection every ``interval`` until ``stop``; no retries."""
    while not stop.is_set():
        try:
            response = await http.get(path, headers={"Authorization": f"Token {token}"}, timeout=TIMEOUT)
            polled.statuses[response.status_code] += 1
        except httpx.HTTPError as exc:
            polled.failures.append(repr(exc))
        await asyncio.sleep(interval)


@dataclass
class DeployRun:
    """Everything the clients saw through one reload."""

    sockets: list[Followed]
    streams: list[Followed]
    polled: Polled
    #: Seconds from the start to the SIGHUP, and to the end of the run.
    reloaded_at: float = 0.0
    took: float = 0.0


async def through_a_reload(
    *,
    http_url: str,
    ws_url: str,
    token: str,
    execution_id: str,
    sockets: int,
    streams: int,
    pollers: int,
    reload: Callable[[], None],
    reload_after_seq: int,
    poll_seconds: float = 0.05,
) -> DeployRun:
    """Follow a running execution with ``sockets`` WebSockets, ``streams`` event streams and
    ``pollers`` REST pollers (a GET every ``poll_seconds`` each); call ``reload`` once every
    follower has frames and one has seen ``reload_after_seq``; return once every follower
    has the terminal frame."""
    run = DeployRun([Followed() for _ in range(sockets)], [Followed() for _ in range(streams)], Polled())
    started = time.monotonic()
    limits = httpx.Limits(max_connections=streams + pollers + 10, max_keepalive_connections=streams + pollers + 10)
    async with httpx.AsyncClient(base_url=http_url, limits=limits) as http:
        stop_polling = asyncio.Event()
        followers = [
            *(asyncio.create_task(follow_socket(ws_url, execution_id, token, f)) for f in run.sockets),
            *(asyncio.create_task(follow_events(http, execution_id, token, f)) for f in run.streams),
        ]
        path = f"{API}/executions/{execution_id}"
        pollers_running = [
            asyncio.create_task(poll(http, path, token, run.polled, stop_polling, poll_seconds)) for _ in range(pollers)
        ]
        everyone = [*run.sockets, *run.streams]
        async with asyncio.timeout(TIMEOUT):
            while not (all(f.frames for f in everyone) and max(last_seq(f) or 0 for f in everyone) >= reload_after_seq):
                if all(f.done for f in everyone):
                    raise AssertionError(f"the run ended before the reload (reload_after_seq {reload_after_seq})")
                await asyncio.sleep(0.05)
        run.reloaded_at = time.monotonic() - started
        reload()
        try:
            async with asyncio.timeout(TIMEOUT * 2):
                await asyncio.gather(*followers)
        finally:
            stop_polling.set()
            await asyncio.gather(*pollers_running)
            for task in followers:
                task.cancel()
    run.took = time.monotonic() - started
    return run
