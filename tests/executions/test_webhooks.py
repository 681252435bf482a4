"""Webhook delivery against a real local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rest_framework.test import APIClient

from config.celery import app
from executions import webhooks
from executions.events import event_record
from executions.models import EventType, Execution, WebhookAttempt
from executions.services import execution_create
from executions.tasks import deliver_webhook
from tests.helpers import make_user

SECRET = "test-webhook-secret"


class Receiver:
    """An HTTP server on 127.0.0.1 that answers with the next scripted status."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        self.received = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.received:
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                    receiver.received.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        with self.received:
            assert self.received.wait_for(lambda: len(self.requests) >= count, timeout), (
                f"got {len(self.requests)} of {count} webhook requests"
            )
            return list(self.requests)


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        receiver = Receiver(statuses or [])
        receiver.thread.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture
def webhook_settings(settings: Any) -> Any:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_SECRET = SECRET
    return settings


def _completed_execution(owner: Any, url: str) -> Execution:
    execution = execution_create(
        owner=owner, type="agent", target_id="echo", inputs={"a": 1}, config={}, callback_url=url
    )
    # Drive it to completion through the event service, as a worker would.
    progress = {"current_step": 0, "total_steps": 1, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=execution.id, event_type=EventType.STARTED, progress=progress)
    final = {"current_step": 1, "total_steps": 1, "percentage": 100.0, "current_step_name": None}
    assert event_record(
        execution_id=execution.id, event_type=EventType.COMPLETED, progress=final, outputs={"output": {"a": 1}}
    )
    return execution


@pytest.mark.django_db
def test_delivery_posts_the_signed_body(webhook_settings: Any, receiver_factory: Any) -> None:
    owner = make_user("hook-owner")
    receiver = receiver_factory([200])
    execution = _completed_execution(owner, receiver.url)

    assert webhooks.webhook_deliver(execution_id=execution.id, attempt=1) is True

    request = receiver.wait_for(1)[0]
    body = request["body"]
    payload = json.loads(body)
    assert payload["event"] == "execution.completed"
    assert payload["execution_id"] == execution.id
    assert payload["status"] == "completed"
    assert payload["outputs"] == {"output": {"a": 1}}
    assert payload["error"] is None
    assert payload["timestamp"].endswith("Z")
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert request["headers"]["X-Signature-256"] == expected
    assert request["path"] == "/hook?x=1"
    attempt = WebhookAttempt.objects.get(execution=execution)
    assert (attempt.attempt, attempt.status_code, attempt.delivered, attempt.error) == (1, 200, True, "")


@pytest.mark.django_db
def test_failed_answers_are_retried_and_every_attempt_recorded(
    webhook_settings: Any, receiver_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = make_user("hook-retry")
    receiver = receiver_factory([500, 503, 200])
    execution = _completed_execution(owner, receiver.url)
    countdowns: list[float] = []
    original_retry = deliver_webhook.retry

    def recording_retry(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return original_retry(*args, **kwargs)

    monkeypatch.setattr(deliver_webhook, "retry", recording_retry)
    webhook_settings.CELERY_TASK_ALWAYS_EAGER = True
    monkeypatch.setattr(app.conf, "task_always_eager", True)
    deliver_webhook.apply(args=[execution.id])

    assert len(receiver.wait_for(3)) == 3
    attempts = list(WebhookAttempt.objects.filter(execution=execution).order_by("attempt"))
    assert [(a.attempt, a.status_code, a.delivered) for a in attempts] == [
        (1, 500, False), (2, 503, False), (3, 200, True)
    ]
    assert attempts[0].error == "HTTP 500"
    assert countdowns == [2.0, 4.0]
    assert countdowns[0] <= 5  # the first retry comes within 5 s


@pytest.mark.django_db
def test_no_answer_is_a_recorded_failure(webhook_settings: Any) -> None:
    owner = make_user("hook-closed")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    execution = _completed_execution(owner, f"http://127.0.0.1:{port}/")
    assert webhooks.webhook_deliver(execution_id=execution.id, attempt=1) is False
    attempt = WebhookAttempt.objects.get(execution=execution)
    assert attempt.status_code is None and not attempt.delivered
    assert attempt.error


@pytest.mark.django_db
def test_address_that_turned_private_is_refused_at_delivery(
    settings: Any, receiver_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolved to a public address at submit and to a private one later."""
    settings.WEBHOOK_ALLOW_PRIVATE = False
    receiver = receiver_factory([200])
    port = receiver.server.server_address[1]
    answers = {"hooks.example.test": "93.184.215.14"}
    real_getaddrinfo = socket.getaddrinfo

    def fake_dns(host: str, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], args[0] if args else 0))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    owner = make_user("hook-rebind")
    execution = _completed_execution(owner, f"http://hooks.example.test:{port}/")  # passes at submit

    answers["hooks.example.test"] = "127.0.0.1"  # the DNS answer changes
    assert webhooks.webhook_deliver(execution_id=execution.id, attempt=1) is True  # final: no retry
    attempt = WebhookAttempt.objects.get(execution=execution)
    assert attempt.error.startswith("Refused:") and attempt.status_code is None
    assert receiver.requests == []  # nothing reached the private address


@pytest.mark.django_db
def test_submit_refuses_a_private_callback_url(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    user = make_user("hook-submit")
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(
        "/api/v1/executions",
        {"type": "agent", "target_id": "echo", "callback_url": "http://169.254.169.254/latest"},
        format="json",
    )
    assert response.status_code == 400
    assert "callback_url" in response.json()["errors"]
    assert Execution.objects.count() == 0
