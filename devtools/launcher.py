"""What ``python3 dev.py run``, ``test`` and ``docs`` do once dev.py has the virtualenv.

``run``: the release step (migrations, the demo accounts), then the
``Procfile``'s processes under honcho, with an embedded Redis among them when
``REDIS_URL`` is unset; Ctrl-C or the exit of any one stops them all, the
Celery worker first (:class:`WorkerFirstManager`), and a banner gives the
addresses and logins once the web server answers. ``test``: pytest with its
arguments, against an embedded Redis unless ``REDIS_URL`` is set. ``docs``: the
manual (``docs/``) served by ``mkdocs serve`` while you edit it.
Run as ``python -m devtools.launcher run|test [pytest args]|docs``; dev.py does that.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from honcho.environ import parse_procfile
from honcho.manager import Manager

from devtools import embedded_redis, processes

ROOT = processes.REPO_ROOT
PROCFILE = ROOT / "Procfile"
VAR_DIR = ROOT / "var"
SECRET_KEY_FILE = VAR_DIR / "secret_key"
# Written by ``manage.py ensure_demo_user --credentials-file`` for the banner.
CREDENTIALS_FILE = VAR_DIR / "dev_credentials.json"
REDIS_DATA_DIR = VAR_DIR / "redis"
# prometheus-client's multiprocess files, one directory per PORT (core/metrics.py).
METRICS_DIR_PATTERN = "prometheus-{port}"
DEFAULT_PORT = 8000
# drf-spectacular's Swagger UI, as routed in config/urls.py (name "api-docs").
API_DOCS_PATH = "/api/v1/docs/"
# How long the banner waits for the web server; a cold start takes seconds.
BANNER_WAIT_SECONDS = 120.0
# Where `dev.py docs` serves the manual (DOCS_PORT overrides), beside the run's 8000.
DEFAULT_DOCS_PORT = 8001
MKDOCS_CONFIG = ROOT / "mkdocs.yml"

USAGE = """usage: dev.py run
       dev.py test [pytest arguments]
       dev.py docs

run   migrate, create the demo users, then run the Procfile's processes with
      honcho: manage.py serve (a daphne process per CPU) on 127.0.0.1:8000
      (PORT overrides) and a Celery worker,
      plus an embedded Redis unless REDIS_URL is set; Ctrl-C stops them all
test  run pytest with an embedded Redis unless REDIS_URL is set
docs  serve the manual (docs/) on http://127.0.0.1:8001/ (DOCS_PORT overrides),
      rebuilt on every save; Ctrl-C stops it"""


class LaunchError(RuntimeError):
    """``dev.py run`` cannot start; the message says why and what to do."""


def ensure_secret_key(path: Path = SECRET_KEY_FILE) -> str:
    """The persistent development secret key, generated on first use.

    Kept in a file (mode 0600) rather than made up per start so that login
    sessions and signed values survive a restart.
    """
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)  # an empty file left over may have had wider permissions
    return key


def run_environment() -> dict[str, str]:
    """The environment of every process of ``run``: this one's, plus what a local run needs."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # daphne serves plain HTTP on 127.0.0.1 here: HTTPS-only cookies would
    # make logging in impossible with debug off.
    env.setdefault("DJANGO_SECURE_COOKIES", "0")
    if not env.get("DJANGO_SECRET_KEY"):
        env["DJANGO_SECRET_KEY"] = ensure_secret_key()
    raw_port = env.get("PORT") or str(DEFAULT_PORT)
    if not raw_port.isdigit():
        raise LaunchError(f"PORT must be a number, got {raw_port!r}")
    env["PORT"] = raw_port
    # The Procfile names its programs (python, celery) as a deployment would;
    # here they are the virtualenv's, which need not be on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def fresh_metrics_dir(path: Path) -> Path:
    """Create ``path`` and empty it of prometheus-client's files (``*.db``); return it.

    The files of processes from an earlier run would otherwise still be summed
    into every scrape. Only ``*.db`` files go, so a directory given in
    ``PROMETHEUS_MULTIPROC_DIR`` loses nothing else.
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def manage(env: Mapping[str, str], *args: str) -> None:
    """Run a management command in the foreground; raise if it fails."""
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=dict(env), check=False)
    if result.returncode != 0:
        raise LaunchError(f"manage.py {args[0]} failed with exit code {result.returncode} (see above).")


def release(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Migrate and ensure the demo accounts; return the accounts by username.

    Done before any process starts, as a deployment's release step would, so
    the web server and the worker never see an unmigrated database.
    """
    print("Applying migrations ...", flush=True)
    manage(env, "migrate", "--noinput")
    manage(env, "ensure_demo_user", "--verbosity", "0", "--credentials-file", str(CREDENTIALS_FILE))
    accounts = json.loads(CREDENTIALS_FILE.read_text())["accounts"]
    return {account["username"]: account for account in accounts}


def process_commands(redis_port: int | None) -> dict[str, str]:
    """The Procfile's processes by name, after an embedded Redis on ``redis_port`` if given."""
    commands: dict[str, str] = {}
    if redis_port is not None:
        commands["redis"] = shlex.join(
            [sys.executable, "-m", "devtools.embedded_redis", "--port", str(redis_port), "--dir", str(REDIS_DATA_DIR)]
        )
    commands.update(parse_procfile(PROCFILE.read_text()).processes)
    return commands


def banner(
    *,
    http_url: str,
    redis_url: str,
    embedded: bool,
    accounts: Mapping[str, Mapping[str, str]],
    debug: bool,
    names: Sequence[str],
    metrics_token: bool = False,
) -> str:
    """The addresses, the logins and the demo token, framed to stand out in the logs."""
    demo = accounts.get("demo", {})
    admin = accounts.get("admin", {})
    rule = "=" * 72
    return "\n".join(
        [
            rule,
            f"  Pages:    {http_url}/",
            f"  Admin:    {http_url}/admin/",
            f"  API docs: {http_url}{API_DOCS_PATH}",
            f"  Health:   {http_url}/healthz  {http_url}/readyz",
            f"  Metrics:  {http_url}/metrics  (admin login"
            + (", or Authorization: Bearer $METRICS_TOKEN)" if metrics_token else "; set METRICS_TOKEN for a scraper)"),
            "",
            f"  Demo login:  {demo.get('username', 'demo')} / {demo.get('password', '?')}",
            f"  API token:   {demo.get('token', '?')}   (header: Authorization: Token <token>)",
            f"  Admin login: {admin.get('username', 'admin')} / {admin.get('password', '?')}",
            "",
            f"  Redis:  {redis_url}{'  (embedded, the redis process)' if embedded else ''}",
            f"  Logs:   this terminal, each line prefixed with its process ({', '.join(names)})",
            f"  Debug:  {'on' if debug else 'off (set DJANGO_DEBUG=1 to turn it on)'}",
            "",
            "  Ctrl-C stops everything.",
            rule,
        ]
    )


class WorkerFirstManager(Manager):
    """honcho's Manager, except that the Celery workers are stopped first, and warmly.

    honcho stops a process with SIGTERM to its whole process group. A Celery
    worker's pool processes reset SIGTERM to the default action, so that kills
    the tasks they run (WorkerLostError) instead of letting the worker's warm
    shutdown finish them. So the first stop request goes to each worker's main
    process only, found through the pid file it writes into ``pid_dir``
    (``CELERY_WORKER_PIDFILE``, Celery's environment form of ``--pidfile``).
    Once a worker has exited, honcho stops the others as usual, the embedded
    Redis included, which the worker needs until then. Any further request (a
    second Ctrl-C) goes straight to honcho: everything stops at once.
    """

    def __init__(self, pid_dir: Path) -> None:
        super().__init__()
        self.pid_dir = pid_dir
        self.workers_signalled = False

    def worker_pids(self) -> list[int]:
        """Main processes of the running workers (a worker removes its pid file when it exits)."""
        pids = []
        for pid_file in self.pid_dir.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(pid_file.read_text().strip()))
        return pids

    def terminate(self) -> None:
        """Called by honcho on Ctrl-C / SIGTERM and when a process has exited."""
        if not self.workers_signalled:
            self.workers_signalled = True
            signalled = 0
            for pid in self.worker_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                    signalled += 1
            if signalled:
                print(
                    "dev.py: stopping the worker first; running tasks finish "
                    "(Ctrl-C again stops everything at once).",
                    flush=True,
                )
                return
        super().terminate()


def print_when_serving(port: int, text: str, finished: threading.Event) -> None:
    """Print ``text`` once 127.0.0.1:``port`` answers HTTP, unless the run ends first.

    Runs in a thread beside honcho's loop: the banner is only useful once
    the addresses it gives work.
    """
    deadline = time.monotonic() + BANNER_WAIT_SECONDS
    while not finished.is_set() and time.monotonic() < deadline:
        if processes.http_answers(port):
            # One write, so honcho's lines cannot land inside the banner.
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            return
        finished.wait(0.2)


def cmd_run() -> int:
    """Release, then supervise the processes with honcho until Ctrl-C or one of them exits."""
    env = run_environment()
    port = int(env["PORT"])
    if not processes.port_is_free(port):
        raise LaunchError(
            f"Port {port} on 127.0.0.1 is already in use (another `dev.py run`?). "
            "Stop it or choose another port with PORT=...."
        )
    embedded = not env.get("REDIS_URL")
    redis_port = processes.free_port() if embedded else None
    if redis_port is not None:
        env["REDIS_URL"] = embedded_redis.redis_url(redis_port)

    accounts = release(env)
    # Set after the release step and before any process starts: prometheus_client
    # reads it at import, and every process must count into the same directory.
    metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR") or str(VAR_DIR / METRICS_DIR_PATTERN.format(port=port))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_dir(Path(metrics_dir)))
    commands = process_commands(redis_port)
    # Per run, so two runs from one checkout (other PORTs) cannot mix them up.
    pid_dir = Path(tempfile.mkdtemp(prefix="dev-run-"))
    env["CELERY_WORKER_PIDFILE"] = str(pid_dir / "%n.pid")
    manager = WorkerFirstManager(pid_dir)
    for name, command in commands.items():
        manager.add_process(name, command, env=env, cwd=str(ROOT))
    text = banner(
        http_url=f"http://127.0.0.1:{port}",
        redis_url=env["REDIS_URL"],
        embedded=embedded,
        accounts=accounts,
        debug=env.get("DJANGO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"},
        names=list(commands),
        metrics_token=bool(env.get("METRICS_TOKEN")),
    )
    finished = threading.Event()
    threading.Thread(target=print_when_serving, args=(port, text, finished), name="banner", daemon=True).start()
    try:
        manager.loop()  # returns once every process has stopped
    finally:
        finished.set()
        shutil.rmtree(pid_dir, ignore_errors=True)
    return manager.returncode if manager.returncode is not None else 1


def cmd_test(pytest_args: Sequence[str]) -> int:
    """Run pytest with an embedded Redis unless REDIS_URL is set; return pytest's exit code.

    pytest stays in this process group so a Ctrl-C reaches it directly and it
    tears its fixtures down; this process ignores SIGINT meanwhile and stops
    Redis once pytest has finished.
    """
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "1")
    with tempfile.TemporaryDirectory(prefix="dev-test-redis-") as redis_dir:
        redis: processes.Child | None = None
        try:
            if not env.get("REDIS_URL"):
                redis = processes.start_redis(Path(redis_dir))
                env["REDIS_URL"] = redis.url or ""
                print(f"dev.py: embedded Redis for this run at {redis.url}", file=sys.stderr, flush=True)
            # Started before SIGINT is ignored here: an ignored signal stays
            # ignored across exec, and pytest must get the Ctrl-C.
            pytest = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, lambda signum, frame: pytest.send_signal(signum))
            returncode = pytest.wait()
            return returncode if returncode >= 0 else 128 - returncode
        finally:
            if redis is not None:
                redis.stop()


def docs_command(port: int) -> list[str]:
    """The ``mkdocs serve`` command line of ``dev.py docs``, on 127.0.0.1:``port``."""
    return [
        sys.executable, "-m", "mkdocs", "serve",
        "--config-file", str(MKDOCS_CONFIG), "--dev-addr", f"127.0.0.1:{port}",
    ]


def cmd_docs() -> NoReturn:
    """Become ``mkdocs serve`` (so signals reach it directly), after checking the port."""
    raw_port = os.environ.get("DOCS_PORT") or str(DEFAULT_DOCS_PORT)
    if not raw_port.isdigit():
        raise LaunchError(f"DOCS_PORT must be a number, got {raw_port!r}")
    port = int(raw_port)
    if not processes.port_is_free(port):
        raise LaunchError(f"Port {port} on 127.0.0.1 is already in use. Choose another with DOCS_PORT=....")
    env = dict(os.environ)
    # Material's notice about MkDocs 2.0 on every start; the lock pins MkDocs 1.x.
    env.setdefault("NO_MKDOCS_2_WARNING", "1")
    print(f"dev.py: the manual at http://127.0.0.1:{port}/ (rebuilt on every save; Ctrl-C stops it)", flush=True)
    os.chdir(ROOT)
    os.execve(sys.executable, docs_command(port), env)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``run`` / ``test`` / ``docs``.

    Arguments after ``test`` go to pytest untouched, so no option parser here
    may claim them (``dev.py test --help`` shows pytest's help).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if command == "test":
            return cmd_test(rest)
        if command == "run" and not rest:
            return cmd_run()
        if command == "docs" and not rest:
            return cmd_docs()
    except (LaunchError, processes.ChildError) as exc:
        print(f"dev.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndev.py: interrupted.", file=sys.stderr)
        return 130
    print(USAGE, file=sys.stderr)
    return 0 if command in {"-h", "--help", "help"} else 2


if __name__ == "__main__":
    sys.exit(main())
