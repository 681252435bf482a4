"""Shared fixtures: users, token-authenticated API clients, executions in a state,
and the real stack (``redis_url``, ``live_stack``, ``api_user``; see tests/stack.py).

``make_execution`` never talks to the Celery broker: it depends on
``task_queue``, which records what ``execution_create`` would have queued.
"""

from __future__ import annotations

import gc
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from devtools import processes
from executions.models import Execution

from . import stack as stack_module
from .helpers import PASSWORD, create_execution, token_client


@pytest.fixture
def alice(db: None) -> Any:
    return get_user_model().objects.create_user("alice", email="alice@example.com", password=PASSWORD)


@pytest.fixture
def bob(db: None) -> Any:
    return get_user_model().objects.create_user("bob", email="bob@example.com", password=PASSWORD)


@pytest.fixture
def staff(db: None) -> Any:
    return get_user_model().objects.create_user(
        "staff", email="staff@example.com", password=PASSWORD, is_staff=True
    )


@pytest.fixture
def superuser(db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", email="root@example.com", password=PASSWORD)


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


@dataclass
class TaskQueue:
    """What was handed to Celery's ``run_execution``, in order (nothing reaches the broker)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def execution_ids(self) -> list[str]:
        return [call["args"][0] for call in self.calls]


@pytest.fixture
def task_queue(monkeypatch: pytest.MonkeyPatch) -> TaskQueue:
    from executions.tasks import run_execution

    queue = TaskQueue()

    def apply_async(args: Any = None, kwargs: Any = None, **options: Any) -> None:
        queue.calls.append({"args": list(args or []), "kwargs": kwargs or {}, **options})

    monkeypatch.setattr(run_execution, "apply_async", apply_async)
    return queue


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
