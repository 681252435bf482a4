"""One autouse fixture for the packages whose tests run in this process only
(``tests/executions``, ``tests/pages``, ``tests/security``): import it into the
package's conftest.py to opt in.

Nothing reaches the Celery broker (submits are recorded by ``task_queue``),
the submit/cancel/token throttles are off unless a test turns one on, and
passwords hash fast (PBKDF2 costs about half a second per user created).
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def offline(task_queue: Any, settings: Any) -> Any:
    settings.EXECUTION_THROTTLE_RATES = {"submit": None, "cancel": None, "token": None}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return task_queue
