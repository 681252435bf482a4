"""Repository-wide pytest setup: a file-based SQLite test database.

End-to-end tests run daphne and a Celery worker as separate processes against
the test database, which therefore has to be a file, not Django's default
in-memory SQLite. ``config/settings.py`` takes the test database name from
``SQLITE_TEST_PATH``; this sets it to a file in a fresh temporary directory
(unless it is set already, or the database is not SQLite).

Timing: pytest-django imports the settings in its ``pytest_load_initial_conftests``
hook, which runs before any conftest.py is even imported, so the environment
variable alone comes too late for this process. The test database name is
therefore also written into the already loaded ``settings.DATABASES`` -- the
very dict Django's connection objects hold -- before any fixture creates the
database. The variable still matters for settings imported later, e.g. when
DJANGO_SETTINGS_MODULE is not configured up front.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

import pytest

SQLITE_ENGINE = "django.db.backends.sqlite3"
_tmp_dir_key = pytest.StashKey[str]()


def _loaded_settings() -> Any | None:
    if "django.conf" not in sys.modules:
        return None
    from django.conf import settings

    return settings if settings.configured else None


def _new_test_db_path(config: pytest.Config) -> str:
    tmp_dir = tempfile.mkdtemp(prefix="pytest-testdb-")
    config.stash[_tmp_dir_key] = tmp_dir
    return os.path.join(tmp_dir, "test.sqlite3")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Point the SQLite test database at a file before any database fixture runs."""
    settings = _loaded_settings()
    if settings is None:
        if not os.environ.get("DATABASE_URL") and not os.environ.get("SQLITE_TEST_PATH"):
            os.environ["SQLITE_TEST_PATH"] = _new_test_db_path(config)
        return
    db = settings.DATABASES["default"]
    if db["ENGINE"] != SQLITE_ENGINE:
        return  # e.g. PostgreSQL: other processes see its test database anyway
    test = db.get("TEST") or {}
    path = os.environ.get("SQLITE_TEST_PATH") or test.get("NAME") or _new_test_db_path(config)
    os.environ["SQLITE_TEST_PATH"] = path
    test["NAME"] = path
    db["TEST"] = test


def pytest_unconfigure(config: pytest.Config) -> None:
    tmp_dir = config.stash.get(_tmp_dir_key, None)
    if tmp_dir:
        shutil.rmtree(tmp_dir, ignore_errors=True)
