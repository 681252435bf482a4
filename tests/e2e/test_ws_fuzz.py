"""Fuzzing the WebSocket endpoint of the real daphne while a client streams.

An *observer* follows a running execution from its ``status`` frame to close
``1000`` while, at the same time, *attackers* (the observer's own user and two
others) send what a client should not: binary, empty, fragmented and invalid
UTF-8 messages, a few hundred generated JSON documents and JSON garbage, ping
floods, messages over ``WEBSOCKET_MAX_MESSAGE_BYTES``, malformed frames (written
byte by byte on a raw socket), half-open connections, connect/disconnect churn,
bad query strings, paths, ``Origin`` and ``Authorization`` headers. Afterwards
the observer must have the whole stream with no gap, a new client must stream
a new execution, daphne must still run and its log must hold no traceback, and
no consumer may have stayed in its execution's channel-layer group.

What the server answers (measured here, asserted below):

* a message it can read (text, binary, empty, fragmented, up to the limit):
  one ``{"type": "error", "message": "Unsupported message", "code": null}`` frame each, and
  the stream goes on (contract guarantee 7);
* a message over the limit, as one frame or as fragments adding up to more:
  close ``1009`` (message too big) as soon as its size is known; the rest is
  discarded unread;
* invalid UTF-8 in a text message: close ``1007``; a malformed frame (unmasked,
  reserved opcode or RSV bits, control frame over 125 bytes or fragmented,
  continuation out of place, a 64-bit length with the top bit set): ``1002``;
  a malformed *close* frame (code 999 or 1005, 1-byte payload, invalid UTF-8
  reason): the TCP connection is dropped without a close frame;
* credentials, ``after_seq`` and the execution are checked in that order, each
  failure an error frame then ``4401`` / ``4400`` / ``4404``; someone else's
  execution gets the answer of a missing one (handshake headers, frame keys,
  message, close code; only the id in the message differs);
* before the handshake: a foreign or malformed ``Origin`` and a path that no
  route serves (``a%2Fb`` decodes to one segment too many) get HTTP 403;
  autobahn answers 400 to an ``Origin`` it cannot parse, a raw non-ASCII
  request line or too many headers, and closes without an answer a request
  head of about 64 KB.

The JSON corpus comes from a seeded generator rather than Hypothesis: the
messages are sent concurrently over shared live sockets, where shrinking has
nothing to work with, and a fixed seed keeps every run sending the same bytes.
The churn loops until the observed run has ended, so its number of rounds
depends on timing; everything else sent is fixed by the seed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import string
import struct
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.frames import TERMINAL_TYPES, assert_frame_shape
from tests.helpers import make_user, user_token

from .streams import API, Api, assert_consecutive, ws_url

SEED = 20261126
OBSERVED_STEPS = 40
OBSERVED_STEP_SECONDS = 0.15
#: Deadline for one frame (or one answer) that should take milliseconds.
FRAME_TIMEOUT = 10.0
#: The whole barrage, observer included.
BARRAGE_TIMEOUT = 45.0
UNSUPPORTED = {"type": "error", "message": "Unsupported message", "code": None}
MAX_BYTES: int = settings.WEBSOCKET_MAX_MESSAGE_BYTES


# --- clients ------------------------------------------------------------------------------------------


@dataclass
class Watch:
    """One ``websockets`` client: the stream frames, the error frames and how it closed."""

    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    close_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any] | None:
        """The next frame (recorded), or None once the server has closed."""
        try:
            async with asyncio.timeout(timeout):
                text = await self.ws.recv()
        except ConnectionClosed as exc:
            self.closed = True
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
            self.close_reason = exc.rcvd.reason if exc.rcvd is not None else None
            self.ended.set()
            return None
        assert isinstance(text, str), "the server sends text frames only"
        frame = json.loads(text)
        assert_frame_shape(frame)
        if frame["type"] == "error":
            self.errors.append(frame)
        else:
            self.frames.append(frame)
            self.texts.append(text)
            if frame["type"] in TERMINAL_TYPES or (frame["type"] == "status" and frame["status"] in TERMINAL_TYPES):
                self.ended.set()
        return frame

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = FRAME_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; frames {self.frames} errors {len(self.errors)}")
            frame = await self.next(timeout=left)
            assert frame is not None or predicate(), (
                f"closed ({self.close_code} {self.close_reason!r}) before {what}; "
                f"got {[f['type'] for f in self.frames]} and {len(self.errors)} errors"
            )

    async def until_errors(self, count: int) -> None:
        await self.until(lambda: len(self.errors) >= count, f"{count} error frames")

    async def to_close(self, timeout: float = FRAME_TIMEOUT) -> None:
        while await self.next(timeout=timeout) is not None:
            pass


async def open_watch(
    base_ws_url: str, execution_id: str, token: str | None, *, query: str = "", headers: dict[str, str] | None = None
) -> Watch:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Token {token}"
    ws = await connect(
        ws_url(base_ws_url, execution_id, query),
        additional_headers=all_headers,
        open_timeout=FRAME_TIMEOUT,
        close_timeout=FRAME_TIMEOUT,
        ping_interval=None,
        max_size=None,
        # Unbounded: with websockets' default (16 messages) a client that stops
        # reading a replay also stops reading the socket, and its close() waits
        # close_timeout for a close frame stuck behind the unread ones.
        max_queue=None,
    )
    return Watch(ws)


class RawSocket:
    """A WebSocket client that writes whatever bytes it is told to: requests and frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, rest: bytes) -> None:
        self.reader, self.writer = reader, writer
        self.head = head
        self.buffer = rest

    @property
    def status(self) -> int | None:
        """The HTTP status of the handshake answer; None if the server answered nothing."""
        parts = self.head.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def header_names(self) -> list[bytes]:
        return sorted(line.split(b":", 1)[0].lower() for line in self.head.split(b"\r\n")[1:])

    @classmethod
    async def open(cls, port: int, request: bytes) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = b""
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(FRAME_TIMEOUT):
                while b"\r\n\r\n" not in data:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server hung up on the request
        head, _, rest = data.partition(b"\r\n\r\n")
        return cls(reader, writer, head, rest)

    def send_frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True,
        length: int | None = None,
    ) -> None:
        """One frame; ``length`` claims a payload length other than the real one."""
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        size = len(payload) if length is None else length
        mask_bit = 0x80 if masked else 0
        if size < 126:
            header = bytes([first, mask_bit | size])
        elif size < 1 << 16:
            header = bytes([first, mask_bit | 126]) + struct.pack("!H", size)
        else:
            header = bytes([first, mask_bit | 127]) + struct.pack("!Q", size)
        if masked:
            key = os.urandom(4)
            payload = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
            header += key
        self.writer.write(header + payload)

    async def _fill(self, size: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.buffer) < size:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise EOFError
                self.buffer += chunk

    async def read_frame(self, timeout: float = FRAME_TIMEOUT) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server; EOFError when the TCP stream ends."""
        await self._fill(2, timeout)
        size, start = self.buffer[1] & 0x7F, 2
        if size == 126:
            await self._fill(4, timeout)
            size, start = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif size == 127:
            await self._fill(10, timeout)
            size, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
        await self._fill(start + size, timeout)
        opcode, payload = self.buffer[0] & 0x0F, self.buffer[start:start + size]
        self.buffer = self.buffer[start + size:]
        return opcode, payload

    async def read_to_close(self) -> tuple[list[bytes], int | None, bytes | None, str]:
        """(text payloads, close code, close reason, how it ended): "close", "eof" or "reset"."""
        texts: list[bytes] = []
        try:
            while True:
                opcode, payload = await self.read_frame()
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.send_frame(0x8, payload[:2])  # the close reply
                    return texts, code, payload[2:], "close"
                if opcode == 0x1:
                    texts.append(payload)
        except EOFError:
            return texts, None, None, "eof"
        except ConnectionResetError:
            return texts, None, None, "reset"

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


def handshake(path: bytes, headers: Sequence[bytes] = (), *, terminate: bool = True) -> bytes:
    key = base64.b64encode(os.urandom(16))
    lines = [
        b"GET " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Upgrade: websocket", b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key, b"Sec-WebSocket-Version: 13", *headers,
    ]
    return b"\r\n".join(lines) + (b"\r\n\r\n" if terminate else b"\r\n")


def ws_path(execution_id: str, query: str = "") -> bytes:
    path = f"{API}/executions/{execution_id}/progress/ws"
    return (f"{path}?{query}" if query else path).encode()


def auth_header(token: str) -> bytes:
    return b"Authorization: Token " + token.encode()


# --- what the attackers send ---------------------------------------------------------------------------

PROTOCOL_TYPES = ["subscribe", "unsubscribe", "cancel", "ping", "pong", "status", "progress", "completed",
                  "error", "auth", "resume", "close", "", "Subscribe", "__proto__", "constructor"]
ALPHABETS = [
    string.printable,
    "".join(map(chr, range(0x20))),  # control characters, NUL included
    "éüßøñ¿¡«»\u00a0\u00ad",
    "漢字かなカナ한글",
    "\U0001f600\U0001f4a9\U0001f1fa\U0001f1f8\u200d\u2764\ufe0f",
    "\u202e\u202d\u200b\u200c\u200e\u2066\ufeff\ufffd\ufffe\uffff",
]


class Corpus:
    """Seeded messages: JSON documents of many shapes and JSON garbage, each within MAX_BYTES."""

    def __init__(self, seed: int, execution_ids: list[str]) -> None:
        self.rnd = random.Random(seed)
        self.execution_ids = execution_ids

    def text(self, max_len: int = 40, *, surrogates: bool = False) -> str:
        alphabet = self.rnd.choice(ALPHABETS)
        chars = [self.rnd.choice(alphabet) for _ in range(self.rnd.randint(0, max_len))]
        if surrogates and chars and self.rnd.random() < 0.3:
            chars.insert(self.rnd.randrange(len(chars)), chr(self.rnd.randint(0xD800, 0xDFFF)))
        return "".join(chars)

    def number(self) -> Any:
        return self.rnd.choice([
            0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, self.rnd.randint(-(10**6), 10**6),
            0.5, -0.0, 1e308, -1e-308, 5e-324, self.rnd.random() * 10**self.rnd.randint(-10, 10),
        ])

    def value(self, depth: int = 0, *, surrogates: bool = False) -> Any:
        kinds = ["null", "bool", "number", "string"] + (["list", "dict", "dict"] if depth < 5 else [])
        kind = self.rnd.choice(kinds)
        if kind == "null":
            return None
        if kind == "bool":
            return self.rnd.random() < 0.5
        if kind == "number":
            return self.number()
        if kind == "string":
            return self.text(surrogates=surrogates)
        if kind == "list":
            return [self.value(depth + 1, surrogates=surrogates) for _ in range(self.rnd.randint(0, 5))]
        return {
            self.text(12, surrogates=surrogates): self.value(depth + 1, surrogates=surrogates)
            for _ in range(self.rnd.randint(0, 5))
        }

    def protocol_like(self) -> dict[str, Any]:
        """What a confused or hostile client might believe the protocol to be."""
        message: dict[str, Any] = {"type": self.rnd.choice(PROTOCOL_TYPES)}
        if self.rnd.random() < 0.7:
            message["execution_id"] = self.rnd.choice(
                [*self.execution_ids, "exec_000000000000", "../../admin", "*", "", None, 42]
            )
        if self.rnd.random() < 0.5:
            message["after_seq"] = self.rnd.choice([-1, 0, 1, "1", 10**20, None, 1.5, [], {}])
        if self.rnd.random() < 0.3:
            message["token"] = self.text(40)
        if self.rnd.random() < 0.3:
            message["data"] = self.value(2)
        return message

    def deep(self) -> str:
        depth = self.rnd.randint(100, MAX_BYTES // 2 - 2)
        opener, closer = self.rnd.choice([("[", "]"), ('{"a":', "}")])
        if opener == "[":
            return opener * depth + closer * depth
        depth = min(depth, (MAX_BYTES - 2) // 6)
        return opener * depth + "1" + closer * depth

    def json_message(self) -> str:
        roll = self.rnd.random()
        # Escaped (ensure_ascii), a lone surrogate is valid JSON text ("\ud800") though
        # no valid string; raw, it could not even be encoded as UTF-8.
        ascii_only = self.rnd.random() < 0.5
        if roll < 0.45:
            document: Any = self.protocol_like()
        elif roll < 0.9:
            document = self.value(surrogates=ascii_only)
        else:
            return self.deep()
        return json.dumps(document, ensure_ascii=ascii_only)

    def json_messages(self, count: int) -> list[str]:
        messages: list[str] = []
        while len(messages) < count:
            message = self.json_message()
            if len(message.encode("utf-8")) <= MAX_BYTES:
                messages.append(message)
        return messages

    def binary(self) -> bytes:
        size = self.rnd.choice([0, 1, 2, 3, 125, 126, 127, 65, self.rnd.randint(0, MAX_BYTES), MAX_BYTES])
        return bytes(self.rnd.getrandbits(8) for _ in range(size))

    def split(self, message: str | bytes, parts: int) -> list[Any]:
        cuts = sorted(self.rnd.sample(range(1, len(message)), min(parts - 1, len(message) - 1)))
        bounds = [0, *cuts, len(message)]
        return [message[a:b] for a, b in itertools.pairwise(bounds)]


JSON_GARBAGE = [
    "{", "}", "[", "]", "{}}", "[[]", '{"type":', '{"type": "subscribe"', "'single'", "{'type': 'subscribe'}",
    "NaN", "Infinity", "-Infinity", "undefined", "nul", "tru", "01", "1e", "--1", "0x10", '"\\x00"', '"\\u12"',
    '"unterminated', '{"a":1,}', "[1,2,]", "\ufeff{}", "{}\x00", "\x00", "\u2028", "/* comment */ {}",
    '{"a":1}{"b":2}', "a" * MAX_BYTES, "[" * MAX_BYTES, '{"' + "k" * (MAX_BYTES - 6) + '":1}',
    "é" * (MAX_BYTES // 2), "\U0001f600" * (MAX_BYTES // 4), " \t\r\n", "null", "true", "0", '""',
]
assert all(len(message.encode()) <= MAX_BYTES for message in JSON_GARBAGE)

QUERY_REFUSED = [  # each answered with "Invalid after_seq" and 4400
    "after_seq=-1", "after_seq=abc", "after_seq=99999999999999999999", "after_seq=1&after_seq=2",
    "after_seq=0&after_seq=0", "after_seq=", "after_seq", "after_seq=%ff%00", "after_seq=%", "after_seq=%zz",
    "after_seq=%2B1", "after_seq=+1", "after_seq=1.0", "after_seq=1e3", "after_seq=0x10", "after_seq=%201",
    "after_seq=1%00", "after_seq=%D9%A1%D9%A2", "after_seq=" + "9" * 5000, "x=1&after_seq=-0&y=2",
]
QUERY_ACCEPTED = [  # not a bad after_seq: the stream starts
    "", "foo=bar", "%zz=%ff", "after_seq=0", "after_seq=000", "after_seq=1", "after_seq=999999999999999999",
    "AFTER_SEQ=abc", "after_seq_x=abc", "&&&", "=", "%00",
]
ORIGINS_FORBIDDEN = [  # 403 before the handshake
    "http://evil.example.com", "https://evil.example.com", "null", "http://localhost.evil.example",
    "http://127.0.0.1.evil.example", "http://evil.example@localhost", "http://evil.example:80@127.0.0.1",
    "http://localhost/path", "http://localhost?x=1", "http://localhost#x", "//localhost", "file://",
    "http://l\u043ecalhost", "http://[::1]", "http://localhost.", "http://" + "a" * 4000,
]
ORIGINS_UNPARSABLE = [b"::::", b"\xff\xfe", b"", b"localhost", b"http://localhost:abc", b"http://localhost:99999"]


def bad_authorization_headers(token: str) -> list[bytes]:
    return [
        b"Authorization: garbage", b"Authorization: Token ", b"Authorization: Token", b"Authorization: Token  ",
        b"Authorization: Bearer " + token.encode(), b"Authorization: Basic dXNlcjpwYXNz",
        b"Authorization: Token " + token.encode() + b" extra", b"Authorization: Token " + token.encode() + b"x",
        b"Authorization: Token " + token[:-1].encode(), b"Authorization: Token " + b"k" * 16_000,
        "Authorization: Token ключ-доступа".encode(), b"Authorization: Token \xe9\xff\xfe",
        b"Authorization: Token\t" + token.encode(), b"Authorization: " + token.encode(),
        b"Authorization: Token %s" % token.upper().encode(),
        b"Authorization: Token\x0b" + token.encode(),
    ]


# --- the barrage ----------------------------------------------------------------------------------------


@dataclass
class Barrage:
    port: int
    base_ws_url: str
    observed_id: str
    other_id: str  # bob's running execution
    alice: str
    bob: str
    carol: str  # owns nothing
    corpus: Corpus
    sent: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    observed_over: asyncio.Event = field(default_factory=asyncio.Event)
    #: Open sockets whose streams are checked against the stored history afterwards.
    full_streams: dict[str, list[Watch]] = field(default_factory=dict)
    partial_streams: dict[str, list[Watch]] = field(default_factory=dict)
    limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(12))

    def keep(self, watch: Watch, execution_id: str, *, whole: bool = True) -> None:
        (self.full_streams if whole else self.partial_streams).setdefault(execution_id, []).append(watch)

    # -- messages the server can read: one error frame each, the stream goes on ---------------------

    async def flood(self, category: str, token: str, execution_id: str, batches: list[list[Any]]) -> None:
        async with self.limit:
            watch = await open_watch(self.base_ws_url, execution_id, token)
        await watch.until(lambda: bool(watch.frames), "the status frame")
        expected = 0
        for batch in batches:
            for message in batch:
                await watch.ws.send(message)
            expected += len(batch)
            self.sent[category] += len(batch)
            await watch.until_errors(expected)
        assert watch.errors == [{**UNSUPPORTED, "timestamp": e["timestamp"]} for e in watch.errors]
        assert len(watch.errors) == expected
        await watch.to_close()
        assert len(watch.errors) == expected, f"{category}: an error frame for nothing"
        self.outcomes[f"{category}: one error frame each, then the stream to close {watch.close_code}"] += 1
        self.keep(watch, execution_id)

    async def ping_flood(self, token: str, execution_id: str, pings: int = 300, pongs: int = 50) -> None:
        async with self.limit:
            watch = await open_watch(self.base_ws_url, execution_id, token)
        await watch.until(lambda: bool(watch.frames), "the status frame")
        waiters = [await watch.ws.ping(struct.pack("!I", i) + b"p" * (i % 100)) for i in range(pings)]
        for _ in range(pongs):
            await watch.ws.pong(b"unsolicited")
        reader = asyncio.create_task(watch.until_errors(1))
        await watch.ws.send("after the pings")
        async with asyncio.timeout(FRAME_TIMEOUT):
            await asyncio.gather(*waiters)
            await reader
        self.sent["ping"] += pings
        self.sent["unsolicited pong"] += pongs
        self.sent["text after pings"] += 1
        await watch.to_close()
        assert len(watch.errors) == 1
        self.outcomes[f"ping flood: every ping answered, stream to close {watch.close_code}"] += 1
        self.keep(watch, execution_id)

    # -- messages the server refuses: a close code, the socket ends -----------------------------------

    async def refused_message(
        self, category: str, send: Callable[[Watch], Awaitable[None]], expected_code: int
    ) -> None:
        async with self.limit:
            watch = await open_watch(self.base_ws_url, self.observed_id, self.alice)
        await watch.until(lambda: bool(watch.frames), "the status frame")
        await send(watch)
        self.sent[category] += 1
        await watch.to_close()
        assert watch.close_code == expected_code, (category, watch.close_code, watch.close_reason)
        assert watch.errors == [], category
        self.outcomes[f"{category}: close {watch.close_code}"] += 1
        self.keep(watch, self.observed_id, whole=False)

    async def raw_refused(self, category: str, write: Callable[[RawSocket], None], expected: int | str) -> None:
        """A malformed frame on a raw socket: a close code (or "eof"/"reset": dropped)."""
        async with self.limit:
            raw = await RawSocket.open(self.port, handshake(ws_path(self.observed_id), [auth_header(self.alice)]))
        assert raw.status == 101, raw.head
        opcode, first = await raw.read_frame()
        assert opcode == 0x1 and json.loads(first)["type"] == "status"
        write(raw)
        await raw.writer.drain()
        _, code, reason, how = await raw.read_to_close()
        raw.close()
        self.sent[category] += 1
        outcome = code if how == "close" else how
        if expected == "dropped":
            assert how in ("eof", "reset"), (category, how, code, reason)
            outcome = "dropped"
        assert outcome == expected, (category, how, code, reason)
        self.outcomes[f"{category}: {outcome}"] += 1

    # -- connections that go away without a word ------------------------------------------------------

    async def half_open(self) -> None:
        for _ in range(8):  # handshake, then the TCP connection goes without a close frame
            async with self.limit:
                watch = await open_watch(self.base_ws_url, self.observed_id, self.alice)
            await watch.next()
            watch.ws.transport.abort()
            self.sent["abort after handshake"] += 1
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.close()  # TCP only, nothing sent
            self.sent["tcp connect, nothing sent"] += 1
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(handshake(ws_path(self.observed_id), [auth_header(self.alice)], terminate=False))
            await writer.drain()
            writer.transport.abort()  # half a request head
            self.sent["half a handshake, then reset"] += 1
        for _ in range(5):
            raw = await RawSocket.open(self.port, handshake(ws_path(self.observed_id), [auth_header(self.alice)]))
            raw.send_frame(0x1, b"half a frame", length=100)  # claims 100 bytes, sends 12
            await raw.writer.drain()
            raw.abort()
            self.sent["half a frame, then reset"] += 1
        for _ in range(3):
            raw = await RawSocket.open(self.port, handshake(ws_path(self.observed_id), [auth_header(self.alice)]))
            raw.writer.write_eof()  # the client half-closes; the server may still send
            await raw.read_to_close()
            raw.close()
            self.sent["half-closed by the client"] += 1
        self.outcomes["half-open connections: nothing to assert but the aftermath"] += 1

    async def silent(self) -> None:
        """Never reads: holds its socket through the whole barrage, then closes."""
        raw = await RawSocket.open(self.port, handshake(ws_path(self.observed_id), [auth_header(self.alice)]))
        assert raw.status == 101
        self.sent["silent reader"] += 1
        await self.observed_over.wait()
        raw.close()

    async def churn(self, seed: int) -> None:
        """Connect, read a little, leave (close or reset) -- until the observed run is over."""
        rnd = random.Random(seed)
        rounds = 0
        while not self.observed_over.is_set() or rounds == 0:
            token, execution_id = rnd.choice([(self.alice, self.observed_id), (self.bob, self.other_id)])
            async with self.limit:
                watch = await open_watch(self.base_ws_url, execution_id, token)
            for _ in range(rnd.randint(0, 3)):
                if await watch.next() is None:
                    break
            how = rnd.choice(["close", "close 4000", "reset", "message then close"])
            if how == "reset":
                watch.ws.transport.abort()
            elif how == "close 4000":
                await watch.ws.close(code=4000, reason="churn " * rnd.randint(0, 20))
            elif how == "message then close":
                with contextlib.suppress(ConnectionClosed):  # the run may have just ended: 1000 first
                    await watch.ws.send(json.dumps({"type": "bye", "n": rounds}))
                await watch.ws.close()
            else:
                await watch.ws.close()
            self.sent[f"churn: {how}"] += 1
            rounds += 1

    # -- handshakes: refusals of the contract's table, and before the handshake ------------------------

    async def refusal(self, category: str, path: bytes, headers: list[bytes]) -> tuple[RawSocket, dict[str, Any], int]:
        async with self.limit:
            raw = await RawSocket.open(self.port, handshake(path, headers))
        return await self.read_refusal(raw, category, path, headers)

    async def read_refusal(
        self, raw: RawSocket, category: str, path: bytes, headers: list[bytes]
    ) -> tuple[RawSocket, dict[str, Any], int]:
        assert raw.status == 101, (category, path[:80], headers, raw.head)
        texts, code, _, how = await raw.read_to_close()
        raw.close()
        assert how == "close" and len(texts) == 1, (category, how, texts)
        self.sent[category] += 1
        frame = json.loads(texts[0])
        assert_frame_shape(frame)
        assert frame["type"] == "error"
        assert code is not None and frame["code"] == code, "the error frame names the close code that follows"
        return raw, frame, code

    async def expect_refusal(self, category: str, path: bytes, headers: list[bytes], message: str, code: int) -> None:
        _, frame, got_code = await self.refusal(category, path, headers)
        assert (frame["message"], got_code) == (message, code), (category, path[:120], headers, frame, got_code)
        self.outcomes[f"{category}: error frame, close {code}"] += 1

    async def expect_http(self, category: str, path: bytes, headers: list[bytes], status: int | None) -> None:
        async with self.limit:
            raw = await RawSocket.open(self.port, handshake(path, headers))
        raw.close()
        self.sent[category] += 1
        assert raw.status == status, (category, path[:120], [h[:120] for h in headers], raw.head[:200])
        self.outcomes[f"{category}: HTTP {status or 'nothing, connection closed'}"] += 1

    async def expect_refusal_or_http400(self, category: str, path: bytes, headers: list[bytes], message: str,
                                        code: int) -> None:
        """A header value with a control character may be refused either way, both correct.

        twisted (under daphne) answers 400 before the upgrade since 26.10 (RFC 9110 forbids
        the character); older releases pass it on and the consumer refuses it after the upgrade.
        """
        async with self.limit:
            raw = await RawSocket.open(self.port, handshake(path, headers))
        if raw.status == 400:
            raw.close()
            self.sent[category] += 1
            self.outcomes[f"{category}: HTTP 400 before the upgrade"] += 1
            return
        _, frame, got_code = await self.read_refusal(raw, category, path, headers)
        assert (frame["message"], got_code) == (message, code), (category, path[:120], headers, frame, got_code)
        self.outcomes[f"{category}: error frame, close {code}"] += 1

    async def bad_authorization(self) -> None:
        headers = bad_authorization_headers(self.alice)
        for header in headers:
            if any(byte < 0x20 and byte != 0x09 for byte in header):
                await self.expect_refusal_or_http400("bad Authorization", ws_path(self.observed_id), [header],
                                                     "Authentication required", 4401)
                continue
            await self.expect_refusal("bad Authorization", ws_path(self.observed_id), [header],
                                      "Authentication required", 4401)
        # The first Authorization header decides, and credentials come before after_seq and the execution.
        for extra in ([b"Authorization: garbage", auth_header(self.alice)], []):
            await self.expect_refusal("bad Authorization", ws_path(self.observed_id, "after_seq=abc"), extra,
                                      "Authentication required", 4401)
        # Without credentials, an existing execution and a missing one look the same.
        answers = []
        for execution_id in (self.observed_id, "exec_000000000000", "anything"):
            raw, frame, code = await self.refusal("no credentials", ws_path(execution_id), [])
            answers.append((raw.header_names, frame["message"], code))
        assert answers[0] == answers[1] == answers[2], answers
        self.outcomes["no credentials: the same answer whether the execution exists or not"] += 1

    async def bad_queries(self) -> None:
        for query in QUERY_REFUSED:
            await self.expect_refusal("bad after_seq", ws_path(self.observed_id, query), [auth_header(self.alice)],
                                      "Invalid after_seq", 4400)
            # Checked before the execution: a missing one gets 4400 too.
            await self.expect_refusal("bad after_seq", ws_path("exec_000000000000", query),
                                      [auth_header(self.alice)], "Invalid after_seq", 4400)
        for query in QUERY_ACCEPTED:
            async with self.limit:
                watch = await open_watch(self.base_ws_url, self.observed_id, self.alice, query=query)
            first = await watch.next()
            await watch.ws.close()
            self.sent["odd but valid query"] += 1
            assert first is not None and first["type"] in ("status", "started", "progress"), (query, first)
            self.outcomes["odd but valid query: the stream starts"] += 1

    async def bad_paths(self) -> None:
        rnd = random.Random(SEED + 1)
        garbage_ids = [
            "exec_000000000000", "exec_" + "g" * 12, "EXEC_" + self.observed_id[5:].upper(), self.observed_id + "0",
            self.observed_id[:-1], "%20" + self.observed_id, "x", "0", "-1", "null",
            "%00", "a%00b", "%ff%fe", "ex%C3%A9c%E2%98%83", "%F0%9F%92%A9" * 20, "..", "%2E%2E", "%3Cscript%3E",
            "'%20OR%201=1--", "%22%3B%20DROP%20TABLE", "*", "%25", "%E2%80%AE", "x" * 1000, "y" * 8000,
            "".join(rnd.choice(string.ascii_letters + string.digits + "-._~!$&'()*+,=:@") for _ in range(200)),
        ]
        for raw_id in garbage_ids:
            execution_id = unquote(raw_id)
            await self.expect_refusal("unknown execution id", f"{API}/executions/{raw_id}/progress/ws".encode(),
                                      [auth_header(self.alice)], f"Execution '{execution_id}' not found", 4404)
        unrouted = [
            f"{API}/executions/a%2Fb/progress/ws", f"{API}/executions/{self.observed_id}%2F/progress/ws",
            f"{API}/executions//progress/ws", f"{API}/executions/{self.observed_id}/progress",
            f"{API}/executions/{self.observed_id}/progress/ws/extra", f"{API}/executions/{self.observed_id}",
            "/", "/ws", "/admin/", f"{API}/executions/{self.observed_id}/progress/ws//",
        ]
        for path in unrouted:
            await self.expect_http("unrouted path", path.encode(), [auth_header(self.alice)], 403)
        for path in ["/api/v1/executions/exéc_☃/progress/ws".encode(), b"/api/v1/executions/a b/progress/ws"]:
            await self.expect_http("raw non-ASCII or space in the request line", path, [auth_header(self.alice)], 400)
        await self.expect_http("request head of 64 KB", ws_path("z" * 64_000), [auth_header(self.alice)], None)
        await self.expect_http("request head of 64 KB", ws_path(self.observed_id),
                               [b"Authorization: Token " + b"k" * 64_000], None)
        await self.expect_http("1000 headers", ws_path(self.observed_id),
                               [auth_header(self.alice)] + [b"X-Junk-%d: v" % i for i in range(1000)], 400)

    async def bad_origins(self) -> None:
        for origin in ORIGINS_FORBIDDEN:
            await self.expect_http("foreign or malformed Origin", ws_path(self.observed_id),
                                   [auth_header(self.alice), b"Origin: " + origin.encode()], 403)
        for raw_origin in ORIGINS_UNPARSABLE:
            await self.expect_http("Origin autobahn cannot parse", ws_path(self.observed_id),
                                   [auth_header(self.alice), b"Origin: " + raw_origin], 400)
        # Several Origin headers, one of them allowed: still refused.
        await self.expect_http("foreign or malformed Origin", ws_path(self.observed_id), [
            auth_header(self.alice), b"Origin: http://127.0.0.1", b"Origin: http://evil.example.com"], 403)
        # The websockets client too (it raises InvalidStatus on a refused handshake).
        with pytest.raises(InvalidStatus) as refused:
            await open_watch(self.base_ws_url, self.observed_id, self.alice, headers={"Origin": "http://evil.example"})
        assert refused.value.response.status_code == 403
        self.sent["foreign or malformed Origin"] += 1

    async def not_found_is_the_same(self) -> None:
        """Someone else's execution and a missing one: the same answer but for the id itself."""

        async def answer(token: str, execution_id: str) -> tuple[Any, ...]:
            raw, frame, code = await self.refusal("someone else's or missing execution", ws_path(execution_id),
                                                  [auth_header(token)])
            message = frame["message"].replace(execution_id, "<id>")
            return raw.status, tuple(raw.header_names), tuple(sorted(frame)), message, code

        missing = f"exec_{uuid.UUID(int=random.Random(SEED).getrandbits(128)).hex[:12]}"
        answers = {
            "carol, alice's execution": await answer(self.carol, self.observed_id),
            "carol, a missing execution": await answer(self.carol, missing),
            "bob, alice's execution": await answer(self.bob, self.observed_id),
            "bob, a missing execution": await answer(self.bob, missing),
            "alice, bob's execution": await answer(self.alice, self.other_id),
            "alice, a missing execution": await answer(self.alice, missing),
        }
        assert len(set(answers.values())) == 1, answers
        assert next(iter(answers.values()))[3:] == ("Execution '<id>' not found", 4404)
        self.outcomes["someone else's execution: the same answer as a missing one"] += 1


def text_batches(messages: list[Any], size: int) -> list[list[Any]]:
    return [messages[i:i + size] for i in range(0, len(messages), size)]


async def run_barrage(b: Barrage, observer: Watch) -> None:
    corpus = b.corpus
    json_messages = corpus.json_messages(300)
    binary_messages = [corpus.binary() for _ in range(40)]
    fragmented = [corpus.split(m, corpus.rnd.randint(2, 5)) for m in corpus.json_messages(20) if len(m) >= 5]
    fragmented_binary = [corpus.split(corpus.binary() + b"xxxxx", corpus.rnd.randint(2, 5)) for _ in range(5)]
    exact = ("é" * MAX_BYTES)[: MAX_BYTES // 2]
    assert len(exact.encode()) == MAX_BYTES

    def text_bytes(data: bytes) -> Callable[[Watch], Awaitable[None]]:
        """Bytes in a text frame, unchecked: how invalid UTF-8 gets sent."""

        async def send(watch: Watch) -> None:
            await watch.ws.send(data, text=True)

        return send

    def sender(message: Any) -> Callable[[Watch], Awaitable[None]]:
        async def send(watch: Watch) -> None:
            await watch.ws.send(message)
        return send

    over = MAX_BYTES + 1
    tasks: list[Awaitable[None]] = [
        # Readable messages, on the observed execution and on bob's.
        b.flood("json (generated)", b.alice, b.observed_id, text_batches(json_messages[:150], 25)),
        b.flood("json (generated)", b.alice, b.observed_id, text_batches(json_messages[150:250], 50)),
        b.flood("json (generated)", b.bob, b.other_id, text_batches(json_messages[250:], 10)),
        b.flood("json garbage", b.alice, b.observed_id, text_batches(JSON_GARBAGE, len(JSON_GARBAGE))),
        b.flood("json garbage", b.bob, b.other_id, text_batches(JSON_GARBAGE, 7)),
        b.flood("binary", b.alice, b.observed_id, text_batches(binary_messages, 10)),
        b.flood("empty", b.alice, b.observed_id, [["", "", b"", " ", "\n"] * 4]),
        b.flood("fragmented", b.alice, b.observed_id, text_batches(fragmented + fragmented_binary, 5)),
        b.flood("exactly the limit", b.alice, b.observed_id, [[exact, "x" * MAX_BYTES, b"\xff" * MAX_BYTES]]),
        b.ping_flood(b.alice, b.observed_id),
        b.ping_flood(b.bob, b.other_id),
        # Over the limit: 1009.
        b.refused_message("over the limit: text", sender("x" * over), 1009),
        b.refused_message("over the limit: multi-byte text", sender("é" * (over // 2 + 1)), 1009),
        b.refused_message("over the limit: binary", sender(b"\x00" * over), 1009),
        b.refused_message("over the limit: 1 MB text", sender("m" * 1_000_000), 1009),
        b.refused_message("over the limit: fragments", sender(["f" * (MAX_BYTES // 2 + 1)] * 2), 1009),
        b.refused_message("over the limit: 50 small fragments", sender(["s" * (MAX_BYTES // 40)] * 50), 1009),
        b.raw_refused("over the limit: a header claiming 2^62 bytes", lambda r: r.send_frame(0x2, b"", length=1 << 62),
                      1009),
        # Invalid UTF-8 in text: 1007.
        b.refused_message("invalid UTF-8 text", text_bytes(b"\xff\xfe"), 1007),
        b.refused_message("invalid UTF-8 text", text_bytes(b'{"type": "\xc3\x28"}'), 1007),
        b.refused_message("invalid UTF-8 text", text_bytes(b"\xed\xa0\x80"), 1007),  # a surrogate
        b.raw_refused("invalid UTF-8 text", lambda r: (r.send_frame(0x1, b"ok\xe2\x82", fin=False),
                                                       r.send_frame(0x0, b"(")), 1007),
        # Malformed frames: 1002.
        b.raw_refused("malformed: unmasked", lambda r: r.send_frame(0x1, b"hi", masked=False), 1002),
        b.raw_refused("malformed: reserved opcode 3", lambda r: r.send_frame(0x3, b"hi"), 1002),
        b.raw_refused("malformed: reserved opcode 11", lambda r: r.send_frame(0xB, b""), 1002),
        b.raw_refused("malformed: RSV1", lambda r: r.send_frame(0x1, b"hi", rsv=4), 1002),
        b.raw_refused("malformed: RSV3", lambda r: r.send_frame(0x1, b"hi", rsv=1), 1002),
        b.raw_refused("malformed: 126-byte ping", lambda r: r.send_frame(0x9, b"p" * 126), 1002),
        b.raw_refused("malformed: fragmented ping", lambda r: r.send_frame(0x9, b"p", fin=False), 1002),
        b.raw_refused("malformed: continuation first", lambda r: r.send_frame(0x0, b"x"), 1002),
        b.raw_refused("malformed: text inside a fragmented message",
                      lambda r: (r.send_frame(0x1, b"a", fin=False), r.send_frame(0x1, b"b")), 1002),
        b.raw_refused("malformed: length over 2^63", lambda r: r.send_frame(0x2, b"", length=1 << 63), 1002),
        # Malformed close frames: dropped.
        b.raw_refused("malformed close: code 999", lambda r: r.send_frame(0x8, struct.pack("!H", 999)), "dropped"),
        b.raw_refused("malformed close: code 1005", lambda r: r.send_frame(0x8, struct.pack("!H", 1005)), "dropped"),
        b.raw_refused("malformed close: 1-byte payload", lambda r: r.send_frame(0x8, b"\x03"), "dropped"),
        b.raw_refused("malformed close: invalid UTF-8 reason",
                      lambda r: r.send_frame(0x8, struct.pack("!H", 1000) + b"\xff"), "dropped"),
        # Connections.
        b.half_open(),
        b.silent(),
        *(b.churn(SEED + n) for n in range(4)),
        # Handshakes.
        b.bad_authorization(),
        b.bad_queries(),
        b.bad_paths(),
        b.bad_origins(),
        b.not_found_is_the_same(),
    ]

    async def observe() -> None:
        await observer.to_close()
        b.observed_over.set()

    await asyncio.gather(observe(), *tasks)


# --- checks ---------------------------------------------------------------------------------------------


def assert_stream_matches_history(watch: Watch, history: list[dict[str, Any]], *, whole: bool) -> None:
    """status first, then the stored events after its seq, exactly, in order (all of them if ``whole``)."""
    assert watch.frames and watch.frames[0]["type"] == "status", watch.frames[:1]
    status, rest = watch.frames[0], watch.frames[1:]
    if status["status"] in TERMINAL_TYPES:  # status, then the stored terminal event again
        assert rest == [history[-1]] and status["seq"] == len(history), (status, rest)
    else:
        assert_consecutive(rest, status["seq"] + 1)
        assert rest == history[status["seq"]:status["seq"] + len(rest)]
    if whole:
        assert watch.close_code == 1000, (watch.close_code, watch.close_reason)
        assert rest and rest[-1] == history[-1] and rest[-1]["type"] in TERMINAL_TYPES


def group_size(client: redis.Redis, execution_id: str) -> int:
    return int(client.zcard(f"asgi:group:execution.{execution_id}"))


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = FRAME_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def new_user_token(prefix: str) -> str:
    return user_token(make_user(f"{prefix}-{uuid.uuid4().hex[:10]}"))


def demo(api: Api, steps: int, step_seconds: float) -> str:
    inputs = {"steps": steps, "step_seconds": step_seconds, "fail_at_step": None}
    return api.submit("demo_steps", inputs=inputs)["execution_id"]


# --- the tests --------------------------------------------------------------------------------------------


def test_a_fuzzing_barrage_leaves_the_server_up_and_other_streams_whole(
    live_stack: Any, api_user: tuple[Any, str], redis_url: str
) -> None:
    started = time.monotonic()
    alice = api_user[1]
    bob, carol = new_user_token("fuzz-bob"), new_user_token("fuzz-carol")
    api, bob_api = Api(live_stack.http_url, alice), Api(live_stack.http_url, bob)
    log_path = live_stack.daphne.log_path
    log_offset = log_path.stat().st_size

    observed_id = demo(api, OBSERVED_STEPS, OBSERVED_STEP_SECONDS)
    other_id = demo(bob_api, OBSERVED_STEPS, OBSERVED_STEP_SECONDS)
    barrage = Barrage(
        port=live_stack.port, base_ws_url=live_stack.ws_url, observed_id=observed_id, other_id=other_id,
        alice=alice, bob=bob, carol=carol, corpus=Corpus(SEED, [observed_id, other_id]),
    )

    async def main() -> Watch:
        observer = await open_watch(live_stack.ws_url, observed_id, alice)
        # Fire once the run is streaming, so the barrage meets live frames.
        await observer.until(
            lambda: any(f.get("status") == "running" for f in observer.frames), "the observed run to start"
        )
        async with asyncio.timeout(BARRAGE_TIMEOUT):
            await run_barrage(barrage, observer)
        return observer

    observer = asyncio.run(main())
    barrage_seconds = time.monotonic() - started

    # The observer: every frame, in order, no gap, then 1000.
    history = api.events(observed_id)
    assert_consecutive(history, 1)
    assert [e["type"] for e in history] == ["started"] + ["progress"] * OBSERVED_STEPS + ["completed"]
    assert observer.errors == []
    assert_stream_matches_history(observer, history, whole=True)
    # So did every attacker that stayed connected, and the cut-off ones up to their close.
    histories = {observed_id: history, other_id: bob_api.events(other_id)}
    for whole, streams in ((True, barrage.full_streams), (False, barrage.partial_streams)):
        for execution_id, watches in streams.items():
            for watch in watches:
                assert_stream_matches_history(watch, histories[execution_id], whole=whole)

    # A new client streams a new execution from start to end.
    fresh_id = demo(api, 5, 0.05)

    async def fresh() -> Watch:
        watch = await open_watch(live_stack.ws_url, fresh_id, alice)
        await watch.to_close()
        return watch

    fresh_watch = asyncio.run(fresh())
    api.wait_until_ended(fresh_id)
    assert_stream_matches_history(fresh_watch, api.events(fresh_id), whole=True)

    # The server is up, no consumer is left in a group, and the log holds no traceback.
    assert live_stack.daphne.alive(), live_stack.daphne.log_tail()
    layer = redis.Redis.from_url(redis_url)
    try:
        for execution_id in (observed_id, other_id, fresh_id):
            wait_for(lambda e=execution_id: group_size(layer, e) == 0, f"every consumer of {execution_id} leaving")
    finally:
        layer.close()
    with open(log_path, "rb") as log:
        log.seek(log_offset)
        written = log.read().decode("utf-8", "replace")
    problems = [
        line for line in written.splitlines() if "Traceback" in line or "Exception" in line or " ERROR " in line
    ]
    assert problems == [], "\n".join(problems[:20]) + "\n...\n" + written[-4000:]

    total = time.monotonic() - started
    print(f"\nfuzz: sent {sum(barrage.sent.values())} messages/connections in {barrage_seconds:.1f} s "
          f"(whole test {total:.1f} s); the observer got {len(observer.frames)} frames, no gap")
    for category, count in sorted(barrage.sent.items()):
        print(f"  sent {count:4d}  {category}")
    for outcome, count in sorted(barrage.outcomes.items()):
        print(f"  {count:4d}x  {outcome}")
    assert total < 60, total


def test_a_frame_larger_than_the_incoming_limit_still_reaches_the_client(
    live_stack: Any, api_user: tuple[Any, str]
) -> None:
    """Regression: autobahn's message cap also capped what the server sends, so a
    terminal frame over WEBSOCKET_MAX_MESSAGE_BYTES crashed the consumer (1011)."""
    api = Api(live_stack.http_url, api_user[1])
    blob = "z" * (3 * MAX_BYTES)
    execution_id = api.submit("echo", type="agent", inputs={"blob": blob})["execution_id"]
    api.wait_until_ended(execution_id)

    async def main() -> Watch:
        watch = await open_watch(live_stack.ws_url, execution_id, api_user[1])
        await watch.to_close()
        return watch

    watch = asyncio.run(main())
    assert [f["type"] for f in watch.frames] == ["status", "completed"]
    assert watch.frames[1]["outputs"] == {"output": {"blob": blob}}
    assert len(watch.texts[1].encode()) > MAX_BYTES
    assert_stream_matches_history(watch, api.events(execution_id), whole=True)
