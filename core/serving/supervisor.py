"""The parent of ``manage.py serve``: generations of N processes serving HTTP and WebSocket on one port.

daphne serves from one thread, so a machine with N cores needs N processes.
The :class:`Supervisor` binds one listening socket per slot
(:func:`listening_sockets`) and keeps them for its whole life. A
:class:`Generation` is N children (``core.serving.child``), one per socket: a
child that dies is replaced (its socket stays open, so connections wait in the
backlog), one that keeps dying at start-up ends ``serve``. SIGHUP starts a new
generation on the same sockets and drains the old one once every new child
has said, on a pipe of its own, that it accepts: both accept from the same
sockets meanwhile, so no connection is refused. SIGTERM/SIGINT drains every
child; one still running ``SERVE_GRACE_SECONDS`` later is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
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
#: How long a child gets to drain after SIGTERM before SIGKILL (``SERVE_GRACE_SECONDS``).
GRACE_SECONDS = 30.0
#: How long a reload waits for every child of the new generation to accept.
GENERATION_START_TIMEOUT_SECONDS = 60.0
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


def child_command(fd: int, ready_fd: int, application: str = APPLICATION) -> list[str]:
    """One server process (``core.serving.child``) on an inherited socket, with its readiness pipe."""
    return [
        sys.executable, "-m", "core.serving.child", "--fd", str(fd), "--ready-fd", str(ready_fd), application,
    ]


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
    """One child's place in a generation: its listening socket and the process serving it now."""

    index: int
    sock: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    #: The read end of the child's readiness pipe, until it has said it accepts (or died).
    ready_pipe: int | None = None
    #: The process now in the slot has said it accepts.
    ready: bool = False

    def close_pipe(self) -> None:
        if self.ready_pipe is not None:
            os.close(self.ready_pipe)
            self.ready_pipe = None


@dataclass(eq=False)
class Generation:
    """N children started together, one per listening socket; a reload replaces them all."""

    number: int
    slots: list[Slot]
    started_at: float = field(default_factory=time.monotonic)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The processes of this generation still running."""
        return [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]

    @property
    def ready(self) -> bool:
        return all(slot.ready for slot in self.slots)


@dataclass(eq=False)
class Retiring:
    """A child told to drain (SIGTERM), and when it is killed if it has not exited."""

    process: subprocess.Popen[bytes]
    kill_at: float


@dataclass(eq=False)
class Supervisor:
    """Start, watch, replace, reload and stop the children (see the module docstring)."""

    host: str
    port: int
    workers: int
    application: str = APPLICATION
    grace: float = GRACE_SECONDS
    start_timeout: float = GENERATION_START_TIMEOUT_SECONDS
    sockets: list[socket.socket] = field(default_factory=list)
    #: The generation serving (the only one, outside a reload).
    current: Generation | None = None
    #: The generation a reload is starting, until every child of it accepts.
    incoming: Generation | None = None
    retiring: list[Retiring] = field(default_factory=list)
    generations: int = 0
    stopping: bool = False
    reload_requested: bool = False
    failed: bool = False

    def bind(self) -> None:
        """Open the listening sockets, kept until ``serve`` exits (one shared where SO_REUSEPORT is missing)."""
        self.sockets = listening_sockets(self.host, self.port, self.workers)
        self.port = self.sockets[0].getsockname()[1]

    def new_generation(self) -> Generation:
        """The next generation, every child started on its socket."""
        self.generations += 1
        generation = Generation(
            self.generations, [Slot(i, self.sockets[i % len(self.sockets)]) for i in range(self.workers)]
        )
        for slot in generation.slots:
            self.start_child(generation, slot)
        return generation

    def start_child(self, generation: Generation, slot: Slot) -> None:
        """Start a child on the slot's socket, with a new readiness pipe."""
        fd = slot.sock.fileno()
        slot.close_pipe()
        read_end, write_end = os.pipe()
        try:
            # Our own interpreter and arguments. preexec_fn with threads around: _child_setup makes
            # two system calls (setpgid, prctl) between fork and exec, no locks, no allocation.
            slot.process = subprocess.Popen(
                child_command(fd, write_end, self.application),
                pass_fds=(fd, write_end),
                preexec_fn=_child_setup,  # noqa: PLW1509 - two system calls only, see above
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        slot.ready_pipe, slot.ready = read_end, False
        slot.started_at = time.monotonic()
        slot.restart_at = None
        logger.info("serve: generation %d, worker %d started (pid %d)", generation.number, slot.index, slot.process.pid)

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: stop at the next turn of the loop."""
        if not self.stopping:
            logger.info("serve: %s received, draining the workers", signal.Signals(signum).name)
        self.stopping = True

    def handle_hangup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: reload at the next turn of the loop."""
        self.reload_requested = True

    # --- the generation serving ---------------------------------------------------------------

    def check_children(self) -> None:
        """Notice deaths in the serving generation, schedule replacements, start the ones that are due."""
        generation = self.current
        if generation is None:
            return
        now = time.monotonic()
        for slot in generation.slots:
            process = slot.process
            if process is not None and process.poll() is not None:
                slot.process = None
                slot.close_pipe()
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
                self.start_child(generation, slot)

    def wait_for_readiness(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a child's readiness byte (or its pipe's end), and note it."""
        slots = [
            slot
            for generation in (self.current, self.incoming)
            if generation is not None
            for slot in generation.slots
            if slot.ready_pipe is not None
        ]
        if not slots:
            time.sleep(timeout)
            return
        readable, _, _ = select.select([slot.ready_pipe for slot in slots], [], [], timeout)
        for slot in slots:
            if slot.ready_pipe is not None and slot.ready_pipe in readable:
                # One byte once accepting; nothing (end of file) if it died before.
                slot.ready = os.read(slot.ready_pipe, 1) != b""
                slot.close_pipe()

    # --- reload ---------------------------------------------------------------------------------

    def begin_reload(self) -> None:
        """Start a new generation beside the serving one."""
        self.reload_requested = False
        if self.incoming is not None:
            logger.warning("serve: SIGHUP received while generation %d is starting; ignored", self.incoming.number)
            return
        logger.info("serve: SIGHUP received, starting generation %d", self.generations + 1)
        self.incoming = self.new_generation()

    def check_reload(self) -> None:
        """Promote the incoming generation once every child accepts; give it up if one dies or it is too slow."""
        incoming = self.incoming
        if incoming is None:
            return
        dead = [slot for slot in incoming.slots if slot.process is not None and slot.process.poll() is not None]
        if dead:
            slot = dead[0]
            assert slot.process is not None
            self.abort_reload(f"worker {slot.index} exited with code {slot.process.returncode} before it accepted")
        elif incoming.ready:
            previous, self.current, self.incoming = self.current, incoming, None
            took = time.monotonic() - incoming.started_at
            if previous is not None:
                logger.info(
                    "serve: generation %d accepts (after %.1f s); draining generation %d",
                    incoming.number, took, previous.number,
                )
                self.retire(previous.processes())
        elif time.monotonic() - incoming.started_at > self.start_timeout:
            self.abort_reload(f"not every worker accepted within {self.start_timeout:g} s")

    def abort_reload(self, reason: str) -> None:
        """Stop the incoming generation; the serving one goes on."""
        incoming, self.incoming = self.incoming, None
        if incoming is None:
            return
        serving = self.current.number if self.current is not None else 0
        logger.error(
            "serve: reload failed: generation %d: %s; generation %d goes on serving", incoming.number, reason, serving
        )
        for slot in incoming.slots:
            slot.close_pipe()
            if slot.process is not None and slot.process.poll() is not None:
                metrics.process_exited(slot.process.pid)
        self.retire(incoming.processes())

    # --- stopping -------------------------------------------------------------------------------

    def retire(self, processes: Sequence[subprocess.Popen[bytes]]) -> None:
        """SIGTERM (drain) to each process; killed if still running after the grace."""
        kill_at = time.monotonic() + self.grace
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            self.retiring.append(Retiring(process, kill_at))

    def reap_retiring(self) -> None:
        """Forget the retired children that exited; kill those past their grace."""
        now = time.monotonic()
        for retiring in list(self.retiring):
            process = retiring.process
            if process.poll() is None and now >= retiring.kill_at:
                logger.warning("serve: worker pid %d still draining after %g s; killing it", process.pid, self.grace)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            if process.poll() is not None:
                self.retiring.remove(retiring)
                metrics.process_exited(process.pid)

    def stop_children(self) -> None:
        """Drain every child (SIGTERM), then wait for them all; SIGKILL to any past its grace.

        The listening sockets are closed at once: nothing will accept from them any more,
        and a closed port is refused at once (a balancer tries another server) where a
        connection left in the backlog would wait for nothing until ``serve`` exits.
        """
        for generation in (self.current, self.incoming):
            if generation is not None:
                self.retire(generation.processes())
                for slot in generation.slots:
                    slot.close_pipe()
        self.close_sockets()
        while self.retiring:
            self.reap_retiring()
            if self.retiring:
                first = min(self.retiring, key=lambda retiring: retiring.kill_at)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    first.process.wait(min(max(first.kill_at - time.monotonic(), 0.0), POLL_SECONDS))

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a child that cannot start (1)."""
        if not self.sockets:
            self.bind()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.handle_signal)
        signal.signal(signal.SIGHUP, self.handle_hangup)
        logger.info("serve: %d daphne workers on %s:%d", self.workers, self.host, self.port)
        try:
            self.current = self.new_generation()
            while not self.stopping:
                if self.reload_requested:
                    self.begin_reload()
                self.check_children()
                self.check_reload()
                self.reap_retiring()
                self.wait_for_readiness(POLL_SECONDS)
        finally:
            self.stop_children()
        return 1 if self.failed else 0

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()


def serve(
    *,
    host: str,
    port: int,
    workers: int | None = None,
    application: str = APPLICATION,
    grace: float = GRACE_SECONDS,
) -> int:
    """Run the server in this process until it is stopped; return the exit code."""
    return Supervisor(
        host=host, port=port, workers=workers or default_workers(), application=application, grace=grace
    ).run()


__all__: Sequence[str] = ("Generation", "Supervisor", "default_workers", "listening_sockets", "serve")
