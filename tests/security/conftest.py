"""Fixtures of the security tests: nothing reaches the Celery broker, the per-user
throttles are off (the matrix cancels and submits many times), WebSockets use the
in-memory channel layer, and passwords hash fast (the token endpoint needs real ones)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.offline import offline  # noqa: F401 - an autouse fixture


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
