"""The REST contract (CONTRACT.md, "REST endpoints" and "Conventions"), endpoint by endpoint."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.throttles import SubmitThrottle
from executions.models import Execution, ProgressSnapshot
from executions.services import execution_cancel

from ..helpers import (
    ANY_ETA,
    PASSWORD,
    assert_timestamp,
    create_execution,
    final_progress,
    record_completion,
    record_start,
    start_progress,
    step_progress,
)
from .states import EXECUTION_STATES

API = "/api/v1"
EXECUTION_ID = re.compile(r"^exec_[0-9a-f]{12}$")
MISSING_ID = "exec_000000000000"

EXECUTION_KEYS = {
    "execution_id", "type", "target_id", "status", "progress", "inputs", "config", "outputs", "error",
    "created_at", "started_at", "completed_at", "failed_at", "cancelled_at", "seq",
}
LIST_ITEM_KEYS = {"execution_id", "type", "target_id", "status", "progress", "created_at", "started_at", "completed_at"}
PAGINATION_KEYS = {"page", "page_size", "total_items", "total_pages", "has_next", "has_prev", "next_page", "prev_page"}
DEMO_DEFAULTS = {"steps": 5, "step_seconds": 1.0, "fail_at_step": None}

pytestmark = pytest.mark.django_db


def submit(client: APIClient, body: Any, path: str = f"{API}/executions") -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def post_raw(client: APIClient, path: str, raw: str | bytes) -> Any:
    return client.post(path, raw, content_type="application/json")


def assert_error(response: Any, status_code: int) -> dict[str, Any]:
    """An error answer: the status, JSON, and ``detail`` a human-readable string."""
    assert response.status_code == status_code, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def assert_invalid(response: Any) -> dict[str, Any]:
    """400 with ``detail`` plus an ``errors`` field map."""
    body = assert_error(response, 400)
    assert isinstance(body["errors"], dict) and body["errors"], body
    return body["errors"]


def assert_messages(value: Any) -> None:
    assert isinstance(value, list) and value and all(isinstance(m, str) and m for m in value), value


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [item["execution_id"] for item in response.json()["executions"]]


def not_found_body(execution_id: str) -> dict[str, str]:
    return {"detail": f"Execution '{execution_id}' not found"}


# --- authentication ----------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/executions"),
    ("post", "/executions"),
    ("get", "/executions/{id}"),
    ("get", "/executions/{id}/progress"),
    ("post", "/executions/{id}/cancel"),
    ("get", "/executions/{id}/events"),
    ("get", "/targets"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Token 0123456789abcdef0123456789abcdef01234567", "Token", "Bearer abc"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_missing_or_invalid_credentials_get_401_with_token_challenge(
    make_execution: Any, alice: Any, method: str, path: str, header: str | None, slash: str
) -> None:
    execution = make_execution(alice)
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    url = API + path.format(id=execution.id) + slash
    response = submit(client, {"type": "agent", "target_id": "echo"}, url) if method == "post" else client.get(url)
    assert_error(response, 401)
    assert response["WWW-Authenticate"] == "Token"
    execution.refresh_from_db()
    assert execution.status == "pending"
    assert Execution.objects.count() == 1


def test_valid_token_is_accepted(alice_client: APIClient) -> None:
    assert alice_client.get(f"{API}/executions").status_code == 200


def test_token_of_an_inactive_user_is_refused(alice: Any, alice_client: APIClient) -> None:
    alice.is_active = False
    alice.save()
    response = alice_client.get(f"{API}/executions")
    assert_error(response, 401)
    assert response["WWW-Authenticate"] == "Token"


def session_client(user: Any, *, csrf_secret: str | None = None) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    if csrf_secret is not None:
        client.cookies[settings.CSRF_COOKIE_NAME] = csrf_secret
    return client


def test_session_auth_reads_without_csrf_token(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    client = session_client(alice)
    assert ids(client.get(f"{API}/executions")) == [execution.id]
    assert client.get(f"{API}/executions/{execution.id}").status_code == 200


def test_session_submit_without_csrf_token_is_403(alice: Any) -> None:
    response = submit(session_client(alice), {"type": "agent", "target_id": "echo"})
    body = assert_error(response, 403)
    assert "CSRF" in body["detail"]
    assert not Execution.objects.exists()


def test_session_cancel_without_csrf_token_is_403(make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    response = session_client(alice).post(f"{API}/executions/{execution.id}/cancel")
    assert "CSRF" in assert_error(response, 403)["detail"]
    execution.refresh_from_db()
    assert execution.status == "pending"


def test_session_unsafe_methods_work_with_the_csrf_token(alice: Any) -> None:
    secret = "a" * 32
    client = session_client(alice, csrf_secret=secret)
    response = client.post(
        f"{API}/executions", json.dumps({"type": "agent", "target_id": "echo"}),
        content_type="application/json", HTTP_X_CSRFTOKEN=secret,
    )
    assert response.status_code == 202, response.content
    execution_id = response.json()["execution_id"]
    response = client.post(f"{API}/executions/{execution_id}/cancel", HTTP_X_CSRFTOKEN=secret)
    assert response.status_code == 200, response.content


def test_session_with_a_wrong_csrf_token_is_403(alice: Any) -> None:
    client = session_client(alice, csrf_secret="a" * 32)
    response = client.post(
        f"{API}/executions", json.dumps({"type": "agent", "target_id": "echo"}),
        content_type="application/json", HTTP_X_CSRFTOKEN="b" * 32,
    )
    assert_error(response, 403)
    assert not Execution.objects.exists()


# --- POST /auth/token ------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_token_endpoint_returns_the_users_token(anon_client: APIClient, alice: Any, slash: str) -> None:
    response = submit(anon_client, {"username": "alice", "password": PASSWORD}, f"{API}/auth/token{slash}")
    assert response.status_code == 200, response.content
    token = response.json()["token"]
    assert token == Token.objects.get(user=alice).key
    again = submit(anon_client, {"username": "alice", "password": PASSWORD}, f"{API}/auth/token")
    assert again.json() == {"token": token}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"{API}/executions").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "alice"},
        {},
        {"username": "", "password": ""},
    ],
)
def test_token_endpoint_refuses_bad_credentials_with_400(anon_client: APIClient, alice: Any, body: Any) -> None:
    response = submit(anon_client, body, f"{API}/auth/token")
    assert_invalid(response)
    assert not Token.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    "raw",
    ["[" * 100_000 + "]" * 100_000, '{"username": ', "[]", '"alice"', "null"],
    ids=["deep", "truncated", "list", "string", "null"],
)
def test_token_endpoint_answers_bad_json_with_400(anon_client: APIClient, alice: Any, raw: str) -> None:
    assert_error(post_raw(anon_client, f"{API}/auth/token", raw), 400)


# --- POST /executions ---------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_submit_answers_202_with_the_urls(
    alice_client: APIClient, django_capture_on_commit_callbacks: Any, task_queue: Any, slash: str
) -> None:
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(alice_client, {"type": "pipeline", "target_id": "demo_steps"}, f"{API}/executions{slash}")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) >= {"execution_id", "status", "message", "status_url", "progress_url", "ws_url", "created_at"}
    execution_id = body["execution_id"]
    assert EXECUTION_ID.match(execution_id)
    assert body["status"] == "pending"
    assert isinstance(body["message"], str) and body["message"]
    assert body["status_url"] == f"{API}/executions/{execution_id}"
    assert body["progress_url"] == f"{API}/executions/{execution_id}/progress"
    assert body["ws_url"] == f"{API}/executions/{execution_id}/progress/ws"
    created_at = assert_timestamp(body["created_at"])
    assert before <= created_at <= timezone.now()
    assert task_queue.execution_ids == [execution_id]
    execution = Execution.objects.get(pk=execution_id)
    assert execution.owner.username == "alice"
    assert (execution.status, execution.seq, execution.progress) == ("pending", 0, None)


def test_submit_fills_the_defaults_and_stores_config_as_submitted(alice_client: APIClient) -> None:
    config = {"timeout": 30, "priority": "high", "nested": {"a": [1, 2]}}
    response = submit(
        alice_client, {"type": "pipeline", "target_id": "demo_steps", "inputs": {"steps": 3}, "config": config}
    )
    assert response.status_code == 202, response.content
    detail = alice_client.get(response.json()["status_url"]).json()
    assert detail["inputs"] == {"steps": 3, "step_seconds": 1.0, "fail_at_step": None}
    assert detail["config"] == config


def test_submit_without_inputs_or_config_uses_empty_objects(alice_client: APIClient) -> None:
    response = submit(alice_client, {"type": "pipeline", "target_id": "demo_steps"})
    detail = alice_client.get(response.json()["status_url"]).json()
    assert detail["inputs"] == DEMO_DEFAULTS
    assert detail["config"] == {}


def test_submit_customer_service_flow(alice_client: APIClient) -> None:
    response = submit(
        alice_client,
        {"type": "pipeline", "target_id": "customer_service_flow", "inputs": {"customer_query": "Where is my order?"}},
    )
    assert response.status_code == 202, response.content
    detail = alice_client.get(response.json()["status_url"]).json()
    assert detail["inputs"] == {"customer_query": "Where is my order?"}


def test_echo_agent_accepts_any_object(alice_client: APIClient) -> None:
    inputs = {"anything": [1, "two", {"three": None}], "unicode": "héllo ✓", "big": 10**30}
    response = submit(alice_client, {"type": "agent", "target_id": "echo", "inputs": inputs})
    assert response.status_code == 202, response.content
    assert alice_client.get(response.json()["status_url"]).json()["inputs"] == inputs


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"steps": "5"}, "steps"),
        ({"steps": 5.5}, "steps"),
        ({"steps": 5.0}, "steps"),
        ({"steps": True}, "steps"),
        ({"steps": None}, "steps"),
        ({"steps": [5]}, "steps"),
        ({"steps": 0}, "steps"),
        ({"steps": 10_001}, "steps"),
        ({"step_seconds": "1"}, "step_seconds"),
        ({"step_seconds": False}, "step_seconds"),
        ({"step_seconds": -0.5}, "step_seconds"),
        ({"step_seconds": 60.5}, "step_seconds"),
        ({"fail_at_step": 0}, "fail_at_step"),
        ({"fail_at_step": "2"}, "fail_at_step"),
        ({"steps": 3, "fail_at_step": 4}, "fail_at_step"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_submit_refuses_invalid_inputs_under_errors_inputs(alice_client: APIClient, inputs: Any, field: str) -> None:
    response = submit(alice_client, {"type": "pipeline", "target_id": "demo_steps", "inputs": inputs})
    errors = assert_invalid(response)
    assert set(errors) == {"inputs"}
    assert field in errors["inputs"], errors
    assert_messages(errors["inputs"][field])
    assert not Execution.objects.exists()


def test_submit_reports_every_invalid_input_at_once(alice_client: APIClient) -> None:
    response = submit(
        alice_client,
        {"type": "pipeline", "target_id": "demo_steps", "inputs": {"steps": "5", "step_seconds": True, "x": 1}},
    )
    assert set(assert_invalid(response)["inputs"]) == {"steps", "step_seconds", "x"}


@pytest.mark.parametrize("inputs", [{}, {"customer_query": ""}, {"customer_query": 5}, {"customer_query": None}])
def test_customer_service_flow_needs_a_query(alice_client: APIClient, inputs: Any) -> None:
    response = submit(alice_client, {"type": "pipeline", "target_id": "customer_service_flow", "inputs": inputs})
    assert_messages(assert_invalid(response)["inputs"]["customer_query"])


@pytest.mark.parametrize("inputs", [[], "x", 5, None, True])
def test_submit_refuses_inputs_that_are_not_an_object(alice_client: APIClient, inputs: Any) -> None:
    response = submit(alice_client, {"type": "agent", "target_id": "echo", "inputs": inputs})
    assert "inputs" in assert_invalid(response)


@pytest.mark.parametrize("config", [[], "x", 5, None])
def test_submit_refuses_config_that_is_not_an_object(alice_client: APIClient, config: Any) -> None:
    response = submit(alice_client, {"type": "agent", "target_id": "echo", "config": config})
    assert "config" in assert_invalid(response)


@pytest.mark.parametrize("timeout", [0, -1, -0.001, "5", True, [5], {"s": 5}])
def test_submit_refuses_a_timeout_that_is_not_a_positive_number(alice_client: APIClient, timeout: Any) -> None:
    response = submit(alice_client, {"type": "agent", "target_id": "echo", "config": {"timeout": timeout}})
    errors = assert_invalid(response)
    assert "config" in errors
    assert "timeout" in json.dumps(errors["config"])
    assert not Execution.objects.exists()


@pytest.mark.parametrize("timeout", [0.001, 1, 2.5, 3600])
def test_submit_accepts_a_positive_timeout(alice_client: APIClient, timeout: Any) -> None:
    response = submit(alice_client, {"type": "agent", "target_id": "echo", "config": {"timeout": timeout}})
    assert response.status_code == 202, response.content
    assert Execution.objects.get().config == {"timeout": timeout}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target_id": "echo"}, "type"),
        ({"type": "agent"}, "target_id"),
        ({"type": "robot", "target_id": "echo"}, "type"),
        ({"type": None, "target_id": "echo"}, "type"),
        ({"type": "agent", "target_id": ""}, "target_id"),
        ({"type": "agent", "target_id": 5}, "target_id"),
        ({"type": "agent", "target_id": "x" * 101}, "target_id"),
        ({"type": "agent", "target_id": "echo", "callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"type": "agent", "target_id": "echo", "callback_url": "not a url"}, "callback_url"),
    ],
)
def test_submit_refuses_an_invalid_body_field(alice_client: APIClient, body: Any, field: str) -> None:
    errors = assert_invalid(submit(alice_client, body))
    assert field in errors, errors
    assert_messages(errors[field])


@pytest.mark.parametrize(
    ("type_", "target_id", "detail"),
    [
        ("pipeline", "nope", "Pipeline 'nope' not found"),
        ("agent", "nope", "Agent 'nope' not found"),
        ("agent", "demo_steps", "Agent 'demo_steps' not found"),
        ("pipeline", "echo", "Pipeline 'echo' not found"),
    ],
)
def test_submit_an_unknown_target_is_404(alice_client: APIClient, type_: str, target_id: str, detail: str) -> None:
    response = submit(alice_client, {"type": type_, "target_id": target_id, "inputs": {"whatever": 1}})
    assert response.status_code == 404
    assert response.json() == {"detail": detail}
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        "[]",
        '"x"',
        "null",
        "5",
        "{",
        "{'type': 'agent'}",
        "",
        "NaN",
        '{"type": "agent", "target_id": "echo", "inputs": {"x": NaN}}',
    ],
)
def test_submit_refuses_a_body_that_is_not_a_json_object(alice_client: APIClient, raw: str) -> None:
    assert_error(post_raw(alice_client, f"{API}/executions", raw), 400)
    assert not Execution.objects.exists()


@pytest.mark.parametrize("depth", [40, 500, 990, 5_000, 100_000])
@pytest.mark.parametrize("where", ["inputs", "config", "body"])
def test_deeply_nested_json_is_400_not_500(alice_client: APIClient, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    # %-formatting: JSON's braces would need doubling in an f-string.
    raw = nested if where == "body" else '{"type": "agent", "target_id": "echo", "%s": {"x": %s}}' % (where, nested)  # noqa: UP031 - see above
    assert_error(post_raw(alice_client, f"{API}/executions", raw), 400)
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "agent", "target_id": "echo", "inputs": {"x": "\\ud800"}}',
        '{"type": "agent", "target_id": "echo", "inputs": {"\\udfff": 1}}',
        '{"type": "agent", "target_id": "echo", "config": {"x": ["\\ud800"]}}',
        '{"type": "agent", "target_id": "\\ud800"}',
        '{"type": "agent", "target_id": "echo", "inputs": {"x": "a\\u0000b"}}',
        '{"type": "agent", "target_id": "echo", "inputs": {"a\\u0000": 1}}',
    ],
)
def test_strings_a_database_cannot_store_are_400(alice_client: APIClient, raw: str) -> None:
    assert_error(post_raw(alice_client, f"{API}/executions", raw), 400)
    assert not Execution.objects.exists()


HUGE_NUMBERS = ["9" * 400, "-" + "9" * 400, "1e400", "-1e400"]


@pytest.mark.parametrize("value", HUGE_NUMBERS, ids=["int", "-int", "float", "-float"])
def test_huge_numbers_are_refused_not_500(alice_client: APIClient, value: str) -> None:
    raw = '{"type": "pipeline", "target_id": "demo_steps", "inputs": {"step_seconds": %s}}' % value  # noqa: UP031 - JSON braces, as above
    errors = assert_invalid(post_raw(alice_client, f"{API}/executions", raw))
    assert_messages(errors["inputs"]["step_seconds"])


@pytest.mark.parametrize("value", HUGE_NUMBERS, ids=["int", "-int", "float", "-float"])
def test_a_huge_timeout_is_refused_not_500(alice_client: APIClient, value: str) -> None:
    raw = '{"type": "agent", "target_id": "echo", "config": {"timeout": %s}}' % value  # noqa: UP031 - JSON braces, as above
    errors = assert_invalid(post_raw(alice_client, f"{API}/executions", raw))
    assert_messages(errors["config"]["timeout"])
    assert not Execution.objects.exists()


def test_submit_form_encoded_is_415(alice_client: APIClient) -> None:
    response = alice_client.post(f"{API}/executions", {"type": "agent", "target_id": "echo"}, format="multipart")
    assert_error(response, 415)


def test_submit_too_large_body_is_refused(alice_client: APIClient) -> None:
    blob = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = submit(alice_client, {"type": "agent", "target_id": "echo", "inputs": {"blob": blob}})
    assert_error(response, 413)
    assert not Execution.objects.exists()


def test_submit_is_throttled_per_user(
    alice_client: APIClient, bob_client: APIClient, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private counter store: the shared Redis may hold counts from other test runs.
    monkeypatch.setattr(SubmitThrottle, "cache", LocMemCache("test-submit-throttle", {}))
    settings.EXECUTION_THROTTLE_RATES = {"submit": "2/min", "cancel": None}
    body = {"type": "agent", "target_id": "echo"}
    assert [submit(alice_client, body).status_code for _ in range(2)] == [202, 202]
    response = submit(alice_client, body)
    assert_error(response, 429)
    assert int(response["Retry-After"]) > 0
    assert alice_client.get(f"{API}/executions").status_code == 200, "reads are not throttled"
    assert submit(bob_client, body).status_code == 202, "the limit is per user"
    assert Execution.objects.count() == 3


# --- GET /executions/{id} --------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_detail_of_a_pending_execution(alice_client: APIClient, make_execution: Any, alice: Any, slash: str) -> None:
    execution = make_execution(alice, config={"timeout": 5})
    response = alice_client.get(f"{API}/executions/{execution.id}{slash}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= EXECUTION_KEYS
    assert body["execution_id"] == execution.id
    assert (body["type"], body["target_id"], body["status"]) == ("pipeline", "demo_steps", "pending")
    assert body["progress"] is None
    assert body["inputs"] == DEMO_DEFAULTS
    assert body["config"] == {"timeout": 5}
    assert body["outputs"] is None and body["error"] is None
    assert_timestamp(body["created_at"])
    for key in ("started_at", "completed_at", "failed_at", "cancelled_at"):
        assert body[key] is None
    assert body["seq"] == 0


def test_detail_of_a_running_execution(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=2)
    body = alice_client.get(f"{API}/executions/{execution.id}").json()
    assert body["status"] == "running"
    assert body["progress"] == {
        "current_step": 1, "total_steps": 5, "percentage": 20.0, "current_step_name": "step_2", "eta_seconds": ANY_ETA,
    }
    assert body["seq"] == 3
    assert assert_timestamp(body["started_at"]) >= assert_timestamp(body["created_at"])
    assert body["completed_at"] is None and body["outputs"] is None


def test_detail_of_a_completed_execution(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "completed", inputs={"steps": 2})
    body = alice_client.get(f"{API}/executions/{execution.id}").json()
    assert body["status"] == "completed"
    assert body["progress"] == final_progress(2)
    assert body["outputs"] == {"steps_completed": 2}
    assert body["error"] is None
    assert assert_timestamp(body["completed_at"]) >= assert_timestamp(body["started_at"])
    assert body["failed_at"] is None and body["cancelled_at"] is None
    assert body["seq"] == 4  # started, 2 x progress, completed


def test_detail_of_a_failed_execution(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "failed")
    body = alice_client.get(f"{API}/executions/{execution.id}").json()
    assert body["status"] == "failed"
    assert body["error"] == {"type": "ValueError", "message": "boom", "details": None}
    assert body["outputs"] is None
    assert_timestamp(body["failed_at"])
    assert body["completed_at"] is None and body["cancelled_at"] is None


def test_detail_of_an_execution_cancelled_before_it_started(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    execution = make_execution(alice, "cancelled", started=False)
    body = alice_client.get(f"{API}/executions/{execution.id}").json()
    assert (body["status"], body["progress"], body["started_at"], body["seq"]) == ("cancelled", None, None, 1)
    assert_timestamp(body["cancelled_at"])


def test_someone_elses_execution_is_indistinguishable_from_a_missing_one(
    alice_client: APIClient, bob_client: APIClient, make_execution: Any, alice: Any
) -> None:
    execution = make_execution(alice, "running")
    for path in ("", "/progress", "/events"):
        theirs = bob_client.get(f"{API}/executions/{execution.id}{path}")
        missing = bob_client.get(f"{API}/executions/{MISSING_ID}{path}")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == not_found_body(execution.id)
        assert missing.json() == not_found_body(MISSING_ID)
        assert alice_client.get(f"{API}/executions/{execution.id}{path}").status_code == 200
    theirs = bob_client.post(f"{API}/executions/{execution.id}/cancel")
    missing = bob_client.post(f"{API}/executions/{MISSING_ID}/cancel")
    assert (theirs.status_code, theirs.json()) == (404, not_found_body(execution.id))
    assert (missing.status_code, missing.json()) == (404, not_found_body(MISSING_ID))
    execution.refresh_from_db()
    assert execution.status == "running"


@pytest.mark.parametrize("execution_id", ["nope", "exec_ZZZ", "x" * 300, "exec_%E2%9C%93"])
def test_any_unknown_id_is_the_same_404(alice_client: APIClient, execution_id: str) -> None:
    response = alice_client.get(f"{API}/executions/{execution_id}")
    assert response.status_code == 404
    assert set(response.json()) == {"detail"}
    assert response.json()["detail"].startswith("Execution '") and response.json()["detail"].endswith("' not found")


def test_staff_see_everyones_executions(staff_client: APIClient, make_execution: Any, alice: Any, bob: Any) -> None:
    mine = make_execution(alice)
    theirs = make_execution(bob, "completed")
    assert staff_client.get(f"{API}/executions/{mine.id}").json()["execution_id"] == mine.id
    assert staff_client.get(f"{API}/executions/{theirs.id}/events").json()["events"]
    assert set(ids(staff_client.get(f"{API}/executions"))) == {mine.id, theirs.id}


def test_detail_does_not_allow_writes(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    for method in ("put", "patch", "delete"):
        assert_error(getattr(alice_client, method)(f"{API}/executions/{execution.id}"), 405)
    assert Execution.objects.filter(pk=execution.id).exists()


# --- GET /executions/{id}/progress -----------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_progress_is_204_while_pending_and_200_once_started(
    alice_client: APIClient, make_execution: Any, alice: Any, slash: str
) -> None:
    execution = make_execution(alice)
    url = f"{API}/executions/{execution.id}/progress{slash}"
    response = alice_client.get(url)
    assert response.status_code == 204
    assert response.content == b""
    record_start(execution)
    response = alice_client.get(url)
    assert response.status_code == 200
    assert response.json() == start_progress(5)


def test_progress_follows_the_steps_to_completion(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=3)
    url = f"{API}/executions/{execution.id}/progress"
    assert alice_client.get(url).json() == step_progress(3, 5)
    record_completion(execution)
    assert alice_client.get(url).json() == final_progress(5)


def test_progress_is_204_when_cancelled_before_starting(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    execution = make_execution(alice, "cancelled", started=False)
    assert alice_client.get(f"{API}/executions/{execution.id}/progress").status_code == 204


def test_progress_keeps_the_last_progress_when_cancelled_while_running(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    execution = make_execution(alice, "cancelled", steps_entered=2)
    response = alice_client.get(f"{API}/executions/{execution.id}/progress")
    assert response.status_code == 200
    assert response.json() == step_progress(2, 5)


# --- POST /executions/{id}/cancel ---------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "running"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_cancel_answers_200_with_the_contract_body(
    alice_client: APIClient, make_execution: Any, alice: Any, status: str, slash: str
) -> None:
    execution = make_execution(alice, status)
    response = alice_client.post(f"{API}/executions/{execution.id}/cancel{slash}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["message"] == "Execution cancelled successfully"
    assert set(body["data"]) >= {"execution_id", "status", "cancelled_at"}
    assert body["data"]["execution_id"] == execution.id
    assert body["data"]["status"] == "cancelled"
    cancelled_at = assert_timestamp(body["data"]["cancelled_at"])
    detail = alice_client.get(f"{API}/executions/{execution.id}").json()
    assert detail["status"] == "cancelled"
    assert assert_timestamp(detail["cancelled_at"]) == cancelled_at
    assert detail["seq"] == execution.seq + 1


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_cancel_a_terminal_execution_is_400(
    alice_client: APIClient, make_execution: Any, alice: Any, status: str
) -> None:
    execution = make_execution(alice, status)
    response = alice_client.post(f"{API}/executions/{execution.id}/cancel")
    assert response.status_code == 400
    assert response.json() == {"detail": f"Cannot cancel execution with status '{status}'"}
    after = Execution.objects.get(pk=execution.id)
    assert (after.status, after.seq, after.cancelled_at) == (status, execution.seq, execution.cancelled_at)


def test_a_second_cancel_is_400(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    url = f"{API}/executions/{execution.id}/cancel"
    first = alice_client.post(url)
    assert first.status_code == 200
    second = alice_client.post(url)
    assert second.status_code == 400
    assert second.json() == {"detail": "Cannot cancel execution with status 'cancelled'"}
    assert ProgressSnapshot.objects.filter(execution_id=execution.id, type="cancelled").count() == 1


def test_staff_cancel_someone_elses_execution(staff_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "running")
    response = staff_client.post(f"{API}/executions/{execution.id}/cancel")
    assert response.status_code == 200
    execution.refresh_from_db()
    assert execution.status == "cancelled"


def test_cancel_is_post_only(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    assert_error(alice_client.get(f"{API}/executions/{execution.id}/cancel"), 405)
    execution.refresh_from_db()
    assert execution.status == "pending"


def test_cancel_ignores_a_body(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    response = submit(alice_client, {"reason": "changed my mind"}, f"{API}/executions/{execution.id}/cancel")
    assert response.status_code == 200


# --- GET /executions/{id}/events ----------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_events_are_the_stored_frames_oldest_first(
    alice_client: APIClient, make_execution: Any, alice: Any, slash: str
) -> None:
    execution = make_execution(alice, "completed", inputs={"steps": 3})
    response = alice_client.get(f"{API}/executions/{execution.id}/events{slash}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    events = response.json()["events"]
    assert [e["type"] for e in events] == ["started", "progress", "progress", "progress", "completed"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    stored = list(
        ProgressSnapshot.objects.filter(execution_id=execution.id).order_by("seq").values_list("frame", flat=True)
    )
    assert events == [json.loads(frame) for frame in stored]
    for event in events:
        assert event["execution_id"] == execution.id
        assert_timestamp(event["timestamp"])
    started, *progress, completed = events
    assert set(started) == {"type", "execution_id", "status", "seq", "timestamp"}
    assert started["status"] == "running"
    for number, event in enumerate(progress, start=1):
        assert set(event) == {"type", "execution_id", "status", "progress", "seq", "timestamp"}
        assert event["progress"] == step_progress(number, 3)
    assert set(completed) == {"type", "execution_id", "status", "progress", "outputs", "error", "seq", "timestamp"}
    assert completed["status"] == "completed"
    assert completed["progress"] == final_progress(3)
    assert completed["outputs"] == {"steps_completed": 3}
    assert completed["error"] is None


@pytest.mark.parametrize(
    ("after_seq", "expected"),
    [("0", [1, 2, 3, 4, 5]), ("2", [3, 4, 5]), ("4", [5]), ("5", []), ("6", []), ("999999", []), ("007", [])],
)
def test_events_after_seq(
    alice_client: APIClient, make_execution: Any, alice: Any, after_seq: str, expected: list[int]
) -> None:
    execution = make_execution(alice, "completed", inputs={"steps": 3})
    response = alice_client.get(f"{API}/executions/{execution.id}/events", {"after_seq": after_seq})
    assert response.status_code == 200
    assert [e["seq"] for e in response.json()["events"]] == expected


@pytest.mark.parametrize("after_seq", ["-1", "x", "1.5", "", " 1", "+1", "1e3", "9" * 40])
def test_events_with_an_invalid_after_seq_is_400(
    alice_client: APIClient, make_execution: Any, alice: Any, after_seq: str
) -> None:
    execution = make_execution(alice, "completed")
    errors = assert_invalid(alice_client.get(f"{API}/executions/{execution.id}/events", {"after_seq": after_seq}))
    assert "after_seq" in errors


def test_events_of_a_pending_execution_is_an_empty_list(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    execution = make_execution(alice)
    response = alice_client.get(f"{API}/executions/{execution.id}/events")
    assert (response.status_code, response.json()) == (200, {"events": []})


def test_events_of_a_failed_and_a_cancelled_execution(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    failed = make_execution(alice, "failed")
    last = alice_client.get(f"{API}/executions/{failed.id}/events").json()["events"][-1]
    assert (last["type"], last["status"], last["outputs"]) == ("failed", "failed", None)
    assert last["error"] == {"type": "ValueError", "message": "boom", "details": None}
    assert last["progress"] == step_progress(1, 5)
    cancelled = make_execution(alice, "cancelled", started=False)
    events = alice_client.get(f"{API}/executions/{cancelled.id}/events").json()["events"]
    assert [(e["type"], e["seq"], e["progress"], e["outputs"], e["error"]) for e in events] == [
        ("cancelled", 1, None, None, None)
    ]


# --- GET /executions/{id}/steps -----------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_steps_of_an_execution_that_is_not_durable_come_from_its_events(
    alice_client: APIClient, make_execution: Any, alice: Any, slash: str
) -> None:
    execution = make_execution(alice, "running", inputs={"steps": 3}, steps_entered=2)
    response = alice_client.get(f"{API}/executions/{execution.id}/steps{slash}")
    assert response.status_code == 200
    steps = response.json()["steps"]
    assert [(s["name"], s["status"], s["attempt"], s["reused_from"]) for s in steps] == [
        ("step_1", "completed", 1, None), ("step_2", "running", 1, None), ("step_3", "pending", None, None),
    ]
    assert steps[0]["finished_at"] == steps[1]["started_at"], "a step ends when the next is entered"
    assert_timestamp(steps[0]["started_at"])
    assert steps[2]["started_at"] is None and steps[1]["finished_at"] is None


def test_steps_of_a_durable_execution_come_from_its_rows(alice_client: APIClient, alice: Any) -> None:
    execution = EXECUTION_STATES["durable failed at step 3"](alice)
    steps = alice_client.get(f"{API}/executions/{execution.id}/steps").json()["steps"]
    assert [(s["name"], s["status"], s["attempt"]) for s in steps] == [
        ("step_1", "completed", 1), ("step_2", "completed", 1), ("step_3", "failed", 1), ("step_4", "pending", None),
    ]


def test_steps_of_someone_elses_execution_are_a_404(bob_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "completed")
    response = bob_client.get(f"{API}/executions/{execution.id}/steps")
    assert (response.status_code, response.json()) == (404, {"detail": f"Execution '{execution.id}' not found"})


# --- GET /executions ------------------------------------------------------------------------------


def make_many(owner: Any, count: int, **options: Any) -> list[str]:
    """``count`` executions, oldest first."""
    return [create_execution(owner, **options).id for _ in range(count)]


@pytest.mark.parametrize("slash", ["", "/"])
def test_list_shape_and_defaults(alice_client: APIClient, make_execution: Any, alice: Any, slash: str) -> None:
    created = [make_execution(alice, status).id for status in ("pending", "running", "completed")]
    response = alice_client.get(f"{API}/executions{slash}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"executions", "pagination"}
    assert body["pagination"] == {
        "page": 1, "page_size": 50, "total_items": 3, "total_pages": 1,
        "has_next": False, "has_prev": False, "next_page": None, "prev_page": None,
    }
    assert [e["execution_id"] for e in body["executions"]] == created[::-1], "default: newest first"
    for item in body["executions"]:
        assert set(item) >= LIST_ITEM_KEYS
        assert_timestamp(item["created_at"])
    by_id = {item["execution_id"]: item for item in body["executions"]}
    assert by_id[created[0]]["progress"] is None and by_id[created[0]]["started_at"] is None
    assert by_id[created[2]]["progress"] == final_progress(5)
    assert_timestamp(by_id[created[2]]["completed_at"])


def test_list_shows_only_the_users_own_executions(
    alice_client: APIClient, bob_client: APIClient, make_execution: Any, alice: Any, bob: Any
) -> None:
    mine = make_execution(alice).id
    theirs = make_execution(bob).id
    assert ids(alice_client.get(f"{API}/executions")) == [mine]
    assert ids(bob_client.get(f"{API}/executions")) == [theirs]
    assert alice_client.get(f"{API}/executions", {"target_id": "demo_steps"}).json()["pagination"]["total_items"] == 1


def test_list_of_nothing(alice_client: APIClient) -> None:
    body = alice_client.get(f"{API}/executions").json()
    assert body == {
        "executions": [],
        "pagination": {
            "page": 1, "page_size": 50, "total_items": 0, "total_pages": 0,
            "has_next": False, "has_prev": False, "next_page": None, "prev_page": None,
        },
    }
    body = alice_client.get(f"{API}/executions", {"page": 3}).json()
    assert body["executions"] == []
    assert body["pagination"]["prev_page"] == 2 and body["pagination"]["has_prev"] is True
    assert body["pagination"]["next_page"] is None and body["pagination"]["has_next"] is False


@pytest.mark.parametrize(
    ("page", "expected_count", "has_next", "has_prev", "next_page", "prev_page"),
    [
        (1, 3, True, False, 2, None),
        (2, 3, True, True, 3, 1),
        (3, 1, False, True, None, 2),
        (4, 0, False, True, None, 3),
        (50, 0, False, True, None, 49),
    ],
)
def test_pagination_math(
    alice_client: APIClient, make_execution: Any, alice: Any,
    page: int, expected_count: int, has_next: bool, has_prev: bool, next_page: int | None, prev_page: int | None,
) -> None:
    make_many(alice, 7)
    response = alice_client.get(f"{API}/executions", {"page": page, "page_size": 3})
    assert response.status_code == 200
    body = response.json()
    assert len(body["executions"]) == expected_count
    assert body["pagination"] == {
        "page": page, "page_size": 3, "total_items": 7, "total_pages": 3,
        "has_next": has_next, "has_prev": has_prev, "next_page": next_page, "prev_page": prev_page,
    }


@pytest.mark.parametrize(
    ("total", "page_size", "total_pages"), [(1, 1, 1), (5, 5, 1), (6, 5, 2), (10, 5, 2), (11, 100, 1), (4, 3, 2)]
)
def test_total_pages_is_the_ceiling(
    alice_client: APIClient, make_execution: Any, alice: Any, total: int, page_size: int, total_pages: int
) -> None:
    make_many(alice, total)
    pagination = alice_client.get(f"{API}/executions", {"page_size": page_size}).json()["pagination"]
    assert (pagination["total_items"], pagination["total_pages"]) == (total, total_pages)


def test_pages_partition_the_list(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    created = make_many(alice, 8)
    pages = [
        ids(alice_client.get(f"{API}/executions", {"page": page, "page_size": 3, "order": "asc"})) for page in (1, 2, 3)
    ]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [i for p in pages for i in p] == created


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "x"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"page": ""}, "page"),
        ({"page": "9" * 30}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "101"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"status": "done"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"type": "robot"}, "type"),
        ({"sort": "execution_id"}, "sort"),
        ({"sort": "-created_at"}, "sort"),
        ({"order": "up"}, "order"),
        ({"target_id": "x" * 101}, "target_id"),
    ],
)
def test_list_refuses_bad_filter_and_page_values(alice_client: APIClient, params: dict[str, str], field: str) -> None:
    errors = assert_invalid(alice_client.get(f"{API}/executions", params))
    assert field in errors
    assert_messages(errors[field])


def test_list_refuses_a_repeated_parameter(alice_client: APIClient) -> None:
    errors = assert_invalid(alice_client.get(f"{API}/executions?status=pending&status=running"))
    assert "status" in errors


def test_list_accepts_the_largest_page_size(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    make_many(alice, 2)
    assert alice_client.get(f"{API}/executions", {"page_size": 100}).json()["pagination"]["page_size"] == 100


def test_list_filters_are_anded(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    pending_demo = make_execution(alice).id
    completed_demo = make_execution(alice, "completed").id
    completed_echo = make_execution(alice, "completed", type="agent", target_id="echo").id
    pending_echo = make_execution(alice, type="agent", target_id="echo").id
    cases = [
        ({"status": "completed"}, {completed_demo, completed_echo}),
        ({"status": "pending"}, {pending_demo, pending_echo}),
        ({"status": "failed"}, set()),
        ({"type": "agent"}, {completed_echo, pending_echo}),
        ({"type": "pipeline"}, {pending_demo, completed_demo}),
        ({"target_id": "echo"}, {completed_echo, pending_echo}),
        ({"target_id": "nothing_by_that_name"}, set()),
        ({"target_id": "echo\x00"}, set()),
        ({"target_id": "\x00"}, set()),
        ({"type": "agent", "status": "completed"}, {completed_echo}),
        ({"type": "pipeline", "target_id": "echo"}, set()),
        ({"type": "agent", "target_id": "echo", "status": "pending"}, {pending_echo}),
    ]
    for params, expected in cases:
        response = alice_client.get(f"{API}/executions", params)
        assert set(ids(response)) == expected, params
        assert response.json()["pagination"]["total_items"] == len(expected)


def test_sort_by_created_at_both_orders(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    created = make_many(alice, 4)
    assert ids(alice_client.get(f"{API}/executions", {"sort": "created_at", "order": "asc"})) == created
    assert ids(alice_client.get(f"{API}/executions", {"sort": "created_at", "order": "desc"})) == created[::-1]
    assert ids(alice_client.get(f"{API}/executions", {"order": "asc"})) == created


def staggered(owner: Any) -> dict[str, Execution]:
    """Started and completed in an order that differs from the creation order.

    a, b, c, d are created in that order; c then a start; a then c complete.
    b and d never start.
    """
    runs = {name: create_execution(owner) for name in "abcd"}
    record_start(runs["c"])
    record_start(runs["a"])
    record_completion(runs["a"])
    record_completion(runs["c"])
    return runs


def test_sort_by_started_at_puts_nulls_last_in_both_orders(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    runs = staggered(alice)
    a, b, c, d = (runs[n].id for n in "abcd")
    # Never started: nulls last, ties broken by created_at in the same order.
    assert ids(alice_client.get(f"{API}/executions", {"sort": "started_at", "order": "asc"})) == [c, a, b, d]
    assert ids(alice_client.get(f"{API}/executions", {"sort": "started_at", "order": "desc"})) == [a, c, d, b]


def test_sort_by_completed_at_puts_nulls_last_in_both_orders(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    runs = staggered(alice)
    a, b, c, d = (runs[n].id for n in "abcd")
    assert ids(alice_client.get(f"{API}/executions", {"sort": "completed_at", "order": "asc"})) == [a, c, b, d]
    assert ids(alice_client.get(f"{API}/executions", {"sort": "completed_at", "order": "desc"})) == [c, a, d, b]
    assert ids(alice_client.get(f"{API}/executions", {"sort": "completed_at"})) == [c, a, d, b], "desc by default"


def test_sort_by_status_is_alphabetical_with_ties_by_created_at(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    order = ["running", "completed", "pending", "cancelled", "completed", "failed"]
    created = [make_execution(alice, status).id for status in order]
    running, completed_1, pending, cancelled, completed_2, failed = created
    ascending = [cancelled, completed_1, completed_2, failed, pending, running]
    assert ids(alice_client.get(f"{API}/executions", {"sort": "status", "order": "asc"})) == ascending
    descending = [running, pending, failed, completed_2, completed_1, cancelled]
    assert ids(alice_client.get(f"{API}/executions", {"sort": "status", "order": "desc"})) == descending
    listed = alice_client.get(f"{API}/executions", {"sort": "status", "order": "asc"}).json()["executions"]
    statuses = [e["status"] for e in listed]
    assert statuses == sorted(statuses)


def test_ties_on_created_at_are_broken_by_execution_id(
    alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    created = make_many(alice, 5)
    # The one direct write in these tests: five rows created in the same microsecond.
    Execution.objects.filter(pk__in=created).update(created_at=timezone.now() - timedelta(minutes=1))
    assert ids(alice_client.get(f"{API}/executions", {"order": "asc"})) == sorted(created)
    assert ids(alice_client.get(f"{API}/executions", {"order": "desc"})) == sorted(created, reverse=True)
    assert ids(alice_client.get(f"{API}/executions", {"sort": "status", "order": "asc"})) == sorted(created)
    paged = [
        i for page in (1, 2, 3) for i in ids(alice_client.get(f"{API}/executions", {"page": page, "page_size": 2}))
    ]
    assert paged == sorted(created, reverse=True), "stable across pages"


def test_list_after_cancel_reflects_the_new_status(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice)
    execution_cancel(execution_id=execution.id)
    assert ids(alice_client.get(f"{API}/executions", {"status": "cancelled"})) == [execution.id]
    assert ids(alice_client.get(f"{API}/executions", {"status": "pending"})) == []


# --- GET /targets ------------------------------------------------------------------------------------


def targets_by_id(client: APIClient, slash: str = "") -> dict[tuple[str, str], dict[str, Any]]:
    response = client.get(f"{API}/targets{slash}")
    assert response.status_code == 200
    targets = response.json()["targets"]
    for target in targets:
        assert set(target) >= {"type", "target_id", "steps", "inputs"}
    return {(t["type"], t["target_id"]): t for t in targets}


@pytest.mark.parametrize("slash", ["", "/"])
def test_targets_lists_the_builtin_targets(alice_client: APIClient, slash: str) -> None:
    targets = targets_by_id(alice_client, slash)
    assert {("pipeline", "demo_steps"), ("pipeline", "customer_service_flow"), ("agent", "echo")} <= set(targets)
    assert targets[("pipeline", "demo_steps")]["steps"] is None
    assert targets[("pipeline", "customer_service_flow")]["steps"] == ["classify", "retrieve", "respond"]
    assert targets[("agent", "echo")]["steps"] == ["echo"]


def test_demo_steps_input_schema(alice_client: APIClient) -> None:
    schema = targets_by_id(alice_client)[("pipeline", "demo_steps")]["inputs"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == []
    props = schema["properties"]
    assert set(props) == {"steps", "step_seconds", "fail_at_step"}
    assert {k: props["steps"][k] for k in ("type", "minimum", "maximum", "default")} == {
        "type": "integer", "minimum": 1, "maximum": 10_000, "default": 5,
    }
    assert {k: props["step_seconds"][k] for k in ("type", "minimum", "maximum", "default")} == {
        "type": "number", "minimum": 0, "maximum": 60, "default": 1.0,
    }
    assert props["fail_at_step"]["type"] == ["integer", "null"]
    assert props["fail_at_step"]["minimum"] == 1
    assert props["fail_at_step"]["default"] is None


def test_customer_service_flow_and_echo_schemas(alice_client: APIClient) -> None:
    targets = targets_by_id(alice_client)
    schema = targets[("pipeline", "customer_service_flow")]["inputs"]
    assert schema["required"] == ["customer_query"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["customer_query"]["type"] == "string"
    assert schema["properties"]["customer_query"]["minLength"] == 1
    assert "default" not in schema["properties"]["customer_query"]
    echo = targets[("agent", "echo")]["inputs"]
    assert echo["type"] == "object" and echo["additionalProperties"] is True


def test_target_schemas_are_valid_json_schema_and_agree_with_submit(alice_client: APIClient) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for (_type, target_id), target in targets_by_id(alice_client).items():
        validator = jsonschema.Draft202012Validator(target["inputs"])
        jsonschema.Draft202012Validator.check_schema(target["inputs"])
        properties = target["inputs"].get("properties", {})
        defaults = {name: prop["default"] for name, prop in properties.items() if "default" in prop}
        assert validator.is_valid(defaults) == (not target["inputs"].get("required")), (target_id, defaults)
    validator = jsonschema.Draft202012Validator(targets_by_id(alice_client)[("pipeline", "demo_steps")]["inputs"])
    assert not validator.is_valid({"steps": 0})
    assert not validator.is_valid({"steps": "5"})
    assert not validator.is_valid({"bogus": 1})
    assert validator.is_valid({"steps": 10_000, "step_seconds": 0, "fail_at_step": None})


def test_targets_is_read_only(alice_client: APIClient) -> None:
    assert_error(submit(alice_client, {"type": "agent"}, f"{API}/targets"), 405)


# --- conventions --------------------------------------------------------------------------------


def test_every_timestamp_has_an_explicit_utc_offset(alice_client: APIClient, make_execution: Any, alice: Any) -> None:
    execution = make_execution(alice, "completed")
    cancelled = make_execution(alice, "cancelled")
    failed = make_execution(alice, "failed")
    for item in (execution, cancelled, failed):
        body = alice_client.get(f"{API}/executions/{item.id}").json()
        for key in ("created_at", "started_at", "completed_at", "failed_at", "cancelled_at"):
            if body[key] is not None:
                assert_timestamp(body[key])
        for event in alice_client.get(f"{API}/executions/{item.id}/events").json()["events"]:
            assert_timestamp(event["timestamp"])
    for item in alice_client.get(f"{API}/executions").json()["executions"]:
        assert_timestamp(item["created_at"])


def test_a_pending_execution_can_be_submitted_and_followed_end_to_end(
    alice_client: APIClient, django_capture_on_commit_callbacks: Any, task_queue: Any
) -> None:
    """Submit through the API, let the services run it, read it back through every endpoint."""
    with django_capture_on_commit_callbacks(execute=True):
        body = submit(alice_client, {"type": "agent", "target_id": "echo", "inputs": {"say": "hi"}}).json()
    assert task_queue.execution_ids == [body["execution_id"]]
    execution = Execution.objects.get(pk=body["execution_id"])
    assert alice_client.get(body["progress_url"]).status_code == 204
    record_start(execution)
    assert alice_client.get(body["progress_url"]).json() == start_progress(1)
    detail = alice_client.get(body["status_url"]).json()
    assert detail["status"] == "running"
    assert detail["seq"] == 1
