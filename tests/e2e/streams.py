"""A small client of the live stack: HTTP with a token, WebSockets with ``websockets``.

Everything waits on a condition with a deadline (a frame, a status), never on
a fixed sleep.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.frames import TERMINAL_TYPES, assert_frame_shape

API = "/api/v1"
#: Deadline for anything that should take well under a second on a healthy stack.
TIMEOUT = 10.0


def worker_concurrency(worker_log: str) -> int:
    """How many executions the worker runs at once (from its start-up banner)."""
    match = re.search(r"concurrency:\s*(\d+)", worker_log)
    return int(match.group(1)) if match else 2


class Api:
    """``requests`` against the live daphne, authenticated with a DRF token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def submit(self, target_id: str = "demo_steps", *, type: str = "pipeline", **body: Any) -> dict[str, Any]:  # noqa: A002 - the API's name
        response = self.session.post(
            f"{self.base_url}{API}/executions", json={"type": type, "target_id": target_id, **body}, timeout=TIMEOUT
        )
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, execution_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base_url}{API}/executions/{execution_id}", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, execution_id: str, after_seq: int | None = None) -> list[dict[str, Any]]:
        params = {} if after_seq is None else {"after_seq": after_seq}
        response = self.session.get(
            f"{self.base_url}{API}/executions/{execution_id}/events", params=params, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        return response.json()["events"]

    def cancel(self, execution_id: str) -> requests.Response:
        return self.session.post(f"{self.base_url}{API}/executions/{execution_id}/cancel", timeout=TIMEOUT)

    def wait_for(
        self, execution_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll the execution until ``predicate`` holds for it."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.get(execution_id)
            if predicate(execution):
                return execution
            assert time.monotonic() < deadline, f"condition not reached within {timeout}s: {execution}"
            time.sleep(0.05)

    def wait_until_ended(self, execution_id: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(execution_id, lambda e: e["status"] in TERMINAL_TYPES, timeout)


@contextmanager
def all_workers_busy(api: Api, worker_log: str, spare: int = 0) -> Iterator[list[str]]:
    """Keep all worker processes but ``spare`` busy (long executions) until the block ends.

    Lets a test open a socket while its execution is certainly still pending,
    or prove that a process was given back. The blockers are cancelled on exit.
    """
    blockers = [
        api.submit("demo_steps", inputs={"steps": 1, "step_seconds": 60})["execution_id"]
        for _ in range(worker_concurrency(worker_log) - spare)
    ]
    try:
        for blocker in blockers:
            api.wait_for(blocker, lambda e: e["status"] != "pending")
        yield blockers
    finally:
        for blocker in blockers:
            api.cancel(blocker)
        for blocker in blockers:
            api.wait_until_ended(blocker)


@dataclass
class Stream:
    """What one WebSocket client received: its frames and how the server closed."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    close_code: int | None = None
    #: monotonic arrival time of each frame
    arrived: list[float] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames]


def ws_url(base_ws_url: str, execution_id: str, query: str = "") -> str:
    url = f"{base_ws_url}{API}/executions/{execution_id}/progress/ws"
    return f"{url}?{query}" if query else url


def open_ws(
    base_ws_url: str,
    execution_id: str,
    token: str | None = None,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    sock: socket.socket | None = None,
    **kwargs: Any,
) -> ClientConnection:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Token {token}"
    return connect(
        ws_url(base_ws_url, execution_id, query),
        additional_headers=all_headers,
        open_timeout=TIMEOUT,
        sock=sock,
        **kwargs,
    )


def read_frame(ws: ClientConnection, stream: Stream, timeout: float = TIMEOUT) -> dict[str, Any] | None:
    """Receive one frame into ``stream``; None once the server has closed."""
    try:
        text = ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        stream.close_code = exc.rcvd.code if exc.rcvd is not None else None
        return None
    assert isinstance(text, str), "the server sends text frames only"
    frame = json.loads(text)
    assert_frame_shape(frame)
    stream.frames.append(frame)
    stream.texts.append(text)
    stream.arrived.append(time.monotonic())
    return frame


def read_until(
    ws: ClientConnection, stream: Stream, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Read frames until one satisfies ``predicate``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            frame = read_frame(ws, stream, timeout=max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            raise AssertionError(f"no expected frame within {timeout}s; got {stream.frames}") from None
        assert frame is not None, f"closed ({stream.close_code}) before the expected frame; got {stream.types}"
        if predicate(frame):
            return frame


def in_step(k: int) -> Callable[[dict[str, Any]], bool]:
    """A frame (``status`` included) showing that step ``k`` (1-based) or a later one is running."""

    def predicate(frame: dict[str, Any]) -> bool:
        progress = frame.get("progress")
        return bool(progress) and progress["current_step_name"] is not None and progress["current_step"] >= k - 1

    return predicate


def read_to_close(
    ws: ClientConnection, stream: Stream | None = None, timeout: float = TIMEOUT, delay: float = 0.0
) -> Stream:
    """Read every frame until the server closes (``delay``: a slow reader's pause per frame)."""
    stream = stream or Stream()
    while read_frame(ws, stream, timeout=timeout) is not None:
        if delay:
            time.sleep(delay)
    return stream


def assert_consecutive(frames: list[dict[str, Any]], first_seq: int) -> None:
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(first_seq, first_seq + len(frames))), seqs
