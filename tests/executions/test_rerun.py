"""Rerun: ``services.execution_rerun`` and ``POST /api/v1/executions/{id}/rerun``."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from executions import services
from executions.models import Execution, ExecutionStep
from executions.services import execution_create, execution_rerun
from executions.tasks import run_execution

from ..helpers import token_client
from .states import CALLBACK_URL, EXECUTION_STATES

pytestmark = pytest.mark.django_db

MISSING_ID = "exec_000000000000"


def rerun_url(execution_id: str) -> str:
    return f"/api/v1/executions/{execution_id}/rerun"


def test_a_rerun_repeats_the_target_inputs_and_config_for_the_caller(
    alice: Any, alice_client: APIClient, make_execution: Any
) -> None:
    original = make_execution(
        alice, "failed", inputs={"steps": 3, "step_seconds": 0.5}, config={"timeout": 9, "note": "x"}
    )
    response = alice_client.post(rerun_url(original.id))
    assert response.status_code == 202
    body = response.json()
    copy = Execution.objects.get(pk=body["execution_id"])
    assert body == {
        "execution_id": copy.id,
        "status": "pending",
        "message": "Execution submitted",
        "status_url": f"/api/v1/executions/{copy.id}",
        "progress_url": f"/api/v1/executions/{copy.id}/progress",
        "ws_url": f"/api/v1/executions/{copy.id}/progress/ws",
        "created_at": body["created_at"],
        "rerun_of": original.id,
    }
    assert (copy.type, copy.target_id, copy.inputs, copy.config) == (
        original.type, original.target_id, original.inputs, original.config,
    )
    assert (copy.owner, copy.status, copy.seq, copy.rerun_of) == (alice, "pending", 0, original.id)
    detail = alice_client.get(body["status_url"]).json()
    assert detail["rerun_of"] == original.id
    assert alice_client.get(f"/api/v1/executions/{original.id}").json()["rerun_of"] is None
    original.refresh_from_db()
    assert original.status == "failed", "the original is untouched"


def test_a_running_execution_can_be_rerun_too(alice: Any, alice_client: APIClient, make_execution: Any) -> None:
    original = make_execution(alice, "running")
    assert alice_client.post(rerun_url(original.id)).status_code == 202


def test_a_rerun_of_a_rerun_names_its_immediate_original(
    alice: Any, alice_client: APIClient, make_execution: Any
) -> None:
    original = make_execution(alice, "completed")
    first = alice_client.post(rerun_url(original.id)).json()["execution_id"]
    second = alice_client.post(rerun_url(first)).json()
    assert second["rerun_of"] == first


def test_staff_rerun_someone_elses_and_own_the_copy(
    alice: Any, staff: Any, staff_client: APIClient, make_execution: Any
) -> None:
    original = make_execution(alice, "completed")
    body = staff_client.post(rerun_url(original.id)).json()
    assert Execution.objects.get(pk=body["execution_id"]).owner == staff


def test_someone_elses_execution_is_as_missing_as_an_unknown_one(
    alice: Any, bob_client: APIClient, make_execution: Any
) -> None:
    original = make_execution(alice, "completed")
    theirs = bob_client.post(rerun_url(original.id))
    missing = bob_client.post(rerun_url(MISSING_ID))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == {"detail": f"Execution '{original.id}' not found"}
    assert missing.json() == {"detail": f"Execution '{MISSING_ID}' not found"}
    assert Execution.objects.count() == 1


def test_the_callback_url_is_not_carried_over(alice: Any, task_queue: Any) -> None:
    with override_settings(WEBHOOK_ALLOW_PRIVATE=True):
        original = execution_create(
            owner=alice, type="agent", target_id="echo", inputs={"a": 1}, config={}, callback_url=CALLBACK_URL
        )
    assert execution_rerun(original=original, owner=alice).callback_url == ""


def test_inputs_no_longer_valid_are_a_400(alice: Any, alice_client: APIClient, make_execution: Any) -> None:
    original = make_execution(alice, "completed")
    Execution.objects.filter(pk=original.id).update(inputs={"steps": 0})
    response = alice_client.post(rerun_url(original.id))
    assert response.status_code == 400
    assert "steps" in response.json()["errors"]["inputs"]


def test_a_target_no_longer_registered_is_a_404_naming_it(
    alice: Any, alice_client: APIClient, make_execution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_execution(alice, "completed")
    monkeypatch.setattr(services, "get_target", lambda *args, **kwargs: None)
    response = alice_client.post(rerun_url(original.id))
    assert (response.status_code, response.json()) == (404, {"detail": "Pipeline 'demo_steps' not found"})


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_rerun_is_a_503_and_stores_nothing(
    alice: Any, alice_client: APIClient, make_execution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = make_execution(alice, "completed")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(run_execution, "apply_async", broken)
    response = alice_client.post(rerun_url(original.id))
    assert response.status_code == 503 and int(response["Retry-After"]) >= 1
    assert list(Execution.objects.values_list("id", flat=True)) == [original.id]



# --- resume from the failed step ---------------------------------------------------------------------


def resume(client: APIClient, execution_id: str) -> Any:
    return client.post(rerun_url(execution_id), {"from_failed_step": True}, format="json")


def test_a_failed_durable_execution_resumes_from_its_failed_step(alice: Any, alice_client: APIClient) -> None:
    original = EXECUTION_STATES["durable failed at step 3"](alice)
    response = resume(alice_client, original.id)
    assert response.status_code == 202, response.content
    copy = Execution.objects.get(pk=response.json()["execution_id"])
    assert response.json()["rerun_of"] == original.id
    assert (copy.rerun_of, copy.durable, copy.from_failed_step, copy.status) == (original.id, True, True, "pending")
    assert copy.inputs == original.inputs
    steps = alice_client.get(f"/api/v1/executions/{copy.id}/steps").json()["steps"]
    assert [(s["name"], s["status"], s["attempt"], s["reused_from"]) for s in steps] == [
        ("step_1", "completed", 1, original.id),
        ("step_2", "completed", 1, original.id),
        ("step_3", "pending", None, None),
        ("step_4", "pending", None, None),
    ]


@pytest.mark.parametrize(
    ("label", "detail"),
    [
        ("failed", "is not durable: it has no stored steps to resume from"),
        ("resumed after a hand-over", "Only a failed execution can be resumed from its failed step (this one is "
                                      "'running')"),
    ],
)
def test_resume_from_the_failed_step_is_refused_with_a_reason(
    alice: Any, alice_client: APIClient, task_queue: Any, label: str, detail: str
) -> None:
    original = EXECUTION_STATES[label](alice)
    before = Execution.objects.count()
    response = resume(alice_client, original.id)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert Execution.objects.count() == before, "a refused resume stores nothing"


def test_a_failed_durable_run_with_every_step_completed_is_not_resumable(alice: Any, alice_client: APIClient) -> None:
    original = EXECUTION_STATES["durable failed at step 3"](alice)
    ExecutionStep.objects.filter(execution=original).update(status="completed")
    response = resume(alice_client, original.id)
    assert response.status_code == 400 and "has no failed step" in response.json()["detail"]


@pytest.mark.parametrize("body", [None, {}, {"from_failed_step": False}])
def test_a_plain_rerun_of_a_failed_durable_execution_starts_over(
    alice: Any, alice_client: APIClient, body: dict[str, Any] | None
) -> None:
    original = EXECUTION_STATES["durable failed at step 3"](alice)
    response = alice_client.post(rerun_url(original.id), body, format="json")
    assert response.status_code == 202
    copy = Execution.objects.get(pk=response.json()["execution_id"])
    assert (copy.durable, copy.from_failed_step) == (True, False)
    assert not ExecutionStep.objects.filter(execution=copy).exists(), "its steps begin when it runs"


def test_a_resume_of_someone_elses_execution_is_a_404(alice: Any, bob: Any) -> None:
    original = EXECUTION_STATES["durable failed at step 3"](alice)
    assert resume(token_client(bob), original.id).status_code == 404


@pytest.mark.parametrize("value", [0, 1, "true", "yes", None])
def test_from_failed_step_is_a_json_boolean(alice: Any, alice_client: APIClient, value: Any) -> None:
    original = EXECUTION_STATES["durable failed at step 3"](alice)
    response = alice_client.post(rerun_url(original.id), {"from_failed_step": value}, format="json")
    assert response.status_code == 400 and "from_failed_step" in response.json()["errors"]
    assert not Execution.objects.filter(rerun_of=original.id).exists()
