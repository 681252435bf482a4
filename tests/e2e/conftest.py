"""Fixtures for end-to-end tests: the real stack, as processes.

``live_stack`` runs daphne and a Celery worker as child processes against the
same test database as the test process (a SQLite file, see the root
conftest.py, or the PostgreSQL test database) and the same Redis. Tests talk
to it over HTTP and WebSockets like any client; data they create must be
committed to be visible to the servers, hence ``transactional_db`` rather
than ``db`` (see ``api_user``).

Every test in this directory is marked ``e2e``, so ``-m "not e2e"`` skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from config import devstack

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


class LiveStack:
    """daphne and a Celery worker serving the test database.

    ``restart_daphne()`` stops daphne and starts it again on the same port (and
    the same log file, appended), for tests of what a client sees across a
    server restart.
    """

    def __init__(self, env: dict[str, str], port: int, log_dir: Path) -> None:
        self.env = env
        self.port = port
        self.log_dir = log_dir
        self.daphne: devstack.Service | None = None
        self.worker: devstack.Service | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.daphne = devstack.start_daphne(self.env, self.port, log_path=self.log_dir / "daphne.log")
        self.worker = devstack.start_worker(self.env, log_path=self.log_dir / "worker.log")

    def restart_daphne(self) -> devstack.Service:
        """Stop daphne (SIGTERM, as in a deploy) and start it again on the same port."""
        if self.daphne is not None:
            self.daphne.stop()
        self.daphne = devstack.start_daphne(
            self.env, self.port, log_path=self.log_dir / "daphne.log", truncate_log=False
        )
        return self.daphne

    def stop(self) -> None:
        # Worker first: a task still running when the session ends is given
        # its warm shutdown while daphne and Redis are still up.
        for service in (self.worker, self.daphne):
            if service is not None:
                service.stop()


def _child_database_env(env: dict[str, str]) -> None:
    """Point the children at the test database this process created.

    Read after ``django_db_setup``: Django then holds the test database's real
    name in the connection settings (a SQLite file path, or e.g.
    ``test_<name>`` for PostgreSQL, with any xdist suffix), whatever produced it.
    """
    from django.db import connections

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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis the test process uses; started here if REDIS_URL is unset.

    ``dev.py test`` starts one and sets REDIS_URL before pytest imports the
    settings. For a bare ``pytest`` run without it, an embedded server is
    started and the already loaded settings (channel layer, Celery broker) are
    pointed at it, so this process and the servers share the same Redis.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="e2e-redis-") as data_dir:
        service = devstack.start_redis(Path(data_dir))
        url = service.url or ""
        _point_settings_at_redis(url)
        try:
            yield url
        finally:
            service.stop()


def _point_settings_at_redis(url: str) -> None:
    from channels.layers import channel_layers
    from django.conf import settings

    from config.celery import app

    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [url]
    channel_layers.backends.clear()
    if not os.environ.get("CELERY_BROKER_URL"):
        settings.CELERY_BROKER_URL = url
        app.conf.broker_url = url


@pytest.fixture(scope="session")
def live_stack(
    django_db_setup: None,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveStack]:
    """daphne (free port) and a Celery worker on the test database, for the whole session.

    Logs go to pytest's temporary directory (kept for the last few runs) and
    are quoted in the error when a server fails to start.
    """
    env = dict(os.environ)
    env["DJANGO_DEBUG"] = "1"
    env["REDIS_URL"] = redis_url
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)  # the point is a real worker
    _child_database_env(env)
    stack = LiveStack(env, devstack.free_port(), tmp_path_factory.mktemp("e2e-logs"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def api_user(transactional_db: None, django_user_model: Any) -> tuple[Any, str]:
    """A fresh committed user and its DRF token key, usable by the live servers.

    ``transactional_db`` commits for real (and flushes the tables after the
    test), which is what makes the user visible to daphne and the worker.
    """
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user(
        username=f"e2e-{uuid.uuid4().hex[:12]}", password=uuid.uuid4().hex
    )
    token = Token.objects.create(user=user)
    return user, token.key
