"""Environment variables named after their settings; the renamed ones still read for one release.

``config.settings.env`` reads a variable; for a renamed one set only under its
old name, it converts the old unit and warns (``DeprecationWarning``) naming
the new variable. The last test starts a process to see the warning in its output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import settings as project

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def warnings_recorded() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        yield recorded


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for new, (old, _) in project.RENAMED_ENV.items():
        monkeypatch.delenv(new, raising=False)
        monkeypatch.delenv(old, raising=False)


def test_the_new_name_is_read_as_it_is_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGRESS_COALESCE_SECONDS", "0.02")
    with warnings_recorded() as recorded:
        assert project.env_float("PROGRESS_COALESCE_SECONDS", 0.1) == 0.02
    assert recorded == []


def test_the_old_name_alone_is_converted_to_the_new_unit_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGRESS_COALESCE_MS", "20")
    with pytest.warns(DeprecationWarning, match="PROGRESS_COALESCE_MS is deprecated: set PROGRESS_COALESCE_SECONDS"):
        assert project.env_float("PROGRESS_COALESCE_SECONDS", 0.1) == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("old", "value", "read", "expected"),
    [
        ("PROGRESS_WS_RESYNC_SECONDS", "0.5", lambda: project.env_float("PROGRESS_RECHECK_SECONDS", 4), 0.5),
        ("PROGRESS_FEED_INTERVAL_MS", "500", lambda: project.env_float("PROGRESS_FEED_INTERVAL_SECONDS", 0.25), 0.5),
        ("PROGRESS_CANCEL_POLL_MS", "500", lambda: project.env_float("PROGRESS_CANCEL_POLL_SECONDS", 0.1), 0.5),
        ("DJANGO_MAX_BODY_BYTES", "1024", lambda: project.env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 0), 1024),
        ("DJANGO_HSTS_SECONDS", "60", lambda: project.env_int("DJANGO_SECURE_HSTS_SECONDS", 0), 60),
        ("DJANGO_HSTS_PRELOAD", "on", lambda: project.env_bool("DJANGO_SECURE_HSTS_PRELOAD"), True),
        (
            "DJANGO_HSTS_INCLUDE_SUBDOMAINS",
            "yes",
            lambda: project.env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS"),
            True,
        ),
    ],
)
def test_every_old_name_still_sets_its_setting(
    monkeypatch: pytest.MonkeyPatch, old: str, value: str, read: Callable[[], Any], expected: Any
) -> None:
    monkeypatch.setenv(old, value)
    with pytest.warns(DeprecationWarning, match=old):
        assert read() == pytest.approx(expected)


def test_when_both_are_set_the_new_name_wins_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGRESS_FEED_INTERVAL_MS", "1000")
    monkeypatch.setenv("PROGRESS_FEED_INTERVAL_SECONDS", "0.5")
    with warnings_recorded() as recorded:
        assert project.env_float("PROGRESS_FEED_INTERVAL_SECONDS", 0.25) == 0.5
    assert recorded == []


def test_neither_set_gives_the_default() -> None:
    assert project.env_float("PROGRESS_FEED_INTERVAL_SECONDS", 0.25) == 0.25


@pytest.mark.parametrize(("name", "value"), [("PROGRESS_COALESCE_MS", "fast"), ("PROGRESS_COALESCE_SECONDS", "1s")])
def test_a_bad_value_fails_naming_the_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=f"{name} must be a number"):
        project.env_float("PROGRESS_COALESCE_SECONDS", 0.1)


def test_a_process_started_with_an_old_name_says_so_in_its_output() -> None:
    env = {key: value for key, value in os.environ.items() if key not in project.RENAMED_ENV}
    env.update(DJANGO_DEBUG="1", PROGRESS_COALESCE_MS="50", DJANGO_SETTINGS_MODULE="config.settings")
    code = "import django; django.setup(); from django.conf import settings; print(settings.PROGRESS_COALESCE_SECONDS)"
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(0.05)
    assert "DeprecationWarning: The environment variable PROGRESS_COALESCE_MS is deprecated" in result.stderr
    assert "set PROGRESS_COALESCE_SECONDS (in seconds, not milliseconds) instead" in result.stderr
