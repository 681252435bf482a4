"""Request bodies on the real daphne: the size cap before Django reads, chunked bodies.

Raw sockets, because HTTP client libraries will not send a Content-Length
they do not mean, nor keep sending after the answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

from django.conf import settings

from executions.models import Execution

SUBMIT = "/api/v1/executions"


def connect(live_stack: Any) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live_stack.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return status, headers, body[:length]


def request_head(token: str, extra: str) -> bytes:
    return (
        f"POST {SUBMIT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def test_a_declared_oversized_body_is_refused_before_it_is_sent(live_stack: Any, api_user: tuple[Any, str]) -> None:
    """413 after the headers alone: the server does not wait for (or read) a 1 GB body."""
    with connect(live_stack) as sock:
        sock.sendall(request_head(api_user[1], f"Content-Length: {1 << 30}\r\n"))
        started = time.monotonic()
        status, headers, body = read_response(sock)
        took = time.monotonic() - started
    assert status == 413
    assert headers["content-type"] == "application/json"
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert json.loads(body) == {"detail": f"Request body too large: the limit is {limit} bytes."}
    assert took < 5, f"answered after {took:.2f} s"


def test_a_chunked_submit_is_read_like_any_other(live_stack: Any, api_user: tuple[Any, str]) -> None:
    payload = json.dumps({"type": "agent", "target_id": "echo", "inputs": {"note": "x" * 5000}}).encode()
    with connect(live_stack) as sock:
        sock.sendall(request_head(api_user[1], "Transfer-Encoding: chunked\r\n") + chunked(payload))
        status, _, body = read_response(sock)
    assert status == 202, body
    execution = Execution.objects.get(pk=json.loads(body)["execution_id"])
    assert execution.inputs == {"note": "x" * 5000}


def test_a_chunked_body_over_the_limit_gets_413_and_nothing_is_created(
    live_stack: Any, api_user: tuple[Any, str]
) -> None:
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    payload = json.dumps({"type": "agent", "target_id": "echo", "inputs": {"note": padding}}).encode()
    with connect(live_stack) as sock:
        # The server may answer and close while the rest is still being sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request_head(api_user[1], "Transfer-Encoding: chunked\r\n") + chunked(payload, 16384))
        status, _, body = read_response(sock)
    assert status == 413
    assert "too large" in json.loads(body)["detail"]
    assert not Execution.objects.filter(owner=api_user[0]).exists()
