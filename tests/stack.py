"""The real stack for end-to-end tests, as processes: ``manage.py serve`` and a Celery worker.

``live_stack`` (tests/conftest.py) runs them as child processes against the
same test database as the test process (a SQLite file, see tests/settings.py,
or the PostgreSQL test database), with the same settings module and the same Redis. Tests talk
to it over HTTP and WebSockets like any client; data they create must be
committed to be visible to the servers, hence ``transactional_db`` rather
than ``db`` (see ``api_user``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from channels.layers import channel_layers
from django.conf import settings
from django.db import connections

from config.celery import app
from devtools import processes
from devtools.launcher import fresh_metrics_dir

#: ``manage.py serve`` (two daphne processes on one port) and a Celery worker serving
#: the test database (see ``devtools.processes``).
LiveStack = processes.AppServers
#: What a test sends as ``Authorization: Bearer ...`` to scrape the stack's /metrics.
METRICS_TOKEN = "live-stack-metrics-token"


def child_database_env(env: dict[str, str]) -> None:
    """Point the children at the test database this process created.

    Read after ``django_db_setup``: Django then holds the test database's real
    name in the connection settings (a SQLite file path, or e.g.
    ``test_<name>`` for PostgreSQL, with any xdist suffix), whatever produced it.
    """
    settings_dict = connections["default"].settings_dict
    name = str(settings_dict["NAME"])
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        env.pop("DATABASE_URL", None)  # settings would prefer it over SQLITE_PATH
        env["SQLITE_PATH"] = name
        return
    url = env.get("DATABASE_URL")
    if not url:
        raise RuntimeError("live_stack needs DATABASE_URL for a non-SQLite database")
    parts = urlsplit(url)
    env["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + quote(name)))


def point_settings_at_redis(url: str) -> None:
    """Make this process's channel layer and Celery broker use the Redis at ``url``."""
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [url]
    channel_layers.backends.clear()
    if not os.environ.get("CELERY_BROKER_URL"):
        settings.CELERY_BROKER_URL = url
        app.conf.broker_url = url


def stack_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """The servers' environment: this process's, on the test database and ``redis_url``."""
    env = dict(os.environ)
    env["DJANGO_DEBUG"] = "1"
    # The test run's settings (fast password hashing, no throttles), so that
    # the servers verify the passwords the tests stored.
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["REDIS_URL"] = redis_url
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)  # the point is a real worker
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests while Chromium runs
    env["METRICS_TOKEN"] = METRICS_TOKEN
    child_database_env(env)
    env.update(overrides)
    return env


@contextmanager
def running_stack(env: dict[str, str], log_dir: Path) -> Iterator[LiveStack]:
    """The server (free port, two daphne processes) and a worker, stopped on exit; logs in ``log_dir``.

    Their metrics are shared through prometheus-client's multiprocess mode, in
    a fresh directory beside the logs (unless ``env`` names one): a scrape of
    the server then counts what the worker did, as in a deployment.
    """
    metrics_dir = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or log_dir / "prometheus")
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(metrics_dir))}
    stack = LiveStack(env, processes.free_port(), log_dir)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
