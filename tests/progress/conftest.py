"""Fixtures for the WebSocket consumer tests.

The consumer reads the database from another thread (``database_sync_to_async``),
so everything a test creates must be committed: every fixture here builds on
``transactional_db``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from executions.models import Execution


def _new_user(django_user_model: Any, **extra: Any) -> Any:
    # No password: hashing one costs a noticeable fraction of a second per user,
    # and these users authenticate by token or by a forced session login.
    return django_user_model.objects.create_user(username=f"ws-{uuid.uuid4().hex[:10]}", password=None, **extra)


@pytest.fixture
def user(transactional_db: None, django_user_model: Any) -> Any:
    return _new_user(django_user_model)


@pytest.fixture
def other_user(transactional_db: None, django_user_model: Any) -> Any:
    return _new_user(django_user_model)


@pytest.fixture
def staff_user(transactional_db: None, django_user_model: Any) -> Any:
    return _new_user(django_user_model, is_staff=True)


@pytest.fixture
def token(user: Any) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def session_cookie(user: Any) -> str:
    """A ``sessionid=...`` cookie of a logged-in session of ``user``."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.fixture
def new_execution(user: Any) -> Callable[..., Execution]:
    """Create a pending ``demo_steps`` execution; nothing is queued (no worker here)."""

    def make(owner: Any = None, steps: int = 3) -> Execution:
        return Execution.objects.create(
            owner=owner or user,
            type="pipeline",
            target_id="demo_steps",
            inputs={"steps": steps, "step_seconds": 0, "fail_at_step": None},
            config={},
        )

    return make
