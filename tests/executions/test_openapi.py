"""The OpenAPI schema (/api/v1/schema), the docs (/api/v1/docs), and the JSON
answers for paths and methods the API does not serve (docs/protocol/rest.md).

Real answers are validated against the schema in test_api_responses.py, and
the frames and the execution's shape in test_frames.py."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from drf_spectacular.validation import validate_schema
from rest_framework.exceptions import Throttled
from rest_framework.test import APIClient

from core.api_errors import exception_handler
from core.params import MAX_QUERY_INTEGER
from executions.api import urls as api_urls
from progress import urls as progress_urls
from tests.frames import published_schema

from ..helpers import PASSWORD

API = "/api/v1"
EXECUTION = f"{API}/executions/{{execution_id}}"
MISSING_ID = "exec_000000000000"

# Every operation with every status code it can answer (the table of docs/protocol/rest.md,
# plus what the framework answers on its own: 401, 403 CSRF, 406, 413, 415, 429
# from the throttles on submit, cancel and token requests).
OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", f"{API}/executions"): {"200", "400", "401", "406"},
    ("post", f"{API}/executions"): {"202", "400", "401", "403", "404", "406", "409", "413", "415", "429", "503"},
    ("get", EXECUTION): {"200", "401", "404", "406"},
    ("get", f"{EXECUTION}/progress"): {"200", "204", "401", "404", "406"},
    ("post", f"{EXECUTION}/cancel"): {"200", "400", "401", "403", "404", "406", "429"},
    ("post", f"{EXECUTION}/rerun"): {"202", "400", "401", "403", "404", "406", "413", "415", "429", "503"},
    ("get", f"{EXECUTION}/events"): {"200", "400", "401", "404", "406"},
    ("get", f"{EXECUTION}/steps"): {"200", "401", "404", "406"},
    # Server-Sent Events (progress/sse.py): not a DRF view, so no 406 (it always streams).
    ("get", f"{EXECUTION}/progress/stream"): {"200", "204", "400", "401", "404"},
    ("get", f"{API}/targets"): {"200", "401", "406"},
    ("post", f"{API}/auth/token"): {"200", "400", "406", "413", "415", "429"},
}
ERROR_SCHEMAS = {"#/components/schemas/Detail", "#/components/schemas/ValidationError"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(alice_client: APIClient) -> dict[str, Any]:
    response = alice_client.get(f"{API}/schema?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in schema["paths"].items() for method, op in item.items()}


def route_path(regex: str) -> str:
    """``^executions/(?P<execution_id>[^/]+)/cancel/?$`` -> ``/api/v1/executions/{execution_id}/cancel``."""
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", regex.removeprefix("^").removesuffix("/?$"))
    return f"{API}/{path}"


def test_every_route_and_method_is_documented(schema: dict[str, Any]) -> None:
    documented = set(operations(schema))
    routed = set()
    for pattern in [*api_urls.urlpatterns, *progress_urls.urlpatterns]:
        # DRF views carry ``cls``; Django's own class-based views (the SSE one) ``view_class``.
        view = getattr(pattern.callback, "cls", None) or pattern.callback.view_class
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                routed.add((method, route_path(pattern.pattern.regex.pattern)))
    assert routed == documented == set(OPERATIONS)


def test_every_status_code_is_documented(schema: dict[str, Any]) -> None:
    for key, op in operations(schema).items():
        assert set(op["responses"]) == OPERATIONS[key], key


def test_error_answers_have_a_detail_string(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["Detail"]["required"] == ["detail"]
    assert components["ValidationError"]["required"] == ["detail"], "a body that is not JSON has no field map"
    for key, op in operations(schema).items():
        for code, response in op["responses"].items():
            if code >= "400":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref in ERROR_SCHEMAS, (key, code)


def test_auth_errors_and_throttling_document_their_headers(schema: dict[str, Any]) -> None:
    for key, op in operations(schema).items():
        responses = op["responses"]
        if "401" in responses:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True, key
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}, key


def test_security_schemes_and_requirements(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {
        "type": "apiKey", "in": "header", "name": "Authorization", "description": schemes["tokenAuth"]["description"],
    }
    assert "Token" in schemes["tokenAuth"]["description"]
    assert schemes["cookieAuth"] == {"type": "apiKey", "in": "cookie", "name": "sessionid"}
    assert "security" not in schema, "no API-wide default: each operation says what it needs"
    for (method, path), op in operations(schema).items():
        if path == f"{API}/auth/token":
            assert not op.get("security"), "anyone may exchange a password for a token"
        else:
            assert op["security"] == [{"tokenAuth": []}, {"cookieAuth": []}], (method, path)


def test_execution_id_format_is_described_not_enforced(schema: dict[str, Any]) -> None:
    """Any segment is accepted and an unknown one is a 404; a pattern would declare it invalid input."""
    for (_method, path), op in operations(schema).items():
        if "{execution_id}" in path:
            (parameter,) = [p for p in op["parameters"] if p["in"] == "path"]
            assert parameter["name"] == "execution_id" and parameter["required"]
            assert "exec_" in parameter["description"] and "404" in parameter["description"]
            assert re.fullmatch(r"exec_[0-9a-f]{12}", parameter["example"])


def test_shapes(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    submit = components["ExecutionSubmit"]["properties"]
    assert submit["inputs"]["type"] == submit["config"]["type"] == "object"
    assert {"type": "string", "maxLength": 0} in submit["callback_url"]["oneOf"], "empty means no callback"
    assert components["ExecutionStatusEnum"]["enum"] == ["pending", "running", "completed", "failed", "cancelled"]
    assert set(components["Execution"]["required"]) >= {
        "execution_id", "type", "target_id", "status", "progress", "inputs", "config", "outputs", "error",
        "created_at", "started_at", "completed_at", "failed_at", "cancelled_at", "seq",
    }
    progress = schema["paths"][f"{EXECUTION}/progress"]["get"]["responses"]
    assert progress["200"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Progress"
    assert "content" not in progress["204"]
    events = schema["paths"][f"{EXECUTION}/events"]["get"]["responses"]["200"]
    assert events["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Events"
    assert components["Events"]["properties"]["events"]["items"]["$ref"] == "#/components/schemas/EventFrame"
    frame = components["EventFrame"]
    assert frame["discriminator"]["propertyName"] == "type"
    assert set(frame["discriminator"]["mapping"]) == {
        "started", "progress", "resumed", "completed", "failed", "cancelled"
    }
    for name in ("StartedFrame", "ProgressFrame", "ResumedFrame", "TerminalFrame"):
        assert {"type", "execution_id", "status", "seq", "timestamp"} <= set(components[name]["required"]), name
    assert {"progress", "outputs", "error"} <= set(components["TerminalFrame"]["required"])
    assert {"progress", "attempt"} <= set(components["ResumedFrame"]["required"])
    assert components["ResumedFrame"]["properties"]["attempt"] == {
        "type": "integer", "minimum": 2, "description": "The attempt that took the run up"
    }
    assert "attempt" in components["Execution"]["required"]
    steps = schema["paths"][f"{EXECUTION}/steps"]["get"]["responses"]["200"]
    assert steps["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Steps"
    step = components["Step"]
    assert set(step["required"]) == {"name", "status", "attempt", "started_at", "finished_at", "reused_from"}
    assert components[step["properties"]["status"]["$ref"].rsplit("/", 1)[1]]["enum"] == [
        "pending", "running", "completed", "failed"
    ]


def test_nullable_values_are_json_schema_nulls(schema: dict[str, Any]) -> None:
    """OpenAPI 3.1: null is a JSON Schema type. Under 3.0.3, drf-spectacular wrote a nullable
    object as ``allOf: [$ref]`` with ``nullable: true`` and no ``type``, which strict
    validators ignore: they rejected the nulls the server really sends."""
    assert schema["openapi"] == "3.1.0"
    assert "nullable" not in json.dumps(schema), "a 3.0 keyword: 3.1 validators ignore it"
    components = schema["components"]["schemas"]
    progress = {"oneOf": [{"$ref": "#/components/schemas/Progress"}, {"type": "null"}]}
    error = {"oneOf": [{"$ref": "#/components/schemas/ErrorInfo"}, {"type": "null"}]}
    for name in ("Execution", "TerminalFrame", "StatusFrame"):
        assert components[name]["properties"]["progress"] == progress, name
    for name in ("Execution", "TerminalFrame"):
        assert components[name]["properties"]["error"] == error, name
        assert components[name]["properties"]["outputs"]["type"] == ["object", "null"], name
    assert components["Execution"]["properties"]["started_at"]["type"] == ["string", "null"]
    callback = components["ExecutionSubmit"]["properties"]["callback_url"]
    assert {"type": "null"} in callback["oneOf"] and {"type": "string", "maxLength": 0} in callback["oneOf"]


def test_every_websocket_frame_is_published(schema: dict[str, Any]) -> None:
    """The frames sent only on the WebSocket (status, error) are components too, named
    from the events operation, whose events are the other frames."""
    components = schema["components"]["schemas"]
    websocket = schema["paths"][f"{EXECUTION}/events"]["get"]["x-websocket"]
    assert websocket["path"] == f"{EXECUTION}/progress/ws"
    assert websocket["frames"] == {"$ref": "#/components/schemas/WebSocketFrame"}
    frame = components["WebSocketFrame"]
    assert frame["discriminator"]["propertyName"] == "type"
    assert frame["discriminator"]["mapping"] == {
        "status": "#/components/schemas/StatusFrame",
        "started": "#/components/schemas/StartedFrame",
        "progress": "#/components/schemas/ProgressFrame",
        "resumed": "#/components/schemas/ResumedFrame",
        "completed": "#/components/schemas/TerminalFrame",
        "failed": "#/components/schemas/TerminalFrame",
        "cancelled": "#/components/schemas/TerminalFrame",
        "error": "#/components/schemas/ErrorFrame",
    }
    assert set(components["StatusFrame"]["required"]) == {
        "type", "execution_id", "status", "progress", "seq", "timestamp"
    }
    assert set(components["ErrorFrame"]["required"]) == {"type", "message", "code", "timestamp"}
    assert components["ErrorFrame"]["properties"]["code"]["type"] == ["integer", "null"]


def test_the_execution_feed_is_published(schema: dict[str, Any]) -> None:
    """Its frames are a component of their own, named from the list operation it streams."""
    components = schema["components"]["schemas"]
    feed = schema["paths"][f"{API}/executions"]["get"]["x-websocket"]
    assert feed["path"] == f"{API}/executions/ws"
    assert feed["frames"] == {"$ref": "#/components/schemas/ExecutionFeedFrame"}
    assert "x-websocket" not in schema["paths"][f"{API}/executions"]["post"]
    frame = components["ExecutionFeedFrame"]
    assert frame["discriminator"]["mapping"] == {
        "snapshot": "#/components/schemas/SnapshotFrame",
        "created": "#/components/schemas/CreatedFrame",
        "started": "#/components/schemas/StartedFrame",
        "progress": "#/components/schemas/ProgressFrame",
        "resumed": "#/components/schemas/ResumedFrame",
        "completed": "#/components/schemas/TerminalFrame",
        "failed": "#/components/schemas/TerminalFrame",
        "cancelled": "#/components/schemas/TerminalFrame",
        "error": "#/components/schemas/ErrorFrame",
    }
    assert set(components["SnapshotFrame"]["required"]) == {"type", "executions", "timestamp"}
    snapshot_items = components["SnapshotFrame"]["properties"]["executions"]["items"]
    assert snapshot_items == {"$ref": "#/components/schemas/Execution"}
    assert set(components["CreatedFrame"]["required"]) == {"type", "execution_id", "execution", "timestamp"}
    assert components["CreatedFrame"]["properties"]["execution"] == {"$ref": "#/components/schemas/Execution"}


def test_eta_rerun_and_idempotency_key_are_documented(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    eta = components["Progress"]["properties"]["eta_seconds"]
    assert eta["type"] == ["number", "null"] and eta["minimum"] == 0
    assert "eta_seconds" in components["Progress"]["required"]
    assert components["Execution"]["properties"]["rerun_of"]["type"] == ["string", "null"]
    assert {"rerun_of", "owner"} <= set(components["Execution"]["required"])
    rerun = schema["paths"][f"{EXECUTION}/rerun"]["post"]
    accepted = rerun["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {"$ref": "#/components/schemas/ExecutionRerun"}
    submitted = set(components["ExecutionSubmitted"]["required"])
    assert set(components["ExecutionRerun"]["required"]) == submitted | {"rerun_of"}
    body = rerun["requestBody"]
    assert not body.get("required"), "no body: a plain rerun"
    request = body["content"]["application/json"]["schema"]
    assert components[request["$ref"].rsplit("/", 1)[1]]["properties"]["from_failed_step"]["type"] == "boolean"
    submit = schema["paths"][f"{API}/executions"]["post"]
    (header,) = [p for p in submit["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key" and not header.get("required")
    assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}
    replayed = submit["responses"]["202"]["headers"]["Idempotent-Replayed"]
    assert replayed["schema"] == {"type": "string", "enum": ["true"]} and not replayed.get("required")


def test_the_served_schema_is_the_generated_one(schema: dict[str, Any], alice_client: APIClient) -> None:
    """What the tests validate against (``tests.frames.published_schema``) is what clients
    get, and generating it again changes nothing: a field schema shared between
    generations once gained one more ``{"type": "null"}`` branch at each."""
    assert schema == published_schema()
    again = alice_client.get(f"{API}/schema?format=json")
    assert json.loads(again.content) == schema


def test_submit_answer_links_to_the_execution(schema: dict[str, Any]) -> None:
    links = schema["paths"][f"{API}/executions"]["post"]["responses"]["202"]["links"]
    assert {link["operationId"] for link in links.values()} == {
        "executions_retrieve", "executions_progress", "executions_events", "executions_cancel",
    }
    ids = {op["operationId"] for op in operations(schema).values()}
    assert all(link["operationId"] in ids for link in links.values())


def test_schema_is_valid_openapi_3_1_and_generates_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    call_command(
        "spectacular", "--format", "openapi-json", "--validate", "--fail-on-warn", "--file", str(out),
        stderr=StringIO(),
    )
    schema = json.loads(out.read_text())
    assert schema["openapi"] == "3.1.0"
    validate_schema(schema)  # against the OpenAPI 3.1 JSON Schema that drf-spectacular ships


# --- serving the schema and the docs -----------------------------------------------------------


def test_schema_needs_authentication(anon_client: APIClient) -> None:
    response = anon_client.get(f"{API}/schema?format=json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("path", [f"{API}/schema", f"{API}/schema/"])
def test_schema_is_served_with_a_token(alice_client: APIClient, path: str) -> None:
    response = alice_client.get(path, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert json.loads(response.content)["info"]["title"] == "Executions API"


@pytest.mark.parametrize("path", [f"{API}/docs", f"{API}/docs/"])
def test_docs_render_for_a_logged_in_user(alice: Any, path: str) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page and f"{API}/schema" in page


def test_docs_send_anonymous_visitors_to_the_login_page() -> None:
    response = Client().get(f"{API}/docs")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- paths and methods the API does not serve ------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
@pytest.mark.parametrize(
    "path", [f"{API}/nope", "/api/v2/x", "/api/", f"{API}/executions/{MISSING_ID}/progress/ws", f"{API}/targets/x"]
)
def test_unknown_api_paths_are_json_404s(
    anon_client: APIClient, alice_client: APIClient, method: str, path: str
) -> None:
    for client in (anon_client, alice_client):
        response = getattr(client, method)(path)
        assert response.status_code == 404, (method, path)
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": f"No API endpoint at '{path}'"}


def test_unknown_api_path_is_404_even_for_a_session_post_without_csrf(alice: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(f"{API}/nope", "{}", content_type="application/json")
    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", f"{API}/executions", "GET, POST, HEAD, OPTIONS"),
        ("put", f"{API}/targets", "GET, HEAD, OPTIONS"),
        ("get", f"{API}/executions/{MISSING_ID}/cancel", "POST, OPTIONS"),
        ("patch", f"{API}/executions/{MISSING_ID}", "GET, HEAD, OPTIONS"),
        ("get", f"{API}/auth/token", "POST, OPTIONS"),
        ("post", f"{API}/executions/{MISSING_ID}/progress/stream", "GET, OPTIONS"),
    ],
)
def test_wrong_method_is_a_json_405_with_allow(alice_client: APIClient, method: str, path: str, allowed: str) -> None:
    response = getattr(alice_client, method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}
    assert set(response["Allow"].split(", ")) == set(allowed.split(", "))


# --- regressions found by the schema and by Schemathesis ---------------------------------------


def test_after_seq_limit_is_documented_and_enforced(
    schema: dict[str, Any], alice_client: APIClient, make_execution: Any, alice: Any
) -> None:
    """Schemathesis sent a 19-digit after_seq, valid per the schema, and got 400: the
    limit (18 digits, so no comparison can overflow the database) is now documented."""
    (parameter,) = [p for p in schema["paths"][f"{EXECUTION}/events"]["get"]["parameters"] if p["name"] == "after_seq"]
    assert parameter["schema"]["minimum"] == 0
    assert parameter["schema"]["maximum"] == MAX_QUERY_INTEGER == 10**18 - 1
    execution = make_execution(alice)
    path = f"{API}/executions/{execution.id}/events"
    response = alice_client.get(path, {"after_seq": str(MAX_QUERY_INTEGER)})
    assert (response.status_code, response.json()) == (200, {"events": []})
    response = alice_client.get(path, {"after_seq": str(MAX_QUERY_INTEGER + 1)})
    assert response.status_code == 400
    assert "after_seq" in response.json()["errors"]


def test_empty_callback_url_means_none(alice_client: APIClient) -> None:
    """Schemathesis: ``"callback_url": ""`` is accepted (no callback); the schema said only URIs were."""
    body = {"type": "agent", "target_id": "echo", "callback_url": ""}
    response = alice_client.post(f"{API}/executions", json.dumps(body), content_type="application/json")
    assert response.status_code == 202
    detail = alice_client.get(response.json()["status_url"]).json()
    assert detail["callback_url"] is None


def test_token_endpoint_ignores_stale_credentials(alice: Any) -> None:
    """A client holding a deleted token could not get a new one: the stale header got 401."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")
    response = client.post(
        f"{API}/auth/token", json.dumps({"username": "alice", "password": PASSWORD}), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["token"]


def test_token_endpoint_needs_no_csrf_token_with_a_session(alice: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(
        f"{API}/auth/token", json.dumps({"username": "alice", "password": PASSWORD}), content_type="application/json"
    )
    assert response.status_code == 200


@pytest.mark.parametrize("wait", [0, 0.2, None])
def test_throttled_answer_always_has_retry_after(wait: float | None) -> None:
    """DRF leaves Retry-After out when the wait rounds to 0; the schema requires it (>= 1)."""
    response = exception_handler(Throttled(wait=wait), {})
    assert response is not None and response.status_code == 429
    assert int(response["Retry-After"]) >= 1
