"""Settings of the test run, and of the servers the live tests start.

``DJANGO_SETTINGS_MODULE`` for pytest (pytest.ini) and for the daphne and
Celery worker of the live stack (``tests/stack.py``): the project's settings,
read from the environment as in production, then what the tests need. A test
that needs another value for itself changes it with pytest-django's
``settings`` fixture.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from config.settings import *  # noqa: F403 - the settings under test; the overrides follow
from config.settings import DATABASES, EXECUTION_THROTTLE_RATES

# Passwords hash fast: PBKDF2 costs about half a second per user created. The
# live servers use these settings too, so they verify what the tests stored.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The throttles are off unless the environment sets a rate (THROTTLE_*_RATE, as
# for a deployment) or a test turns one on: their counters are shared by every
# test of the run, and by the live servers.
EXECUTION_THROTTLE_RATES = {
    scope: os.environ.get(f"THROTTLE_{scope.upper()}_RATE") or None for scope in EXECUTION_THROTTLE_RATES
}

# SQLite's test database is a file, not Django's in-memory default: the live
# servers are other processes and must see it (they are pointed at it by
# SQLITE_PATH, see tests/stack.py). One per test run; tests/conftest.py makes
# its directory and removes it at the end. SQLITE_TEST_PATH names another file
# (kept afterwards). PostgreSQL's test database is visible to every process anyway.
TEST_DB_DIR = Path(tempfile.gettempdir()) / f"executions-tests-{os.getpid()}"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("SQLITE_TEST_PATH") or str(TEST_DB_DIR / "test.sqlite3")}

# The browser tests' plain page with the drop-in progress widget: a test-only app (its
# template) and its route in front of the project's (tests/widget_site/).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.widget_site"]  # noqa: F405 - from config.settings above
ROOT_URLCONF = "tests.widget_site.urls"

# A draining server process gets at most this long before serve kills it: below the
# 10 s the test harness gives a whole server to stop (devtools/processes.py).
SERVE_GRACE_SECONDS = min(SERVE_GRACE_SECONDS, 8.0)  # noqa: F405 - from config.settings above
