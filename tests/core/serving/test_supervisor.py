"""The parent of ``manage.py serve``: its sockets, its command line, and its children.

The sockets and the command's arguments are checked in-process; replacing a
child and stopping them all need a real ``serve`` (a live test, on the live
stack's environment). Clients across its processes: tests/e2e/test_serve.py.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from core.serving.supervisor import default_workers, listening_sockets
from devtools import processes
from tests.helpers import wait_for

linux_only = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="finds processes through Linux's /proc")


# --- in-process --------------------------------------------------------------------------------------


def test_one_listening_socket_per_child_on_one_port() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) == (3 if hasattr(socket, "SO_REUSEPORT") else 1)
        assert len(ports) == 1 and ports != {0}
        # Each one accepts: the kernel may hand a connection to any of them.
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_in_use_raises_and_leaves_no_socket_open() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        before = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else None
        with pytest.raises(OSError, match="in use"):
            listening_sockets("127.0.0.1", taken.getsockname()[1], 2)
        if before is not None:
            assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux's CPU affinity")
def test_one_worker_per_usable_cpu_by_default() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--port", "65536"], "--port must be 0..65535"),
    ],
)
def test_the_serve_command_refuses_bad_arguments(arguments: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        call_command("serve", *arguments)


def test_the_serve_command_says_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command("serve", "--port", str(port), "--workers", "2")


# --- a real serve (live) ----------------------------------------------------------------------------


@pytest.fixture
def own_server(live_stack: Any, tmp_path: Path) -> Iterator[processes.Child]:
    """A separate ``serve`` with two workers on the live stack's environment (no worker needed)."""
    port = processes.free_port()
    child = processes.start_web(live_stack.env, port, log_path=tmp_path / "serve.log", command=processes.serve_command)
    try:
        yield child
    finally:
        child.stop()


def workers_of(server: processes.Child, without: int | None = None) -> list[int] | None:
    """The two worker pids of ``server`` once both run (and ``without`` is not among them)."""
    pids = processes.child_pids(server.pid)
    return pids if len(pids) == 2 and without not in pids else None


@linux_only
def test_a_worker_that_dies_is_replaced_and_the_port_keeps_answering(own_server: processes.Child) -> None:
    port = int((own_server.url or "").rsplit(":", 1)[1])
    before = wait_for(lambda: workers_of(own_server), timeout=10.0, what="two workers")
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: workers_of(own_server, without=before[0]), timeout=15.0, what="a replacement worker")
    assert before[1] in after
    # Every connection is answered, whichever socket the kernel hashes it to.
    for _ in range(10):
        assert processes.http_answers(port, "/healthz")
    assert "exited with code -9" in own_server.read_log()


@linux_only
def test_sigterm_stops_every_worker(own_server: processes.Child) -> None:
    workers = wait_for(lambda: workers_of(own_server), timeout=10.0, what="two workers")
    own_server.process.send_signal(signal.SIGTERM)
    assert own_server.process.wait(timeout=10.0) == 0
    for pid in workers:
        proc = Path(f"/proc/{pid}")
        wait_for(lambda proc=proc: not proc.exists() or "Z" in (proc / "stat").read_text().split()[2],
                 timeout=5.0, what=f"worker {pid} to exit")
