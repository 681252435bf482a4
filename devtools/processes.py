"""The service's processes as children of a test run or a benchmark.

Redis (embedded), web servers and Celery workers, any number side by side,
each a :class:`Child` with its output in a log file, in a process group of its
own, and terminated by the kernel if the process that started it dies (Linux).
Start-up waits on an observable condition (Redis answers PING, the server
answers HTTP, the worker logs "ready."), never on a sleep, and a child that
dies meanwhile ends the wait with the end of its log in the error. ``dev.py
run`` does not use this module: it runs the Procfile with honcho.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from devtools import embedded_redis

REPO_ROOT = Path(__file__).resolve().parent.parent

# Startup budgets: generous because a cold start on a busy CI machine imports
# Django, DRF and Celery from scratch; a healthy start takes a second or two.
REDIS_START_TIMEOUT = 20.0
WEB_START_TIMEOUT = 60.0
WORKER_START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Longer for a worker: on SIGTERM Celery first finishes the tasks it is running.
WORKER_STOP_TIMEOUT = 15.0
# Any HTTP answer on this path means the ASGI application loaded and Django routes.
WEB_READY_PATH = "/accounts/login/"

#: Builds a web server's argv for a port (see :func:`daphne_command`).
WebCommand = Callable[[int], Sequence[str]]


class ChildError(RuntimeError):
    """A child failed to start or died; the message carries the end of its log."""


@dataclass(eq=False)
class Child:
    """One process started by :func:`spawn`, and the part of its log file it wrote.

    ``leader_only`` makes :meth:`stop` send SIGTERM to the process itself
    rather than to its group (for the Celery worker). Fault tests inject what
    production sees through :meth:`signal_leader` (``docker stop``),
    :meth:`signal_group` (systemd's default stop), :meth:`children` (the OOM
    killer's usual pick) and :func:`restart_redis`.
    """

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int = 0
    url: str | None = None
    leader_only: bool = False
    stop_timeout: float = STOP_TIMEOUT

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process has not exited (its group may outlive it)."""
        return self.process.poll() is None

    def signal_leader(self, sig: int) -> None:
        """Send ``sig`` to this process only (``docker stop`` signals a container's first process)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process of its group (systemd's default ``KillMode``, the OOM of a machine)."""
        _killpg(self.pid, sig)

    def children(self) -> list[int]:
        """The pids of its direct children now (a prefork worker's pool processes)."""
        return child_pids(self.pid)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to exit; its exit code, or None if it still runs after ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def read_log(self) -> str:
        """What this process wrote; the file may also hold earlier runs, before ``log_offset``."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, for error messages."""
        text = self.read_log().rstrip("\n")
        if not text:
            return f"(log {self.log_path} is empty)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``condition`` until it is true; raise :class:`ChildError` on death or timeout.

        A probe that raises counts as "not yet": a server that is still
        starting refuses connections in many ways.
        """
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if condition():
                    return
            if not self.alive():
                raise ChildError(
                    f"{self.name} exited with code {self.process.returncode} while waiting for "
                    f"{what}. Last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ChildError(
                    f"timed out after {timeout:.0f}s waiting for {what}. "
                    f"Last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, SIGKILL to the group after ``timeout``; return the exit code. Safe to repeat.

        SIGTERM goes to the whole group, or to the process itself with
        ``leader_only`` (a Celery worker: its pool processes reset SIGTERM to
        the default action, so signalling the group would kill running tasks
        instead of letting the warm shutdown finish them).
        """
        timeout = self.stop_timeout if timeout is None else timeout
        if self.alive():
            if self.leader_only:
                self.process.send_signal(signal.SIGTERM)
            else:
                _killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        # Whatever the leader left in its group goes too (a worker's pool
        # processes normally exit with it; this is the safety net).
        if _group_exists(self.pid):
            _killpg(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 2.0
            while _group_exists(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            _killpg(self.pid, signal.SIGKILL)
        return self.process.returncode


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid``, from ``/proc`` (Linux; empty elsewhere)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        # The command name (in parentheses) may contain spaces: fields follow the last ")".
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return sorted(children)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# The same few lines as in core/serving/supervisor.py: devtools imports nothing of the service.
def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_prctl = _load_prctl()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    append_log: bool = False,
    url: str | None = None,
    leader_only: bool = False,
    stop_timeout: float = STOP_TIMEOUT,
) -> Child:
    """Start ``argv`` in the repository, in a new process group, output to ``log_path``.

    With ``append_log`` the log keeps what earlier runs wrote (a restart
    within a test); :meth:`Child.read_log` still returns only this run's part.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    # The kernel ties the death signal to the thread that forks: a child
    # started from a short-lived helper thread would die with that thread.
    die_with_parent = _prctl is not None and threading.current_thread() is threading.main_thread()
    with open(log_path, "ab" if append_log else "wb") as log:
        offset = log.tell()
        process = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509 - one prctl call, no locks
        )
    return Child(
        name, process, log_path, offset, url=url, leader_only=leader_only, stop_timeout=stop_timeout
    )


def manage(env: Mapping[str, str], *args: str) -> str:
    """Run a management command of the repository with ``env``; its output (RuntimeError if it fails)."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    It is released before the caller binds it, so another process could take
    it in between; :func:`start_redis` notices and tries another.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound, so readiness probes cannot reach an old server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def redis_answers(url: str) -> bool:
    """Whether a Redis server at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def http_answers(port: int, path: str = WEB_READY_PATH) -> bool:
    """Whether 127.0.0.1:``port`` answers a GET of ``path`` with any HTTP status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def start_redis(data_dir: Path, *, log_path: Path | None = None, port: int | None = None) -> Child:
    """The embedded server, once it answers PING; ``child.url`` is its URL.

    On a free port unless ``port`` is given, and then tried again on another
    port if something took the chosen one before the server could bind it.
    With ``port`` (a restart, see :func:`restart_redis`) there is no other
    choice: clients expect it there, so a busy port is an error, and the log
    keeps what the earlier server wrote. Nothing is persisted, so a server
    started again comes back empty, as a Redis without persistence does.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir / "redis.log"
    attempts = 3 if port is None else 1
    for attempt in range(1, attempts + 1):
        chosen = free_port() if port is None else port
        url = embedded_redis.redis_url(chosen)
        child = spawn(
            "redis",
            embedded_redis.server_command(chosen, data_dir),
            log_path=log_path,
            append_log=attempt > 1 or port is not None,
            url=url,
        )
        try:
            child.wait_for(functools.partial(redis_answers, url), f"Redis to answer PING at {url}", REDIS_START_TIMEOUT)
        except ChildError:
            child.stop()
            if attempt < attempts and "Address already in use" in child.read_log():
                continue
            raise
        except BaseException:
            child.stop()
            raise
        return child
    raise AssertionError("unreachable: the last attempt returns or raises")


def redis_port(redis_child: Child) -> int:
    """The port of a server started by :func:`start_redis`."""
    port = urlsplit(redis_child.url or "").port
    if port is None:
        raise ValueError(f"{redis_child.name} has no URL with a port: {redis_child.url!r}")
    return port


def restart_redis(redis_child: Child, data_dir: Path, *, log_path: Path | None = None) -> Child:
    """Stop the server and start an empty one on the same port (a Redis restart without persistence).

    Clients keep their URL; what they held in the old server is gone.
    """
    port = redis_port(redis_child)
    redis_child.stop()
    return start_redis(data_dir, log_path=log_path or redis_child.log_path, port=port)


def daphne_command(port: int) -> list[str]:
    """daphne serving ``config.asgi:application`` on 127.0.0.1:``port`` (the Procfile's ``web``)."""
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]


#: daphne processes of a ``serve`` started by :func:`serve_command`: two, so that
#: every live test crosses processes (a socket on one, a request on another).
SERVE_WORKERS = 2


def serve_command(port: int, workers: int = SERVE_WORKERS) -> list[str]:
    """``manage.py serve``: ``workers`` daphne processes on 127.0.0.1:``port`` (the Procfile's ``web``)."""
    return [
        sys.executable, str(REPO_ROOT / "manage.py"), "serve",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]


def start_web(
    env: Mapping[str, str],
    port: int,
    *,
    log_path: Path,
    command: WebCommand = daphne_command,
    name: str = "web",
    append_log: bool = False,
) -> Child:
    """A web server on 127.0.0.1:``port``, once it answers HTTP; ``child.url`` is its base URL.

    Ready means Django answered a request, not only that the port is bound:
    otherwise the first request would pay for, or fail on, loading the app.
    """
    if not port_is_free(port):
        raise ChildError(f"cannot start {name}: port {port} on 127.0.0.1 is already in use")
    child = spawn(name, command(port), env=env, log_path=log_path, append_log=append_log, url=f"http://127.0.0.1:{port}")
    try:
        child.wait_for(lambda: http_answers(port), f"{name} to answer HTTP on port {port}", WEB_START_TIMEOUT)
    except BaseException:
        child.stop()
        raise
    return child


def worker_command(node_name: str, concurrency: int) -> list[str]:
    """A prefork Celery worker named ``node_name@<host>`` (the Procfile's ``worker``).

    Gossip, mingle and heartbeat are off: they cost broker round trips (mingle
    alone delays startup) and nothing here relies on what they share.
    """
    return [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "-n", f"{node_name}@%h",
        "--pool", "prefork",
        "--concurrency", str(concurrency),
        "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]


def start_worker(
    env: Mapping[str, str],
    *,
    log_path: Path,
    node_name: str = "worker",
    concurrency: int = 2,
    append_log: bool = False,
) -> Child:
    """A Celery worker, once it logs "ready." (it consumes from then on)."""
    child = spawn(
        node_name,
        worker_command(node_name, concurrency),
        env=env,
        log_path=log_path,
        append_log=append_log,
        leader_only=True,
        stop_timeout=WORKER_STOP_TIMEOUT,
    )
    try:
        child.wait_for(
            lambda: " ready." in child.read_log(), f"the Celery worker {node_name} to be ready", WORKER_START_TIMEOUT
        )
    except BaseException:
        child.stop()
        raise
    return child


class AppServers:
    """A web server on ``port`` and a Celery worker, sharing one environment.

    What the end-to-end tests and the benchmarks run against. The web server
    is ``manage.py serve`` (two daphne processes on one port) unless
    ``web_command`` says otherwise (e.g. :func:`daphne_command`). ``restart_daphne()``
    stops it and starts it again on the same port, appending to the same log,
    for tests of what a client sees across a deploy; ``reload_web()`` (SIGHUP) and
    ``wait_reloaded()`` replace its processes without stopping it.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        port: int,
        log_dir: Path,
        *,
        concurrency: int = 2,
        web_command: WebCommand = serve_command,
    ) -> None:
        self.env = dict(env)
        self.port = port
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.web_command = web_command
        self.daphne: Child | None = None
        self.worker: Child | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _start_web(self, *, append_log: bool) -> Child:
        return start_web(
            self.env, self.port, log_path=self.log_dir / "web.log", command=self.web_command, append_log=append_log
        )

    def start(self) -> None:
        """Start both; on failure stop whatever did start, and raise."""
        try:
            self.daphne = self._start_web(append_log=False)
            self.worker = start_worker(self.env, log_path=self.log_dir / "worker.log", concurrency=self.concurrency)
        except BaseException:
            self.stop()
            raise

    def reload_web(self) -> list[int]:
        """SIGHUP to ``manage.py serve`` (a deploy on one machine); the pids of the generation it replaces."""
        assert self.daphne is not None
        replaced = child_pids(self.daphne.pid)
        self.daphne.signal_leader(signal.SIGHUP)
        return replaced

    def wait_reloaded(self, replaced: list[int], timeout: float = WEB_START_TIMEOUT) -> None:
        """Wait until ``serve`` runs as many server processes as before, none of ``replaced``."""
        assert self.daphne is not None
        server = self.daphne

        def reloaded() -> bool:
            now = child_pids(server.pid)
            return len(now) == len(replaced) and not set(now) & set(replaced)

        server.wait_for(reloaded, "serve's new generation to replace the old one", timeout)

    def restart_daphne(self) -> Child:
        """Stop the web server (SIGTERM, as in a deploy) and start it again on the same port."""
        if self.daphne is not None:
            self.daphne.stop()
        self.daphne = self._start_web(append_log=True)
        return self.daphne

    def stop(self) -> None:
        """Worker first: a task still running gets its warm shutdown while the web server is up."""
        for child in (self.worker, self.daphne):
            if child is not None:
                child.stop()
