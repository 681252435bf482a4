"""Shared fixtures: users, token-authenticated API clients, executions in a state.

``make_execution`` never talks to the Celery broker: it depends on
``task_queue``, which records what ``execution_create`` would have queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from executions.models import Execution

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
