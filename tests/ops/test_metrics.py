"""``/metrics``: who may read it, what it says, and the sites that move each metric.

In this process ``PROMETHEUS_MULTIPROC_DIR`` is unset, so the values are this
process's registry; the multiprocess sum is proven on the real stack (test_live.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from devtools import processes
from executions import webhooks
from executions.events import event_record
from executions.frames import iso
from executions.maintenance import (
    executions_fail_lost,
    executions_fail_on_shutdown,
    executions_prune,
    executions_requeue_lost,
)
from executions.models import EventType, Execution
from executions.services import execution_create
from progress import broadcast, protocol

TOKEN = "metrics-scraper-token-for-tests"


def sample(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 while the series does not exist)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: value by (sample name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


@pytest.fixture
def metrics_token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def session_client(user: Any) -> Client:
    """A browser-like client logged in as ``user`` (a session cookie, no token)."""
    client = Client()
    client.force_login(user)
    return client


# --- who may scrape ---------------------------------------------------------------------


def test_anonymous_gets_401_with_a_bearer_challenge(db: None, metrics_token: str) -> None:
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication required"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_logged_in_user_who_is_not_staff_gets_403(alice: Any) -> None:
    response = session_client(alice).get("/metrics")
    assert response.status_code == 403
    assert response.json() == {"detail": "Staff only"}


def test_staff_with_a_session_may_scrape(staff: Any) -> None:
    response = session_client(staff).get("/metrics")
    assert response.status_code == 200
    assert b"# TYPE executions_stored gauge" in response.content


def test_the_bearer_token_may_scrape(db: None, metrics_token: str) -> None:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert b"executions_sweeper_actions_total" in response.content


@pytest.mark.parametrize("header", ["Bearer wrong", f"Bearer {TOKEN}x", "Bearer ", f"bearer {TOKEN[:-1]}"])
def test_a_wrong_bearer_token_gets_401(db: None, metrics_token: str, header: str) -> None:
    response = Client().get("/metrics", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid metrics token"}


def test_a_wrong_bearer_token_is_refused_even_with_a_staff_session(staff: Any, metrics_token: str) -> None:
    response = session_client(staff).get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


def test_without_metrics_token_no_bearer_token_is_accepted(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    for header in ("Bearer ", "Bearer x"):
        assert Client().get("/metrics", headers={"Authorization": header}).status_code == 401


def test_an_api_token_is_not_a_metrics_token(staff_client: Any, metrics_token: str) -> None:
    # staff_client (tests/conftest.py) authenticates with a DRF token, which /metrics ignores.
    response = staff_client.get("/metrics")
    assert response.status_code == 401


def test_openmetrics_when_the_scraper_asks_for_it(db: None, metrics_token: str) -> None:
    response = Client().get(
        "/metrics",
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


# --- what it says -------------------------------------------------------------------------


def test_executions_by_status_are_read_from_the_database(
    make_execution: Any, alice: Any, metrics_token: str
) -> None:
    make_execution(alice, "running")
    make_execution(alice, "running")
    make_execution(alice, "completed")
    values = scrape(Client(), Authorization=f"Bearer {TOKEN}")
    stored = {dict(labels)["status"]: value for (name, labels), value in values.items() if name == "executions_stored"}
    assert stored == {"pending": 0, "running": 2, "completed": 1, "failed": 0, "cancelled": 0}


def test_recorded_events_are_counted_once_committed(
    make_execution: Any, alice: Any, django_capture_on_commit_callbacks: Any, redis_url: str
) -> None:
    kinds = ("started", "progress", "completed")
    before = {kind: sample("executions_events_recorded_total", type=kind) for kind in kinds}
    with django_capture_on_commit_callbacks(execute=False) as uncommitted:
        make_execution(alice, "completed")  # started, 5 x progress, completed (demo_steps)
    assert sample("executions_events_recorded_total", type="started") == before["started"]
    for callback in uncommitted:
        callback()
    broadcast.flush()
    assert sample("executions_events_recorded_total", type="started") == before["started"] + 1
    assert sample("executions_events_recorded_total", type="progress") == before["progress"] + 5
    assert sample("executions_events_recorded_total", type="completed") == before["completed"] + 1


def test_frame_sent_counts_frames_and_observes_latency_when_given_a_timestamp() -> None:
    frames = sample("executions_frames_sent_total")
    observed = sample("executions_event_to_frame_seconds_count")
    total = sample("executions_event_to_frame_seconds_sum")
    metrics.frame_sent(iso(timezone.now() - timedelta(seconds=2)))
    metrics.frame_sent(None)
    metrics.frame_sent("not a timestamp")
    assert sample("executions_frames_sent_total") == frames + 3
    assert sample("executions_event_to_frame_seconds_count") == observed + 1
    assert 2.0 <= sample("executions_event_to_frame_seconds_sum") - total < 3.0
    assert sample("executions_event_to_frame_seconds_bucket", le="2.5") >= 1


def test_a_timestamp_from_a_clock_ahead_counts_as_no_latency() -> None:
    total = sample("executions_event_to_frame_seconds_sum")
    metrics.frame_sent(iso(timezone.now() + timedelta(seconds=5)))
    assert sample("executions_event_to_frame_seconds_sum") == total


def test_open_sockets_go_up_and_down() -> None:
    before = sample("executions_websockets_open")
    metrics.socket_opened()
    metrics.socket_opened()
    metrics.socket_closed()
    assert sample("executions_websockets_open") == before + 1
    metrics.socket_closed()
    assert sample("executions_websockets_open") == before


def test_the_channel_layer_message_carries_the_event_timestamp() -> None:
    message = protocol.event_message(
        seq=3, event_type="progress", frame_text="{}", timestamp="2026-01-01T00:00:00.000000Z"
    )
    assert message["timestamp"] == "2026-01-01T00:00:00.000000Z"


class FailingLayer:
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("Redis went away")


def test_a_refused_group_send_counts_as_a_publish_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broadcast, "get_channel_layer", FailingLayer)
    before = sample("executions_publish_failures_total")
    broadcast.publish_event(execution_id="exec_000000000000", seq=1, event_type="started", frame_text="{}")
    broadcast.flush()
    assert sample("executions_publish_failures_total") == before + 1


class FailingHub(FailingLayer):
    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        raise ConnectionError("Redis went away")


def test_a_refused_batch_counts_each_of_its_messages(monkeypatch: pytest.MonkeyPatch, alice: Any) -> None:
    monkeypatch.setattr(broadcast, "get_channel_layer", FailingHub)
    before = sample("executions_publish_failures_total")
    broadcast.publish_event(execution_id="exec_000000000000", seq=1, event_type="started", frame_text="{}")
    broadcast.publish_to_feeds(
        owner_id=alice.pk,
        message=protocol.feed_message(
            execution_id="exec_000000000000", seq=0, event_type="created", status="pending", frame_text="{}"
        ),
    )
    broadcast.flush()
    assert sample("executions_publish_failures_total") == before + 3


# --- webhooks -------------------------------------------------------------------------------


@pytest.fixture
def hook_server() -> Iterator[str]:
    """A receiver on 127.0.0.1 answering 204 to every POST."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def completed_with_callback(owner: Any, url: str) -> str:
    execution = execution_create(owner=owner, type="agent", target_id="echo", inputs={}, config={}, callback_url=url)
    progress = {"current_step": 0, "total_steps": 1, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=progress)
    assert event_record(execution_id=execution.id, event_type=EventType.COMPLETED, progress=progress, outputs={})
    return execution.id


def test_webhook_attempts_are_counted_by_outcome(alice: Any, settings: Any, hook_server: str) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    attempts = "executions_webhook_attempts_total"
    before = {outcome: sample(attempts, outcome=outcome) for outcome in metrics.WEBHOOK_OUTCOMES}
    delivered = completed_with_callback(alice, hook_server)
    unanswered = completed_with_callback(alice, f"http://127.0.0.1:{processes.free_port()}/hook")
    refused = completed_with_callback(alice, hook_server)

    assert webhooks.webhook_deliver(execution_id=delivered, attempt=1) is True
    assert webhooks.webhook_deliver(execution_id=unanswered, attempt=1) is False
    settings.WEBHOOK_ALLOW_PRIVATE = False  # checked again at delivery
    assert webhooks.webhook_deliver(execution_id=refused, attempt=1) is True

    after = {outcome: sample(attempts, outcome=outcome) for outcome in metrics.WEBHOOK_OUTCOMES}
    assert {outcome: after[outcome] - before[outcome] for outcome in after} == {
        "delivered": 1, "failed": 1, "refused": 1
    }


# --- the sweeper ----------------------------------------------------------------------------


def sweeper(action: str) -> float:
    return sample("executions_sweeper_actions_total", action=action)


def test_every_sweeper_action_is_counted(make_execution: Any, alice: Any, redis_url: str, settings: Any) -> None:
    settings.EXECUTION_RETENTION_DAYS = 30
    before = {action: sweeper(action) for action in metrics.SWEEPER_ACTIONS}
    lost = make_execution(alice, "running")
    handed = make_execution(alice, "running", target_id="demo_durable")
    Execution.objects.filter(pk=handed.pk).update(worker="w@host")
    make_execution(alice, "pending")
    make_execution(alice, "completed")
    later = timezone.now() + timedelta(days=31)

    assert set(executions_fail_lost(now=later)) == {lost.id, handed.id}
    assert len(executions_requeue_lost(now=later).execution_ids) == 2  # the pending one and the handed-over one
    assert executions_prune(now=later + timedelta(days=31)) == 2  # the completed one and the lost one
    held = make_execution(alice, "running")
    assert executions_fail_on_shutdown(worker="", grace_seconds=1) == [held.id]

    after = {action: sweeper(action) for action in metrics.SWEEPER_ACTIONS}
    assert {action: after[action] - before[action] for action in after} == {
        "lost_run_failed": 1,
        "message_requeued": 2,
        "execution_pruned": 2,
        "shutdown_failed": 1,
        "run_handed_over": 1,
    }


def test_known_labels_are_exposed_from_the_start(db: None, metrics_token: str) -> None:
    values = scrape(Client(), Authorization=f"Bearer {TOKEN}")
    for action in metrics.SWEEPER_ACTIONS:
        assert ("executions_sweeper_actions_total", (("action", action),)) in values
    for outcome in metrics.WEBHOOK_OUTCOMES:
        assert ("executions_webhook_attempts_total", (("outcome", outcome),)) in values
    assert ("executions_publish_failures_total", ()) in values
    assert ("executions_websockets_open", ()) in values


def test_metrics_is_read_only(staff: Any) -> None:
    assert session_client(staff).post("/metrics").status_code == 405
