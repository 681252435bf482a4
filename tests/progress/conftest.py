"""Fixtures for the WebSocket consumer tests.

The consumer reads the database from another thread (``database_sync_to_async``),
so everything a test creates must be committed: every fixture here builds on
``transactional_db``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from executions.models import Execution
from tests.helpers import create_execution, make_user, session_cookie, user_token


@pytest.fixture
def user(transactional_db: None) -> Any:
    return make_user()


@pytest.fixture
def other_user(transactional_db: None) -> Any:
    return make_user()


@pytest.fixture
def staff_user(transactional_db: None) -> Any:
    return make_user(staff=True)


@pytest.fixture
def token(user: Any) -> str:
    return user_token(user)


@pytest.fixture(name="session_cookie")
def user_session_cookie(user: Any) -> str:
    """A ``sessionid=...`` cookie of a logged-in session of ``user``."""
    return session_cookie(user)


@pytest.fixture
def new_execution(user: Any) -> Callable[..., Execution]:
    """Create a pending ``demo_steps`` execution through the services; nothing is queued (no worker here)."""

    def make(owner: Any = None, steps: int = 3) -> Execution:
        return create_execution(owner or user, inputs={"steps": steps, "step_seconds": 0})

    return make
