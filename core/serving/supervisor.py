"""The parent of ``manage.py serve``: N daphne processes serving HTTP and WebSocket on one port.

daphne serves from one thread, so a machine with N cores needs N processes.
The :class:`Supervisor` binds one listening socket per child
(:func:`listening_sockets`), starts ``daphne --fd`` on each, replaces a child
that dies (its socket stays open, so connections wait in the backlog), gives
up on one that keeps dying at start-up, and forwards SIGTERM/SIGINT once to
every child. Each process subscribes to the groups of its own sockets
(``progress/hub.py``), so every stream guarantee holds across processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from core import metrics

logger = logging.getLogger(__name__)

#: The ASGI application every child serves.
APPLICATION = "config.asgi:application"
#: A child that exits sooner than this after its start counts as a quick death.
QUICK_DEATH_SECONDS = 10.0
#: Quick deaths in a row of one child after which the server gives up.
MAX_QUICK_DEATHS = 5
#: How long the children get to stop after SIGTERM before SIGKILL (below the
#: 10 s that process managers and the test harness give the whole server).
STOP_TIMEOUT_SECONDS = 8.0
LISTEN_BACKLOG = 2048
POLL_SECONDS = 0.1


def default_workers() -> int:
    """One process per CPU this process may run on."""
    with contextlib.suppress(AttributeError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on host:port with ``SO_REUSEPORT`` (or one shared socket).

    With ``SO_REUSEPORT`` the kernel spreads new connections over the sockets
    by a hash of the client's address and port, so a burst of connects lands
    about evenly on the children. One shared listening socket would let
    whichever process wakes first accept a whole burst. Where ``SO_REUSEPORT``
    is missing, the children share one socket anyway. With ``port`` 0 the
    first socket picks a free port and the others join it.
    """
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = found[0]
    reuse_port = hasattr(socket, "SO_REUSEPORT") and count > 1
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if reuse_port else 1):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address if len(sockets) == 1 else sockets[0].getsockname())
            sock.listen(LISTEN_BACKLOG)
            sock.set_inheritable(True)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def daphne_command(fd: int, application: str = APPLICATION) -> list[str]:
    """daphne serving ``application`` on an inherited listening socket."""
    return [sys.executable, "-m", "daphne", "--fd", str(fd), application]


# The same few lines as in devtools/processes.py, which may not import the service.
def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_prctl = _load_prctl()


def _child_setup() -> None:
    """Between fork and exec: own process group, and SIGTERM when the parent dies (Linux).

    In a group of its own, a child gets a terminal's Ctrl-C or a process
    manager's signal to the group once, forwarded by the parent, not twice.
    """
    os.setpgid(0, 0)
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


@dataclass(eq=False)
class Slot:
    """One child's place: its listening socket and the process serving it now."""

    index: int
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


@dataclass(eq=False)
class Supervisor:
    """Start, watch, replace and stop the children (see the module docstring)."""

    host: str
    port: int
    workers: int
    application: str = APPLICATION
    stop_timeout: float = STOP_TIMEOUT_SECONDS
    slots: list[Slot] = field(default_factory=list)
    stopping: bool = False
    failed: bool = False

    def bind(self) -> None:
        """Open the listening sockets and give each slot its own (or the shared one)."""
        sockets = listening_sockets(self.host, self.port, self.workers)
        # One socket shared by every child where SO_REUSEPORT is missing.
        self.slots = [Slot(i, sockets[i % len(sockets)]) for i in range(self.workers)]
        self.port = sockets[0].getsockname()[1]

    def start_child(self, slot: Slot) -> None:
        """Start daphne on the slot's socket."""
        fd = slot.sock.fileno()
        # Our own interpreter and arguments. preexec_fn with threads around: _child_setup makes
        # two system calls (setpgid, prctl) between fork and exec, no locks, no allocation.
        slot.process = subprocess.Popen(
            daphne_command(fd, self.application),
            pass_fds=(fd,),
            preexec_fn=_child_setup,  # noqa: PLW1509 - two system calls only, see above
        )
        slot.started_at = time.monotonic()
        slot.restart_at = None
        logger.info("serve: worker %d started (pid %d)", slot.index, slot.process.pid)

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: stop at the next turn of the loop."""
        if not self.stopping:
            logger.info("serve: %s received, stopping the workers", signal.Signals(signum).name)
        self.stopping = True

    def check_children(self) -> None:
        """Notice deaths, schedule replacements, start the ones that are due."""
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is not None and process.poll() is not None:
                slot.process = None
                metrics.process_exited(process.pid)
                lived = now - slot.started_at
                slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                if slot.quick_deaths >= MAX_QUICK_DEATHS:
                    logger.error(
                        "serve: worker %d exited %d times in a row within %g s of starting; giving up",
                        slot.index, slot.quick_deaths, QUICK_DEATH_SECONDS,
                    )
                    self.failed = self.stopping = True
                    return
                delay = min(0.5 * 2 ** max(slot.quick_deaths - 1, 0), 10.0) if slot.quick_deaths else 0.0
                slot.restart_at = now + delay
                logger.warning(
                    "serve: worker %d (pid %d) exited with code %s after %.1f s; restarting in %.1f s",
                    slot.index, process.pid, process.returncode, lived, delay,
                )
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                self.start_child(slot)

    def stop_children(self) -> None:
        """SIGTERM to every running child; SIGKILL to the group of any still running after ``stop_timeout``."""
        running = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "serve: worker pid %d did not stop within %g s; killing it", process.pid, self.stop_timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            metrics.process_exited(process.pid)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a child that cannot start (1)."""
        if not self.slots:
            self.bind()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.handle_signal)
        logger.info("serve: %d daphne workers on %s:%d", self.workers, self.host, self.port)
        try:
            for slot in self.slots:
                self.start_child(slot)
            while not self.stopping:
                self.check_children()
                time.sleep(POLL_SECONDS)
        finally:
            self.stop_children()
            for sock in {id(slot.sock): slot.sock for slot in self.slots}.values():
                sock.close()
        return 1 if self.failed else 0


def serve(*, host: str, port: int, workers: int | None = None, application: str = APPLICATION) -> int:
    """Run the server in this process until it is stopped; return the exit code."""
    return Supervisor(host=host, port=port, workers=workers or default_workers(), application=application).run()


__all__: Sequence[str] = ("Supervisor", "default_workers", "listening_sockets", "serve")
