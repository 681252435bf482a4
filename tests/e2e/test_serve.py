"""``manage.py serve``: several daphne processes on one port, one server to clients.

The live stack runs ``serve`` with two processes. These tests find out which
process holds each connection (from ``/proc``: the server side of a TCP
connection is a socket inode in exactly one process's descriptors), so that
"a client on one process, a cancel through another" is a fact, not a hope.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from devtools import processes
from tests.helpers import wait_for

from .streams import API, Api, Stream, in_step, open_ws, read_frame, read_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="finds connections through Linux's /proc"),
]


@pytest.fixture
def api(live_stack: Any, api_user: tuple[Any, str]) -> Api:
    return Api(live_stack.http_url, api_user[1])


@pytest.fixture
def token(api_user: tuple[Any, str]) -> str:
    return api_user[1]


# --- which process holds a connection ----------------------------------------------------


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (the serve supervisor's daphne workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry.name))
    return sorted(pids)


def server_side_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the connection from 127.0.0.1:``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port and inode:
            return inode
    return None


def owner_of(server_pid: int, server_port: int, client_socket: socket.socket) -> int:
    """Which daphne worker of the server holds the other end of ``client_socket``."""
    client_port = client_socket.getsockname()[1]

    def find() -> int | None:
        inode = server_side_inode(server_port, client_port)
        if inode is None:  # not accepted yet
            return None
        target = f"socket:[{inode}]"
        for pid in child_pids(server_pid):
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
            except OSError:
                continue
        return None

    return wait_for(find, timeout=10.0, what="the server process holding the connection")


def http_connection_on_another_process(
    server_pid: int, port: int, avoid: int
) -> tuple[http.client.HTTPConnection, int]:
    """A kept-alive HTTP connection accepted by a worker other than ``avoid``.

    The kernel spreads connections over the workers by a hash of the client's
    port: a few tries find another one.
    """
    for _ in range(100):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        assert conn.sock is not None
        owner = owner_of(server_pid, port, conn.sock)
        if owner != avoid:
            return conn, owner
        conn.close()
    raise AssertionError(f"100 connections in a row went to process {avoid}")


def ws_socket(ws: ClientConnection) -> socket.socket:
    return ws.socket


# --- across processes on the live stack ---------------------------------------------------------


def test_the_live_stack_serves_from_two_processes(live_stack: Any) -> None:
    assert live_stack.daphne is not None
    assert len(child_pids(live_stack.daphne.pid)) == processes.SERVE_WORKERS


def test_a_cancel_through_another_process_reaches_the_socket_within_1s(live_stack: Any, api: Any, token: str) -> None:
    """Socket on process A, the worker publishing, the cancel through process B."""
    assert live_stack.daphne is not None
    server_pid, port = live_stack.daphne.pid, live_stack.port
    execution_id = api.submit("demo_steps", inputs={"steps": 3, "step_seconds": 30})["execution_id"]
    stream = Stream()
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        ws_owner = owner_of(server_pid, port, ws_socket(ws))
        # The worker's events reach the socket through its process's subscription.
        read_until(ws, stream, in_step(1), timeout=30.0)

        conn, cancel_owner = http_connection_on_another_process(server_pid, port, avoid=ws_owner)
        try:
            sent = time.monotonic()
            conn.request("POST", f"{API}/executions/{execution_id}/cancel", headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            body = json.loads(response.read())
        finally:
            conn.close()
        assert response.status == 200, body
        assert body["data"]["status"] == "cancelled"
        cancelled = read_frame(ws, stream, timeout=1.0)
        assert cancelled is not None and cancelled["type"] == "cancelled"
        latency = stream.arrived[-1] - sent
        print(
            f"\nserve: socket on pid {ws_owner}, cancel through pid {cancel_owner}: frame after {latency * 1000:.0f} ms"
        )
        assert latency < 1.0
        assert read_frame(ws, stream, timeout=5.0) is None
    assert stream.close_code == 1000
    assert cancel_owner != ws_owner
    seqs = [f["seq"] for f in stream.frames[1:]]
    assert seqs == list(range(stream.frames[0]["seq"] + 1, stream.frames[0]["seq"] + 1 + len(seqs)))


def test_a_resumed_stream_misses_nothing_whichever_process_takes_it(live_stack: Any, api: Any, token: str) -> None:
    """Reconnecting with after_seq to any process: the stored events after it, then the live ones."""
    assert live_stack.daphne is not None
    execution_id = api.submit("demo_steps", inputs={"steps": 4, "step_seconds": 0.3})["execution_id"]
    first = Stream()
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        read_until(ws, first, in_step(2), timeout=30.0)
    # One event back, so that something is stored after it (guarantee 4: no status frame).
    after_seq = first.frames[-1]["seq"] - 1
    second = Stream()
    with open_ws(live_stack.ws_url, execution_id, token, query=f"after_seq={after_seq}") as ws:
        owner_of(live_stack.daphne.pid, live_stack.port, ws_socket(ws))
        while read_frame(ws, second, timeout=30.0) is not None:
            pass
    assert second.close_code == 1000
    assert second.types[0] != "status"
    assert [f["seq"] for f in second.frames] == list(range(after_seq + 1, after_seq + 1 + len(second.frames)))
    assert second.frames[-1]["type"] == "completed"
