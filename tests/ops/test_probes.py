"""``/healthz``, ``/health`` and ``/readyz`` in this process (Django's test client)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from devtools import processes
from executions.maintenance import worker_beat
from executions.models import WorkerBeat
from executions.ops import probes, views


@pytest.fixture
def worker_alive(db: None) -> None:
    worker_beat(hostname="worker@test", pid=1234, started_at=timezone.now())


@pytest.fixture
def reachable_redis(redis_url: str, settings: Any) -> str:
    settings.REDIS_URL = redis_url
    settings.CELERY_BROKER_URL = redis_url
    return redis_url


@pytest.mark.parametrize("path", ["/healthz", "/healthz/", "/health", "/health/"])
def test_health_answers_200_to_anyone_without_touching_anything(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "pass"}
    assert "no-cache" in response["Cache-Control"]


def test_health_answers_even_when_the_database_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "connection", BrokenConnection())
    assert Client().get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/readyz", "/readyz/"])
def test_ready_with_database_redis_and_a_live_worker(path: str, worker_alive: None, reachable_redis: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "pass", "checks": {"database": "pass", "redis": "pass", "workers": "pass"}}


def test_a_draining_process_is_not_ready_at_once_without_running_the_checks(
    draining_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_checks() -> dict[str, bool]:
        raise AssertionError("a draining process answers without running the checks")

    monkeypatch.setattr(views, "readiness", no_checks)
    draining_process()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "checks": {"draining": "fail"}}
    assert Client().get("/healthz").status_code == 200  # alive, only not taking new work


def test_not_ready_when_the_last_worker_beat_is_older_than_the_heartbeat_window(
    worker_alive: None, reachable_redis: str, settings: Any
) -> None:
    old = timezone.now() - timedelta(seconds=settings.EXECUTION_HEARTBEAT_TIMEOUT_SECONDS + 1)
    WorkerBeat.objects.update(last_seen_at=old)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "checks": {"database": "pass", "redis": "pass", "workers": "fail"}}


def test_not_ready_when_no_worker_ever_beat(db: None, reachable_redis: str) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"] == "fail"


def test_not_ready_when_redis_is_unreachable_and_the_body_says_only_that(worker_alive: None, settings: Any) -> None:
    closed = f"redis://127.0.0.1:{processes.free_port()}/0"
    settings.REDIS_URL = closed
    settings.CELERY_BROKER_URL = closed
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "checks": {"database": "pass", "redis": "fail", "workers": "pass"}}


def test_a_broker_on_another_redis_is_checked_too(worker_alive: None, reachable_redis: str, settings: Any) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{processes.free_port()}/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "fail"


class BrokenConnection:
    """Stands in for ``django.db.connection`` when the database is down."""

    def cursor(self) -> Any:
        raise ConnectionRefusedError("database is down")


def test_not_ready_when_the_database_fails_never_a_500(
    worker_alive: None, reachable_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probes, "connection", BrokenConnection())
    response = Client(raise_request_exception=False).get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "fail"
    assert "database is down" not in response.content.decode()


def test_probes_need_no_login_and_are_not_throttled(worker_alive: None, reachable_redis: str, settings: Any) -> None:
    settings.EXECUTION_THROTTLE_RATES = {"submit": "1/min", "cancel": "1/min", "token": "1/min", "login": "1/min"}
    client = Client()
    assert [client.get("/readyz").status_code for _ in range(5)] == [200] * 5
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5


def test_probes_only_serve_reads(db: None) -> None:
    assert Client().post("/readyz").status_code == 405
    assert Client().post("/healthz").status_code == 405
