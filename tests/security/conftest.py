"""Fixtures of the security tests: WebSockets use the in-memory channel layer.

As for every fast test, nothing reaches the Celery broker and the throttles are
off (the matrix cancels and submits many times; see tests/conftest.py and
tests/settings.py).
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
