"""Shared fixtures, and the one place that sorts the tests into fast and live.

* Fast tests run in this process (Django's test client, Channels'
  communicator, the services) against the test database and Redis. Nothing
  they do reaches the Celery broker: ``task_queue`` records what would have
  been queued, for every one of them.
* Live tests (marker ``live``) drive the real stack as processes: daphne and a
  Celery worker (``live_stack``, see tests/stack.py), and a browser for the
  ``browser`` ones. A test is live when it lives in one of ``LIVE_DIRS`` or
  uses one of ``LIVE_FIXTURES``. ``-m "not live"`` runs the fast ones only.
  ``e2e`` is the older name of ``live``, kept on the same tests.

Users, clients and executions come from ``tests.helpers`` (the one source of
each); the fixtures here only name them.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from core.serving import drain
from devtools import processes
from executions.models import Execution
from executions.tasks import run_execution

from . import stack as stack_module
from .helpers import create_execution, make_user, settle_executions, token_client, user_token

TESTS_DIR = Path(__file__).resolve().parent
#: Directories of tests/ whose every test is live (faults: the fault-injection
#: tests of the faults branch, which kill and restart the stack's processes).
LIVE_DIRS = ("browser", "e2e", "faults", "fuzz")
#: Fixtures that start or need the real stack: a test using one is live wherever it is.
LIVE_FIXTURES = frozenset({"live_stack", "fuzz_stack", "chromium", "examples_stack"})


def is_live(item: pytest.Item) -> bool:
    parts = Path(item.path).resolve().relative_to(TESTS_DIR).parts
    return parts[0] in LIVE_DIRS or bool(LIVE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if TESTS_DIR not in Path(item.path).resolve().parents:
            continue
        if is_live(item):
            item.add_marker(pytest.mark.live)
            item.add_marker(pytest.mark.e2e)
        if Path(item.path).resolve().is_relative_to(TESTS_DIR / "browser"):
            item.add_marker(pytest.mark.browser)


def pytest_configure(config: pytest.Config) -> None:
    """Make the directory of the SQLite test database (its name is in tests/settings.py)."""
    settings.TEST_DB_DIR.mkdir(parents=True, exist_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(settings.TEST_DB_DIR, ignore_errors=True)


@dataclass
class TaskQueue:
    """What was handed to Celery's ``run_execution``, in order (nothing reaches the broker)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def execution_ids(self) -> list[str]:
        return [call["args"][0] for call in self.calls]


@pytest.fixture
def task_queue(monkeypatch: pytest.MonkeyPatch) -> TaskQueue:
    queue = TaskQueue()

    def apply_async(args: Any = None, kwargs: Any = None, **options: Any) -> None:
        queue.calls.append({"args": list(args or []), "kwargs": kwargs or {}, **options})

    monkeypatch.setattr(run_execution, "apply_async", apply_async)
    return queue


@pytest.fixture(autouse=True)
def _fast_tests_stay_off_the_broker(request: pytest.FixtureRequest) -> None:
    """A fast test's submits are recorded by ``task_queue``, never queued: a live
    worker of the same run (same Redis) would otherwise run them."""
    if request.node.get_closest_marker("live") is None:
        request.getfixturevalue("task_queue")


@pytest.fixture
def draining_process() -> Iterator[Callable[[], list[Callable[[], None]]]]:
    """Call it to begin this process's drain (``core.serving.drain.begin``: the ends of
    the open streams come back); the drain is forgotten after the test."""
    yield drain.begin
    drain.reset()


@pytest.fixture
def alice(db: None) -> Any:
    return make_user("alice", email="alice@example.com")


@pytest.fixture
def bob(db: None) -> Any:
    return make_user("bob", email="bob@example.com")


@pytest.fixture
def staff(db: None) -> Any:
    return make_user("staff", email="staff@example.com", staff=True)


@pytest.fixture
def superuser(db: None) -> Any:
    return make_user("root", email="root@example.com", superuser=True)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def alice_client(alice: Any) -> APIClient:
    return token_client(alice)


@pytest.fixture
def bob_client(bob: Any) -> APIClient:
    return token_client(bob)


@pytest.fixture
def staff_client(staff: Any) -> APIClient:
    return token_client(staff)


@pytest.fixture
def make_execution(db: None, task_queue: TaskQueue) -> Callable[..., Execution]:
    """``make_execution(owner, status="pending", **options)``; see ``helpers.create_execution``."""
    return create_execution


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, which must also be dropped cleanly on PostgreSQL.

    A thread that used the database and ended (the consumer's reads in tests,
    a test's writer threads) leaves its connection open until the garbage
    collector frees it, and PostgreSQL refuses to drop a database that has
    sessions: the test database stayed behind with a warning. Once everything
    using it is gone (the live servers are stopped before this runs), collect
    the garbage and end any session still open, then pytest-django drops it.
    """
    yield
    gc.collect()
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()


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
    with tempfile.TemporaryDirectory(prefix="e2e-redis-") as data_dir:
        redis = processes.start_redis(Path(data_dir))
        url = redis.url or ""
        stack_module.point_settings_at_redis(url)
        try:
            yield url
        finally:
            redis.stop()


@pytest.fixture(scope="session")
def live_stack(
    django_db_setup: None,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[stack_module.LiveStack]:
    """daphne (free port) and a Celery worker on the test database, for the whole session.

    Logs go to pytest's temporary directory (kept for the last few runs) and
    are quoted in the error when a server fails to start.
    """
    env = stack_module.stack_env(redis_url)
    with stack_module.running_stack(env, tmp_path_factory.mktemp("e2e-logs")) as stack:
        yield stack


@pytest.fixture
def api_user(transactional_db: None) -> Iterator[tuple[Any, str]]:
    """A fresh committed user and its DRF token key, usable by the live servers.

    ``transactional_db`` commits for real (and flushes the tables after the
    test), which is what makes the user visible to daphne and the worker. Runs
    the test left going are ended first (``settle_executions``).
    """
    user = make_user()
    yield user, user_token(user)
    settle_executions()
