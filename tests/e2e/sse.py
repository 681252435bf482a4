"""A small Server-Sent Events reader over ``requests``, for the live-server tests.

Deliberately independent of ``progress_client`` (which has its own parser):
the server's format is checked by a second reading of the spec. Lines end at
``\\n`` only (what the server writes); ``str.splitlines`` would also split at
U+2028, which a frame's JSON may hold raw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.frames import assert_frame_shape

from .streams import API, TIMEOUT


@dataclass
class Event:
    id: str | None
    event: str
    data: str
    arrived: float

    @property
    def frame(self) -> dict[str, Any]:
        return json.loads(self.data)


@dataclass
class SseStream:
    """One streamed response, read event by event."""

    response: requests.Response
    events: list[Event] = field(default_factory=list)
    #: (arrival time, text) of each comment line
    comments: list[tuple[float, str]] = field(default_factory=list)
    #: The response ended normally (the server finished it).
    ended: bool = False
    #: The connection broke before the response ended.
    broken: bool = False
    #: The ``retry:`` field's value, once read (the first block of every stream).
    retry: str | None = None
    buffer: str = ""

    def __post_init__(self) -> None:
        self.chunks: Iterator[bytes] = self.response.iter_content(chunk_size=None)

    @property
    def frames(self) -> list[dict[str, Any]]:
        return [event.frame for event in self.events]

    @property
    def seqs(self) -> list[int]:
        return [frame["seq"] for frame in self.frames]

    def next(self) -> Event | None:
        """The next event; None once the response ended or the connection broke."""
        while True:
            while "\n\n" not in self.buffer:
                try:
                    chunk = next(self.chunks)
                except StopIteration:
                    self.ended = True
                    assert self.buffer == "", f"the response ended inside an event: {self.buffer!r}"
                    return None
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                    self.broken = True
                    return None
                self.buffer += chunk.decode()
            block, self.buffer = self.buffer.split("\n\n", 1)
            now = time.monotonic()
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append((now, line))
                else:
                    name, _, value = line.partition(": ")
                    assert name in ("id", "event", "data", "retry") and name not in fields, block
                    fields[name] = value
            if "retry" in fields:
                assert list(fields) == ["retry"] and not self.events, f"retry opens the stream alone: {block!r}"
                self.retry = fields.pop("retry")
            if fields:
                event = Event(fields.get("id"), fields["event"], fields["data"], now)
                frame = event.frame
                assert_frame_shape(frame)
                assert event.event == frame["type"], block
                assert event.id == (str(frame["seq"]) if "seq" in frame else None), block
                self.events.append(event)
                return event

    def read_until(self, predicate: Any) -> Event:
        while True:
            event = self.next()
            assert event is not None, f"ended before the expected event; got {[e.event for e in self.events]}"
            if predicate(event.frame):
                return event

    def read_to_end(self) -> SseStream:
        while self.next() is not None:
            pass
        return self

    def close(self) -> None:
        self.response.close()


def stream_url(base_url: str, execution_id: str) -> str:
    return f"{base_url}{API}/executions/{execution_id}/progress/stream"


def open_sse(
    base_url: str,
    execution_id: str,
    token: str | None,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    read_timeout: float = TIMEOUT,
) -> requests.Response:
    """The response (not read yet); a refusal's body is there to read whole."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Token {token}"
    return requests.get(
        stream_url(base_url, execution_id),
        params=params,
        headers=all_headers,
        stream=True,
        timeout=(TIMEOUT, read_timeout),
    )


def sse(base_url: str, execution_id: str, token: str, **kwargs: Any) -> SseStream:
    response = open_sse(base_url, execution_id, token, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/event-stream"
    return SseStream(response)
