"""Idempotent submit: ``POST /api/v1/executions`` with an ``Idempotency-Key`` (``executions.idempotency``,
``services.execution_submit``)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone
from rest_framework.test import APIClient

from executions import idempotency, services
from executions.errors import IdempotencyConflictError
from executions.idempotency import idempotency_keys_prune, request_fingerprint
from executions.maintenance import executions_prune
from executions.models import Execution, IdempotencyKey
from executions.services import execution_submit

from ..helpers import token_client

API = "/api/v1/executions"
BODY = {"type": "pipeline", "target_id": "demo_steps", "inputs": {"steps": 2, "step_seconds": 0}}


def post(client: APIClient, body: Any, key: str | None = None) -> Any:
    extra = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    data = json.dumps(body) if not isinstance(body, str) else body
    return client.post(API, data, content_type="application/json", **extra)


pytestmark = pytest.mark.django_db


def test_the_same_key_and_body_answer_the_first_answer_and_make_nothing_new(
    alice_client: APIClient, task_queue: Any
) -> None:
    first = post(alice_client, BODY, "order-42")
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first
    # The same JSON written differently is the same request.
    again = post(alice_client, json.dumps(dict(reversed(list(BODY.items()))), indent=2), "order-42")
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Execution.objects.count() == 1


def test_a_repeat_answers_as_the_first_did_even_after_the_run_moved_on(
    alice: Any, alice_client: APIClient, task_queue: Any
) -> None:
    first = post(alice_client, BODY, "k")
    Execution.objects.filter(pk=first.json()["execution_id"]).update(status="running", seq=1)
    assert post(alice_client, BODY, "k").json() == first.json()
    assert first.json()["status"] == "pending"


def test_the_same_key_with_another_body_is_a_409(alice_client: APIClient, task_queue: Any) -> None:
    assert post(alice_client, BODY, "k").status_code == 202
    other = post(alice_client, {**BODY, "inputs": {"steps": 3}}, "k")
    assert other.status_code == 409
    assert other.json() == {"detail": "This Idempotency-Key was already used with a different request body"}
    assert Execution.objects.count() == 1


def test_keys_are_per_user(alice_client: APIClient, bob_client: APIClient, task_queue: Any) -> None:
    alices = post(alice_client, BODY, "shared")
    bobs = post(bob_client, {**BODY, "inputs": {"steps": 4}}, "shared")
    assert alices.status_code == bobs.status_code == 202
    assert alices.json()["execution_id"] != bobs.json()["execution_id"]


def test_without_a_key_every_submit_makes_an_execution(alice_client: APIClient, task_queue: Any) -> None:
    post(alice_client, BODY)
    post(alice_client, BODY)
    assert Execution.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there", "new\nline", "\x7f"])
def test_a_key_that_is_not_1_to_255_printable_ascii_is_a_400(
    alice_client: APIClient, task_queue: Any, key: str
) -> None:
    response = post(alice_client, BODY, key)
    assert response.status_code == 400
    assert response.json()["errors"] == {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]}
    assert not Execution.objects.exists()


@pytest.mark.parametrize("key", ["a", " spaces are printable ~", "k" * 255, "550e8400-e29b-41d4-a716-446655440000"])
def test_printable_ascii_keys_are_accepted(alice_client: APIClient, task_queue: Any, key: str) -> None:
    assert post(alice_client, BODY, key).status_code == 202
    assert post(alice_client, BODY, key).status_code == 202
    assert Execution.objects.count() == 1


def test_a_refused_submit_keeps_no_key(alice_client: APIClient, task_queue: Any) -> None:
    """Only a submit that made an execution keeps its key: retrying a refused one is a new attempt."""
    assert post(alice_client, {**BODY, "inputs": {"steps": 0}}, "k").status_code == 400
    assert post(alice_client, {**BODY, "target_id": "nope"}, "k").status_code == 404
    assert not IdempotencyKey.objects.exists()
    assert post(alice_client, BODY, "k").status_code == 202


def test_a_key_expires_after_its_lifetime(alice_client: APIClient, task_queue: Any, settings: Any) -> None:
    first = post(alice_client, BODY, "k")
    expired = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS, seconds=1)
    IdempotencyKey.objects.update(created_at=expired)
    second = post(alice_client, {**BODY, "inputs": {"steps": 3}}, "k")
    assert second.status_code == 202, "an expired key is free again, whatever the body"
    assert second.json()["execution_id"] != first.json()["execution_id"]
    assert IdempotencyKey.objects.get().execution_id == second.json()["execution_id"]


def test_the_retention_sweep_prunes_expired_keys(alice: Any, task_queue: Any, settings: Any) -> None:
    echo = {"owner": alice, "type": "agent", "target_id": "echo", "inputs": {}, "config": {}}
    old = execution_submit(**echo, idempotency_key="old", request_fingerprint="a")
    fresh = execution_submit(**echo, idempotency_key="new", request_fingerprint="b")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    settings.EXECUTION_RETENTION_DAYS = 0  # executions kept forever; keys still expire
    assert executions_prune(dry_run=True) == 0
    assert IdempotencyKey.objects.count() == 2, "a dry run deletes nothing"
    executions_prune()
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert Execution.objects.filter(pk__in=[old.execution.id, fresh.execution.id]).count() == 2
    assert idempotency_keys_prune() == 0


def test_a_pruned_execution_takes_its_key_with_it(alice: Any, task_queue: Any) -> None:
    submitted = execution_submit(
        owner=alice, type="agent", target_id="echo", inputs={}, config={}, idempotency_key="k", request_fingerprint="a"
    )
    Execution.objects.filter(pk=submitted.execution.id).delete()
    assert not IdempotencyKey.objects.exists()


def test_the_service_raises_a_conflict_for_another_fingerprint(alice: Any, task_queue: Any) -> None:
    echo = {"owner": alice, "type": "agent", "target_id": "echo", "inputs": {}, "config": {}}
    execution_submit(**echo, idempotency_key="k", request_fingerprint="a")
    with pytest.raises(IdempotencyConflictError):
        execution_submit(**echo, idempotency_key="k", request_fingerprint="b")


def test_the_fingerprint_ignores_key_order_and_spacing() -> None:
    assert request_fingerprint({"a": 1, "b": [1, 2]}) == request_fingerprint(json.loads('{ "b": [1,2], "a": 1 }'))
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_requests_with_one_key_make_exactly_one_execution(
    alice: Any, task_queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests look the key up before either stores it (a barrier holds them there), so both
    try to insert it: the unique constraint lets one through, the other answers its execution."""
    looked_up = threading.Barrier(2, timeout=10)
    look_up = idempotency.idempotent_execution
    calls = 0
    lock = threading.Lock()

    def racing_look_up(**kwargs: Any) -> Any:
        nonlocal calls
        with lock:
            calls += 1
            first_round = calls <= 2
        found = look_up(**kwargs)
        if first_round:
            looked_up.wait()
        return found

    monkeypatch.setattr("executions.services.idempotent_execution", racing_look_up)
    create = services.execution_create
    outcomes: list[str] = []

    def counted_create(**kwargs: Any) -> Any:
        try:
            created = create(**kwargs)
        except IntegrityError:
            outcomes.append("constraint")
            raise
        outcomes.append("created")
        return created

    monkeypatch.setattr(services, "execution_create", counted_create)
    answers: list[Any] = []
    errors: list[BaseException] = []
    clients = [token_client(alice), token_client(alice)]

    def submit(client: APIClient) -> None:
        try:
            answers.append(post(client, BODY, "same-key"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert [a.status_code for a in answers] == [202, 202], [a.content for a in answers]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    assert Execution.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1
    assert len(task_queue.calls) == 1
    assert sorted(outcomes) == ["constraint", "created"], "both reached the insert: the constraint decided"
