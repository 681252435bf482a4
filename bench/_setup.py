"""Shared set-up of the benchmarks: a throw-away SQLite database, Redis, Django.

Importing this module sets Django up (:data:`BENCH`): it points the settings
at a temporary SQLite file and a Redis (the embedded one, see
``devtools.processes``, unless ``REDIS_URL`` is set), calls
``django.setup()`` and migrates. That Redis is stopped at exit, and the
directory is removed. A benchmark imports it first, then the models at the top
of the module like any other code (isort keeps ``bench`` first among our
packages); the cost is that even ``--help`` waits for the set-up.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from devtools import processes


@dataclass
class BenchEnv:
    """Where the benchmark's database, Redis and logs are."""

    work_dir: Path
    sqlite_path: Path
    redis_url: str
    redis: processes.Child | None


def _prepare_django(prefix: str) -> BenchEnv:
    """Temp SQLite + Redis + ``django.setup()`` + ``migrate``."""
    work_dir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    # Registered first, so it runs last: after Redis has been stopped.
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    sqlite_path = work_dir / "bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Debug off, as in production: with it on, every query goes through Django's
    # CursorDebugWrapper, about a fifth of event_record's time (py-spy).
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")  # the servers it starts are plain HTTP
    os.environ.pop("DATABASE_URL", None)  # settings would prefer it over SQLITE_PATH
    os.environ["SQLITE_PATH"] = str(sqlite_path)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    redis: processes.Child | None = None
    if not os.environ.get("REDIS_URL"):
        redis = processes.start_redis(work_dir / "redis")
        atexit.register(redis.stop)
        os.environ["REDIS_URL"] = redis.url or ""
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return BenchEnv(work_dir=work_dir, sqlite_path=sqlite_path, redis_url=os.environ["REDIS_URL"], redis=redis)


#: Where this benchmark's database, Redis and logs are; set up at import (the module docstring).
BENCH = _prepare_django(Path(sys.argv[0]).stem or "python")


def create_user_with_token() -> tuple[Any, str]:
    # The model by name: importing it above the set-up would fail (apps not loaded).
    token_model = apps.get_model("authtoken", "Token")
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex)
    return user, token_model.objects.create(user=user).key


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def describe_ms(values_s: list[float]) -> str:
    """p50 / p99 / max / mean of durations given in seconds, printed in milliseconds."""
    if not values_s:
        return "(no samples)"
    ms = [v * 1000 for v in values_s]
    return (
        f"p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
        f"max {max(ms):.2f} ms, mean {statistics.fmean(ms):.2f} ms"
    )


def start_servers(bench: BenchEnv = BENCH, *, concurrency: int = 2) -> processes.AppServers:
    """daphne (free port) and a prefork Celery worker on the benchmark's database."""
    env = dict(os.environ)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    env.setdefault("LOG_LEVEL", "WARNING")
    servers = processes.AppServers(env, processes.free_port(), bench.work_dir / "log", concurrency=concurrency)
    servers.start()
    return servers
