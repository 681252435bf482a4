"""Real answers of every operation, validated against the published OpenAPI schema.

Each scenario below makes real requests through DRF's ``APIClient``, with
executions brought to their state by the services (``states.py``), and every
answer is validated by openapi-core, a strict implementation of OpenAPI 3.1
independent of drf-spectacular: the status code must be documented for the
operation, the content type and the required headers (``WWW-Authenticate``,
``Retry-After``) must be there, and the body must match its schema in 3.1's
JSON Schema dialect, formats included. A second pass, against a copy of the
schema closed to undocumented keys (``tests.frames.closed``), catches a key
the server sends but the schema does not list.

``test_every_documented_answer_is_produced`` holds the scenarios to the
schema: each (operation, status code) it documents is produced here, so a new
answer in the schema needs a scenario.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpResponse
from kombu.exceptions import OperationalError
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.testing import MockRequest, MockResponse
from rest_framework.test import APIClient

from core.throttles import CancelThrottle, SubmitThrottle, TokenThrottle
from executions.api import views as api_views
from executions.errors import BrokerUnavailableError
from executions.models import Execution
from tests.frames import assert_matches_component, closed, published_schema

from ..helpers import PASSWORD, token_client
from .states import CALLBACK_URL, EXECUTION_STATES

API = "/api/v1"
EXECUTIONS = f"{API}/executions"
EXECUTION = f"{API}/executions/{{execution_id}}"
PROGRESS = f"{EXECUTION}/progress"
CANCEL = f"{EXECUTION}/cancel"
RERUN = f"{EXECUTION}/rerun"
EVENTS = f"{EXECUTION}/events"
STEPS = f"{EXECUTION}/steps"
STREAM = f"{EXECUTION}/progress/stream"
TARGETS = f"{API}/targets"
TOKEN = f"{API}/auth/token"
MISSING_ID = "exec_000000000000"
HOST_URL = "http://testserver"

pytestmark = pytest.mark.django_db


@functools.cache
def validators() -> tuple[OpenAPI, OpenAPI]:
    """openapi-core over the published schema, and over its closed copy (built once:
    openapi-core first validates the document itself)."""
    schema = published_schema()
    # The schema of an event stream describes each event (see ``events_as_answers``).
    config = Config(extra_media_type_deserializers={"text/event-stream": json_loads})
    return OpenAPI.from_dict(schema, config=config), OpenAPI.from_dict(closed(schema), config=config)


def answer_errors(validator: OpenAPI, method: str, path: str, response: HttpResponse) -> list[str]:
    """What openapi-core finds wrong with ``response`` as the answer to ``method path``."""
    request = MockRequest(HOST_URL, method, path.split("?", 1)[0])
    answer = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("Content-Type", ""),
    )
    # The cause says which value broke which rule; the error itself only which part.
    return [f"{error!r}: {error.__cause__!r}" for error in validator.iter_response_errors(request, answer)]


#: The block every event stream opens with: how long an EventSource waits to reconnect.
RETRY_BLOCK = re.compile(r"retry: [0-9]+")


def events_as_answers(response: HttpResponse) -> list[HttpResponse]:
    """An event stream as one answer per event, each event's fields as a JSON object: what
    its schema describes (Schemathesis reads it the same way). The frame in each event's
    ``data`` is checked against the frames' components too (JSON Schema only annotates
    ``contentSchema``)."""
    answers = []
    for block in response.content.decode().split("\n\n")[:-1]:
        if block.startswith(":") or RETRY_BLOCK.fullmatch(block):
            continue  # a comment, or the retry field the stream opens with: no event
        event = dict(line.split(": ", 1) for line in block.split("\n"))
        assert_matches_component(json.loads(event["data"]), "WebSocketFrame")
        answer = HttpResponse(json.dumps(event), status=response.status_code, content_type=response["Content-Type"])
        answers.append(answer)
    assert answers, "an event stream has a status event at least"
    return answers


def assert_valid_answer(method: str, path: str, response: HttpResponse) -> None:
    published, closed_to_extras = validators()
    answers = events_as_answers(response) if response.get("Content-Type") == "text/event-stream" else [response]
    for (validator, which), answer in itertools.product(
        ((published, "the published schema"), (closed_to_extras, "it closed to extra keys")), answers
    ):
        errors = answer_errors(validator, method, path, answer)
        assert not errors, (
            f"{method.upper()} {path} -> {response.status_code} does not match {which}:\n"
            + "\n".join(errors)
            + f"\n{answer.content[:2000]!r}"
        )


# --- the world a scenario runs in -----------------------------------------------------------


@dataclass
class World:
    """Clients and executions for the scenarios; every answer goes through ``call``."""

    alice: Any
    bob: Any
    settings: Any
    monkeypatch: pytest.MonkeyPatch
    executions: dict[str, Execution] = field(default_factory=dict)

    def __post_init__(self) -> None:
        session = APIClient(enforce_csrf_checks=True)
        session.force_login(self.alice)
        self.clients = {
            "alice": token_client(self.alice),
            "bob": token_client(self.bob),
            "anonymous": APIClient(),
            "session without CSRF token": session,
        }

    def execution_id(self, label: str) -> str:
        """The id of the execution in state ``label`` (made on first use); "missing" names none."""
        if label == "missing":
            return MISSING_ID
        if label not in self.executions:
            self.executions[label] = EXECUTION_STATES[label](self.alice)
        return self.executions[label].id

    def throttle(self, scope: str) -> None:
        """Turn one throttle on at 1/min, counting in a store of its own (the shared Redis may hold counts)."""
        for throttle in (SubmitThrottle, CancelThrottle, TokenThrottle):
            self.monkeypatch.setattr(throttle, "cache", LocMemCache(f"answers-{uuid.uuid4()}", {}))
        self.settings.EXECUTION_THROTTLE_RATES = {"submit": None, "cancel": None, "token": None, scope: "1/min"}

    def call(
        self,
        method: str,
        template: str,
        *,
        label: str = "running",
        client: str = "alice",
        query: str = "",
        body: Any = None,
        documented: bool = True,
        **extra: Any,
    ) -> HttpResponse:
        """Send one request and validate the answer against the operation at ``template``
        (or, for a method or path the schema does not describe, its body against ``Detail``).

        ``body`` is sent as JSON, unless it is a string (sent as it is, with the
        ``content_type`` given in ``extra``).
        """
        path = template.format(execution_id=self.execution_id(label)) if "{" in template else template
        if query:
            path = f"{path}?{query}"
        if body is not None and not isinstance(body, str):
            extra.setdefault("content_type", "application/json")
            body = json.dumps(body)
        if body is not None:
            extra["data"] = body
        response = getattr(self.clients[client], method)(path, **extra)
        if response.streaming:
            response = read_whole(response)
        if documented:
            assert_valid_answer(method, path, response)
        else:
            assert_matches_component(json.loads(response.content), "Detail")
        return response


def read_whole(response: Any) -> HttpResponse:
    """A streamed answer (Server-Sent Events of an ended execution end on their own) as a plain one."""
    with warnings.catch_warnings():
        # Django's note that a sync test client consumes the async iterator whole: that is the point here.
        warnings.simplefilter("ignore")
        body = b"".join(response)
    whole = HttpResponse(body, status=response.status_code, content_type=response["Content-Type"])
    for name, value in response.headers.items():
        if name.lower() != "content-type":
            whole[name] = value
    return whole


@pytest.fixture
def world(alice: Any, bob: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    settings.WEBHOOK_ALLOW_PRIVATE = True  # a submit with CALLBACK_URL (loopback)
    return World(alice=alice, bob=bob, settings=settings, monkeypatch=monkeypatch)


# --- the scenarios --------------------------------------------------------------------------

# Not text/html: with DJANGO_DEBUG on (as in tests) the browsable API serves that.
XML_ONLY = {"HTTP_ACCEPT": "application/xml"}
FORM = "application/x-www-form-urlencoded"
SUBMIT = {"type": "pipeline", "target_id": "demo_steps", "inputs": {"steps": 2, "step_seconds": 0}}
GUESS = {"username": "alice", "password": "guess"}
RESUME = {"from_failed_step": True}
CREDENTIALS = {"username": "alice", "password": PASSWORD}


def too_large() -> dict[str, Any]:
    blob = "x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    return {"type": "agent", "target_id": "echo", "inputs": {"blob": blob}}


@dataclass(frozen=True)
class Scenario:
    """One request (the arguments of ``World.call``) and the status code it must get."""

    name: str
    method: str
    template: str
    status: int
    request: dict[str, Any] = field(default_factory=dict)
    #: Runs first: answers it provokes are validated too.
    before: Callable[[World], None] | None = None

    @property
    def documented(self) -> bool:
        return self.request.get("documented", True)


def every_state(world: World) -> None:
    for label in EXECUTION_STATES:
        world.execution_id(label)


def every_state_events(world: World) -> None:
    for label in EXECUTION_STATES:
        assert world.call("get", EVENTS, label=label).status_code == 200


def first_submit_of_the_minute(world: World) -> None:
    world.throttle("submit")
    assert world.call("post", EXECUTIONS, body=SUBMIT).status_code == 202


def broker_down(world: World) -> None:
    """The service's refusal (tested for real in test_services): here only the answer's shape."""

    def refuse(**kwargs: Any) -> None:
        raise BrokerUnavailableError(OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."))

    world.monkeypatch.setattr(api_views, "execution_submit", refuse)
    world.monkeypatch.setattr(api_views, "execution_rerun", refuse)


KEY = "retry-9f2c"


def first_submit_with_the_key(world: World) -> None:
    assert world.call("post", EXECUTIONS, body=SUBMIT, HTTP_IDEMPOTENCY_KEY=KEY).status_code == 202


def inputs_no_longer_valid(world: World) -> None:
    """The target's declaration changed since the run: its stored inputs are refused now."""
    Execution.objects.filter(pk=world.execution_id("completed")).update(inputs={"steps": 0})


def first_rerun_of_the_minute(world: World) -> None:
    world.throttle("submit")
    assert world.call("post", RERUN, label="completed").status_code == 202


def first_cancel_of_the_minute(world: World) -> None:
    world.throttle("cancel")
    assert world.call("post", CANCEL, label="pending").status_code == 200


def first_guess_of_the_minute(world: World) -> None:
    world.throttle("token")
    assert world.call("post", TOKEN, client="anonymous", body=GUESS).status_code == 400


def for_every_state(template: str, status_of: Callable[[str], int]) -> list[Scenario]:
    return [Scenario(label, "get", template, status_of(label), {"label": label}) for label in EXECUTION_STATES]


def progress_status(label: str) -> int:
    """No progress yet: 204 (pending, or ended before it started)."""
    return 204 if label in ("pending", "cancelled while pending", "failed before start") else 200


S = Scenario
SCENARIOS: list[Scenario] = [
    # GET /executions
    S("every state", "get", EXECUTIONS, 200, {"query": "page_size=100&sort=completed_at&order=asc"}, every_state),
    S("past the last page", "get", EXECUTIONS, 200, {"query": "page=9"}),
    S("filtered", "get", EXECUTIONS, 200, {"query": "status=failed&type=pipeline&target_id=demo_steps"}, every_state),
    S("bad page", "get", EXECUTIONS, 400, {"query": "page=0"}),
    S("repeated parameter", "get", EXECUTIONS, 400, {"query": "sort=status&sort=seq"}),
    S("anonymous", "get", EXECUTIONS, 401, {"client": "anonymous"}),
    S("xml only", "get", EXECUTIONS, 406, XML_ONLY),
    # POST /executions
    S("pipeline", "post", EXECUTIONS, 202, {"body": SUBMIT}),
    S(
        "agent with a callback",
        "post",
        EXECUTIONS,
        202,
        {"body": {"type": "agent", "target_id": "echo", "callback_url": CALLBACK_URL, "config": {"timeout": 3}}},
    ),
    S("missing field", "post", EXECUTIONS, 400, {"body": {"type": "pipeline"}}),
    S("invalid inputs", "post", EXECUTIONS, 400, {"body": {**SUBMIT, "inputs": {"steps": 0}}}),
    S("not a JSON object", "post", EXECUTIONS, 400, {"body": [1, 2]}),
    S("malformed JSON", "post", EXECUTIONS, 400, {"body": "{", "content_type": "application/json"}),
    S("anonymous", "post", EXECUTIONS, 401, {"client": "anonymous", "body": SUBMIT}),
    S("session without CSRF token", "post", EXECUTIONS, 403, {"client": "session without CSRF token", "body": SUBMIT}),
    S("unknown target", "post", EXECUTIONS, 404, {"body": {"type": "agent", "target_id": "nope"}}),
    S("xml only", "post", EXECUTIONS, 406, {"body": SUBMIT, **XML_ONLY}),
    S("body too large", "post", EXECUTIONS, 413, {"body": too_large()}),
    S("form encoded", "post", EXECUTIONS, 415, {"body": "type=agent", "content_type": FORM}),
    S("throttled", "post", EXECUTIONS, 429, {"body": SUBMIT}, first_submit_of_the_minute),
    S("broker unreachable", "post", EXECUTIONS, 503, {"body": SUBMIT}, broker_down),
    S(
        "a repeat with its Idempotency-Key", "post", EXECUTIONS, 202, {"body": SUBMIT, "HTTP_IDEMPOTENCY_KEY": KEY},
        first_submit_with_the_key,
    ),
    S("an Idempotency-Key too long", "post", EXECUTIONS, 400, {"body": SUBMIT, "HTTP_IDEMPOTENCY_KEY": "k" * 256}),
    S(
        "an Idempotency-Key with another body",
        "post",
        EXECUTIONS,
        409,
        {"body": {**SUBMIT, "inputs": {"steps": 3}}, "HTTP_IDEMPOTENCY_KEY": KEY},
        first_submit_with_the_key,
    ),
    # GET /executions/{id}
    *for_every_state(EXECUTION, lambda label: 200),
    S("anonymous", "get", EXECUTION, 401, {"client": "anonymous"}),
    S("unknown id", "get", EXECUTION, 404, {"label": "missing"}),
    S("someone else's", "get", EXECUTION, 404, {"client": "bob"}),
    S("xml only", "get", EXECUTION, 406, XML_ONLY),
    # GET /executions/{id}/progress
    *for_every_state(PROGRESS, progress_status),
    S("anonymous", "get", PROGRESS, 401, {"client": "anonymous"}),
    S("unknown id", "get", PROGRESS, 404, {"label": "missing"}),
    S("xml only", "get", PROGRESS, 406, XML_ONLY),
    # POST /executions/{id}/cancel
    S("pending", "post", CANCEL, 200, {"label": "pending"}),
    S("running", "post", CANCEL, 200, {"label": "running"}),
    S("already completed", "post", CANCEL, 400, {"label": "completed"}),
    S("already cancelled", "post", CANCEL, 400, {"label": "cancelled while running"}),
    S("anonymous", "post", CANCEL, 401, {"client": "anonymous"}),
    S("session without CSRF token", "post", CANCEL, 403, {"client": "session without CSRF token"}),
    S("unknown id", "post", CANCEL, 404, {"label": "missing"}),
    S("xml only", "post", CANCEL, 406, XML_ONLY),
    S("throttled", "post", CANCEL, 429, {}, first_cancel_of_the_minute),
    # POST /executions/{id}/rerun
    S("completed", "post", RERUN, 202, {"label": "completed"}),
    S("running", "post", RERUN, 202, {"label": "running"}),
    S("agent", "post", RERUN, 202, {"label": "agent completed"}),
    S("inputs no longer valid", "post", RERUN, 400, {"label": "completed"}, inputs_no_longer_valid),
    S("anonymous", "post", RERUN, 401, {"client": "anonymous"}),
    S("session without CSRF token", "post", RERUN, 403, {"client": "session without CSRF token"}),
    S("unknown id", "post", RERUN, 404, {"label": "missing"}),
    S("someone else's", "post", RERUN, 404, {"client": "bob"}),
    S("xml only", "post", RERUN, 406, XML_ONLY),
    S("throttled", "post", RERUN, 429, {"label": "completed"}, first_rerun_of_the_minute),
    S("broker unreachable", "post", RERUN, 503, {"label": "completed"}, broker_down),
    S("an empty body", "post", RERUN, 202, {"label": "completed", "body": {}}),
    S("from the failed step", "post", RERUN, 202, {"label": "durable failed at step 3", "body": RESUME}),
    S("from the failed step of a plain run", "post", RERUN, 400, {"label": "failed", "body": RESUME}),
    S("from the step of a running one", "post", RERUN, 400, {"label": "resumed after a hand-over", "body": RESUME}),
    S("not a JSON object", "post", RERUN, 400, {"label": "completed", "body": [1, 2]}),
    S("not a boolean", "post", RERUN, 400, {"label": "completed", "body": {"from_failed_step": 0}}),
    S("body too large", "post", RERUN, 413, {"label": "completed", "body": too_large()}),
    S("form encoded", "post", RERUN, 415, {"label": "completed", "body": "from_failed_step=1", "content_type": FORM}),
    # GET /executions/{id}/events
    S("every state", "get", EVENTS, 200, {"label": "completed"}, every_state_events),
    S("after a seq", "get", EVENTS, 200, {"label": "completed", "query": "after_seq=3"}),
    S("nothing yet", "get", EVENTS, 200, {"label": "pending"}),
    S("bad after_seq", "get", EVENTS, 400, {"query": "after_seq=-1"}),
    S("anonymous", "get", EVENTS, 401, {"client": "anonymous"}),
    S("unknown id", "get", EVENTS, 404, {"label": "missing"}),
    S("xml only", "get", EVENTS, 406, XML_ONLY),
    # GET /executions/{id}/steps
    *for_every_state(STEPS, lambda label: 200),
    S("anonymous", "get", STEPS, 401, {"client": "anonymous"}),
    S("unknown id", "get", STEPS, 404, {"label": "missing"}),
    S("someone else's", "get", STEPS, 404, {"client": "bob"}),
    S("xml only", "get", STEPS, 406, XML_ONLY),
    # GET /targets
    S("all", "get", TARGETS, 200),
    S("anonymous", "get", TARGETS, 401, {"client": "anonymous"}),
    S("xml only", "get", TARGETS, 406, XML_ONLY),
    # POST /auth/token
    S("right password", "post", TOKEN, 200, {"client": "anonymous", "body": CREDENTIALS}),
    S("wrong password", "post", TOKEN, 400, {"client": "anonymous", "body": GUESS}),
    S("missing field", "post", TOKEN, 400, {"client": "anonymous", "body": {"username": "alice"}}),
    S("xml only", "post", TOKEN, 406, {"client": "anonymous", "body": GUESS, **XML_ONLY}),
    S("body too large", "post", TOKEN, 413, {"client": "anonymous", "body": too_large()}),
    S("form encoded", "post", TOKEN, 415, {"client": "anonymous", "body": "username=alice", "content_type": FORM}),
    S("throttled", "post", TOKEN, 429, {"client": "anonymous", "body": GUESS}, first_guess_of_the_minute),
    # Not in the schema: a method an endpoint does not serve, a path the API does not have.
    S("not served", "delete", EXECUTIONS, 405, {"documented": False}),
    S("not served", "get", CANCEL, 405, {"documented": False}),
    S("not served", "put", TARGETS, 405, {"documented": False}),
    S("no such endpoint", "get", f"{API}/nope", 404, {"documented": False}),
]


# GET /executions/{id}/progress/stream: an async view reading the database from pool
# threads, so these run on committed data (see test_stream_answer_matches_the_published_schema).
STREAM_SCENARIOS: list[Scenario] = [
    S("completed", "get", STREAM, 200, {"label": "completed"}),
    S("resumed past the end", "get", STREAM, 204, {"label": "failed", "query": "after_seq=99"}),
    S(
        "resumed with Last-Event-ID", "get", STREAM, 200,
        {"label": "cancelled while running", "HTTP_LAST_EVENT_ID": "2"},
    ),
    S("bad after_seq", "get", STREAM, 400, {"query": "after_seq=-1"}),
    S("bad Last-Event-ID", "get", STREAM, 400, {"HTTP_LAST_EVENT_ID": "1.5"}),
    S("anonymous", "get", STREAM, 401, {"client": "anonymous"}),
    S("bad token", "get", STREAM, 401, {"client": "anonymous", "HTTP_AUTHORIZATION": "Token nope"}),
    S("unknown id", "get", STREAM, 404, {"label": "missing"}),
    S("someone else's", "get", STREAM, 404, {"client": "bob"}),
    S("not served", "post", STREAM, 405, {"documented": False}),
]


def scenario_id(scenario: Scenario) -> str:
    return f"{scenario.method.upper()} {scenario.template.removeprefix(API)} {scenario.status} {scenario.name}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_answer_matches_the_published_schema(world: World, scenario: Scenario) -> None:
    if scenario.before is not None:
        scenario.before(world)
    response = world.call(scenario.method, scenario.template, **scenario.request)
    assert response.status_code == scenario.status, response.content[:1000]
    if scenario.status == 405:
        assert response["Allow"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scenario", STREAM_SCENARIOS, ids=scenario_id)
def test_stream_answer_matches_the_published_schema(world: World, scenario: Scenario, task_queue: Any) -> None:
    test_answer_matches_the_published_schema(world, scenario)


def test_every_documented_answer_is_produced() -> None:
    documented = {
        (method, path, int(code))
        for path, item in published_schema()["paths"].items()
        for method, operation in item.items()
        for code in operation["responses"]
    }
    produced = {(s.method, s.template, s.status) for s in [*SCENARIOS, *STREAM_SCENARIOS] if s.documented}
    assert produced == documented


def altered(response: HttpResponse, *, status: int = 0, body: Any = None, drop_header: str = "") -> HttpResponse:
    copy = HttpResponse(
        json.dumps(body) if body is not None else response.content,
        status=status or response.status_code,
        content_type=response["Content-Type"],
    )
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", drop_header.lower()):
            copy[name] = value
    return copy


def test_the_validation_is_strict(world: World) -> None:
    """The validator is not vacuous: each alteration of a valid answer is caught."""
    published, closed_to_extras = validators()
    good = world.call("get", EXECUTION, label="pending")
    path = good.wsgi_request.path
    body = json.loads(good.content)
    unauthorized = world.call("get", EXECUTION, label="pending", client="anonymous")
    wrong = {
        "a string for an integer": altered(good, body={**body, "seq": "0"}),
        "a required key missing": altered(good, body={k: v for k, v in body.items() if k != "progress"}),
        "an unknown status": altered(good, body={**body, "status": "paused"}),
        "a malformed progress": altered(good, body={**body, "progress": {"current_step": 1}}),
        "a timestamp that is not one": altered(good, body={**body, "created_at": "yesterday"}),
        "an undocumented status code": altered(good, status=418),
        "a 401 without WWW-Authenticate": altered(unauthorized, drop_header="WWW-Authenticate"),
    }
    for name, response in wrong.items():
        assert answer_errors(published, "get", path, response), name
    extra = altered(good, body={**body, "extra": 1})
    assert not answer_errors(published, "get", path, extra), "the published schema leaves objects open"
    assert answer_errors(closed_to_extras, "get", path, extra), "the closed copy catches an undocumented key"


def test_the_stream_validation_is_strict() -> None:
    """Each event is held to its schema, and its data to the frames' components."""
    path = STREAM.format(execution_id=MISSING_ID)
    status = json.dumps(
        {
            "type": "status", "execution_id": MISSING_ID, "status": "pending", "progress": None, "seq": 0,
            "timestamp": "2026-01-01T00:00:00.000000Z",
        },
        separators=(",", ":"),
    )

    def stream(text: str) -> HttpResponse:
        return HttpResponse(text, content_type="text/event-stream")

    assert_valid_answer("get", path, stream(f"id: 0\nevent: status\ndata: {status}\n\n: keep-alive\n\n"))
    wrong = {
        "an unknown event type": f"id: 0\nevent: bogus\ndata: {status}\n\n",
        "an id that is no seq": f"id: x\nevent: status\ndata: {status}\n\n",
        "no data": "id: 0\nevent: status\n\n",
        "a field the stream does not send": f"id: 0\nevent: status\nretry: 5\ndata: {status}\n\n",
        "data that is no frame": 'id: 0\nevent: status\ndata: {"type":"status"}\n\n',
    }
    for name, text in wrong.items():
        try:
            assert_valid_answer("get", path, stream(text))
        except (AssertionError, KeyError, ValueError):
            continue
        pytest.fail(f"{name}: passed the validation")
