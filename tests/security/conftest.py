"""Fixtures of the security tests: nothing reaches the Celery broker, the per-user
throttles are off (the matrix cancels and submits many times), WebSockets use the
in-memory channel layer, and passwords hash fast (the token endpoint needs real ones)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import PASSWORD


@pytest.fixture(autouse=True)
def _no_broker(task_queue: Any) -> Any:
    return task_queue


@pytest.fixture(autouse=True)
def _no_throttles(settings: Any) -> None:
    settings.EXECUTION_THROTTLE_RATES = {"submit": None, "cancel": None}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def superuser(db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", email="root@example.com", password=PASSWORD)
