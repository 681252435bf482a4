"""Nothing here reaches the Celery broker (submits are recorded instead), and the
per-user submit/cancel throttles are off unless a test turns them on."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_broker(task_queue: Any) -> Any:
    return task_queue


@pytest.fixture(autouse=True)
def _no_throttles(settings: Any) -> None:
    settings.EXECUTION_THROTTLE_RATES = {"submit": None, "cancel": None}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The default PBKDF2 costs about half a second per user created.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
