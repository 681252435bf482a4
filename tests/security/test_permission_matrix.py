"""The permission matrix: who gets what on every REST endpoint, the WebSocket,
every page and the admin.

``MATRIX`` below is the one source of truth: one row per request, one column per
principal, each cell an outcome from ``OUTCOMES`` (whose text says exactly what is
checked). ``test_cell`` walks every cell. Around it:

* ``test_the_matrix_covers_every_route`` fails when a route is added without a row;
* ``test_someone_elses_execution_is_a_missing_one`` compares, byte for byte, what
  another user gets for the owner's execution with what they get for unknown ids
  (well-formed and malformed), on every surface that takes an id;
* ``test_lists_do_not_reveal_others_executions`` shows that a user's lists, counts,
  pagination and filter results are exactly what they would be if nobody else had
  executions (REST list and the list page), while staff see everything;
* ``test_session_writes_need_the_csrf_token`` walks every unsafe request a session
  can make.

Print the matrix as markdown: ``DJANGO_DEBUG=1 .venv/bin/python -m tests.security``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import quote as admin_quote
from django.test import AsyncClient, Client
from django.urls import URLPattern, resolve
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from config.asgi import application
from executions.api import urls as api_urls
from executions.models import Execution
from executions.ops import urls as ops_urls
from executions.pages import urls as page_urls
from executions.pages import views as page_views
from executions.steps import execution_steps, step_dict
from progress import urls as progress_urls
from progress.routing import websocket_urlpatterns
from tests.helpers import PASSWORD, user_token

# --- the matrix ---------------------------------------------------------------------------

PRINCIPALS = ("anonymous", "other", "owner", "staff", "superuser")
PRINCIPAL_NOTES = {
    "anonymous": "no credentials",
    "other": "a signed-in user who does not own the execution (bob)",
    "owner": "the user who started the execution (alice)",
    "staff": "`is_staff`, no model permissions",
    "superuser": "`is_staff` and `is_superuser`",
}

#: What each cell may say, and what it checks. Every cell also checks that nothing
#: changed unless it says so: the owner's execution is still running unless the
#: outcome says "cancelled", and no execution was added unless it says "created".
OUTCOMES = {
    "200": "200; on a row with {id} the body shows the execution",
    "200 listed": "200; the execution is in the list",
    "200 hidden": "200; the execution is not in the list (the user's own is)",
    "200 token": "200 `{\"token\": <key>}`, the key of the user whose credentials were posted",
    "200 cancelled": "200, the contract's cancel body; the execution is now cancelled",
    "202 created": "202; a new execution owned by the caller",
    "302 created": "302 to the new execution's page; a new execution owned by the caller",
    "302 cancelled": "302 back to where it was asked from (the execution's page, its admin change page, "
    "the changelist); the execution is now cancelled",
    "302 login": "302 to `/accounts/login/?next=<path>`",
    "302 admin login": "302 to `/admin/login/?next=<path>`",
    "401": "401 `{\"detail\": ...}` with `WWW-Authenticate: Token`",
    "401 bearer": "401 `{\"detail\": ...}` with `WWW-Authenticate: Bearer ...` (a scraper's token, `METRICS_TOKEN`, would pass)",
    "probe": "200 or 503, the readiness body naming each check; no credentials needed",
    "403": "403",
    "404 missing": "404, identical to the answer for an id that does not exist "
    "(REST: `{\"detail\": \"Execution '<id>' not found\"}`; pages: the not-found page saying so)",
    "ws 4401": "handshake accepted, error frame `Authentication required`, close 4401",
    "ws 4404": "handshake accepted, error frame `Execution '<id>' not found`, close 4404, "
    "identical to an id that does not exist",
    "ws status": "handshake accepted, first frame `status` of the execution",
    "sse status": "200 `text/event-stream`, first event `status` of the execution (`id:` its seq)",
    "ws 4403": "handshake accepted, error frame `scope=all is for staff only`, close 4403",
    "ws listed": "handshake accepted, first frame `snapshot`, the execution in it",
    "ws hidden": "handshake accepted, first frame `snapshot`, the execution not in it",
}


@dataclass(frozen=True)
class Row:
    method: str  # GET, POST, WS, or SSE (a GET read as Server-Sent Events)
    #: ``{id}`` is the owner's running execution (quoted the admin's way on admin paths).
    path: str
    anonymous: str
    other: str
    owner: str
    staff: str
    superuser: str
    body: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def request(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def surface(self) -> str:
        if self.method == "WS":
            return "WebSocket"
        if self.method == "SSE":
            return "SSE"
        if self.path.startswith("/api/") and self.path not in PAGES_UNDER_API:
            return "REST"
        if self.path.startswith("/admin/"):
            return "admin"
        if self.path in OPERATIONS:
            return "operations"
        return "pages"

    def outcome(self, principal: str) -> str:
        return getattr(self, principal)


#: Browser pages served under /api/ (session, login redirect), not REST endpoints.
PAGES_UNDER_API = {"/api/v1/docs"}
#: Probes and the scrape (docs/operations/metrics.md): requests as a browser would send them.
OPERATIONS = {"/healthz", "/health", "/readyz", "/metrics"}
SUBMIT = {"type": "agent", "target_id": "echo", "inputs": {}}
START_FORM = {"target": "agent:echo", "inputs_json": "{}"}
ADMIN = "/admin/executions/execution"
ACTION = {"action": "cancel_selected", "_selected_action": ["{id}"]}
R = Row

# fmt: off
MATRIX: tuple[Row, ...] = (
    # method  path                                         anonymous          other              owner              staff              superuser
    R("GET",  "/api/v1/executions",                        "401",             "200 hidden",      "200 listed",      "200 listed",      "200 listed"),
    R("POST", "/api/v1/executions",                        "401",             "202 created",     "202 created",     "202 created",     "202 created",     body=SUBMIT),
    R("GET",  "/api/v1/executions/{id}",                   "401",             "404 missing",     "200",             "200",             "200"),
    R("GET",  "/api/v1/executions/{id}/progress",          "401",             "404 missing",     "200",             "200",             "200"),
    R("POST", "/api/v1/executions/{id}/cancel",            "401",             "404 missing",     "200 cancelled",   "200 cancelled",   "200 cancelled"),
    R("POST", "/api/v1/executions/{id}/rerun",             "401",             "404 missing",     "202 created",     "202 created",     "202 created"),
    R("GET",  "/api/v1/executions/{id}/events",            "401",             "404 missing",     "200",             "200",             "200"),
    R("GET",  "/api/v1/executions/{id}/steps",             "401",             "404 missing",     "200",             "200",             "200"),
    R("GET",  "/api/v1/targets",                           "401",             "200",             "200",             "200",             "200"),
    R("POST", "/api/v1/auth/token",                        "200 token",       "200 token",       "200 token",       "200 token",       "200 token"),
    R("GET",  "/api/v1/schema",                            "401",             "200",             "200",             "200",             "200"),
    R("GET",  "/api/v1/docs",                              "302 login",       "200",             "200",             "200",             "200"),
    R("WS",   "/api/v1/executions/{id}/progress/ws",       "ws 4401",         "ws 4404",         "ws status",       "ws status",       "ws status"),
    R("SSE",  "/api/v1/executions/{id}/progress/stream",   "401",             "404 missing",     "sse status",      "sse status",      "sse status"),
    R("WS",   "/api/v1/executions/ws",                     "ws 4401",         "ws hidden",       "ws listed",       "ws hidden",       "ws hidden"),
    R("WS",   "/api/v1/executions/ws?scope=all",           "ws 4401",         "ws 4403",         "ws 4403",         "ws listed",       "ws listed"),
    R("GET",  "/",                                         "302 login",       "200 hidden",      "200 listed",      "200 listed",      "200 listed"),
    R("GET",  "/executions/new",                           "302 login",       "200",             "200",             "200",             "200"),
    R("POST", "/executions/new",                           "302 login",       "302 created",     "302 created",     "302 created",     "302 created",     body=START_FORM),
    R("GET",  "/executions/{id}",                          "302 login",       "404 missing",     "200",             "200",             "200"),
    R("POST", "/executions/{id}/cancel",                   "302 login",       "404 missing",     "302 cancelled",   "302 cancelled",   "302 cancelled"),
    R("POST", "/executions/{id}/rerun",                    "302 login",       "404 missing",     "302 created",     "302 created",     "302 created"),
    R("GET",  "/accounts/login/",                          "200",             "200",             "200",             "200",             "200"),
    R("GET",  "/admin/",                                   "302 admin login", "302 admin login", "302 admin login", "200",             "200"),
    R("GET",  f"{ADMIN}/",                                 "302 admin login", "302 admin login", "302 admin login", "403",             "200 listed"),
    R("POST", f"{ADMIN}/",                                 "302 admin login", "302 admin login", "302 admin login", "403",             "302 cancelled",   body=ACTION),
    R("GET",  f"{ADMIN}/add/",                             "302 admin login", "302 admin login", "302 admin login", "403",             "403"),
    R("GET",  f"{ADMIN}/{{id}}/change/",                   "302 admin login", "302 admin login", "302 admin login", "403",             "200"),
    R("GET",  f"{ADMIN}/{{id}}/events/",                   "302 admin login", "302 admin login", "302 admin login", "403",             "200"),
    R("GET",  f"{ADMIN}/{{id}}/history/",                  "302 admin login", "302 admin login", "302 admin login", "403",             "200"),
    R("GET",  f"{ADMIN}/{{id}}/delete/",                   "302 admin login", "302 admin login", "302 admin login", "403",             "403"),
    R("POST", f"{ADMIN}/{{id}}/cancel/",                   "302 admin login", "302 admin login", "302 admin login", "403",             "302 cancelled"),
    R("GET",  "/admin/executions/webhookattempt/",         "302 admin login", "302 admin login", "302 admin login", "403",             "200"),
    R("GET",  "/healthz",                                  "200",             "200",             "200",             "200",             "200"),
    R("GET",  "/health",                                   "200",             "200",             "200",             "200",             "200"),
    R("GET",  "/readyz",                                   "probe",           "probe",           "probe",           "probe",           "probe"),
    R("GET",  "/metrics",                                  "401 bearer",      "403",             "403",             "200",             "200"),
)
# fmt: on


#: Cells where the code does not do what the matrix says yet: strict xfails, so the
#: fix turns them into failures until the entry is removed.
KNOWN_HOLES: dict[tuple[str, str], str] = {}


def render_markdown() -> str:
    """The matrix as a markdown table, with the legend (for notes and reviews)."""
    lines = [
        "| surface | request | " + " | ".join(PRINCIPALS) + " |",
        "|---|---|" + "---|" * len(PRINCIPALS),
    ]
    for row in MATRIX:
        cells = " | ".join(row.outcome(p) + (" (!)" if (row.request, p) in KNOWN_HOLES else "") for p in PRINCIPALS)
        lines.append(f"| {row.surface} | `{row.request}` | {cells} |")
    lines += ["", "Principals:", ""]
    lines += [f"- **{name}**: {note}" for name, note in PRINCIPAL_NOTES.items()]
    lines += ["", "Outcomes (every cell also checks that nothing changed unless it says so):", ""]
    lines += [f"- **{code}**: {text}" for code, text in OUTCOMES.items()]
    if KNOWN_HOLES:
        lines += ["", "(!) Known holes, tested as strict xfails:", ""]
        lines += [f"- `{request}`, {principal}: {reason}" for (request, principal), reason in KNOWN_HOLES.items()]
    return "\n".join(lines) + "\n"


# --- how a cell is played -----------------------------------------------------------------


@dataclass
class World:
    """The principals and the owner's running execution every cell is played against."""

    users: dict[str, Any]
    execution: Execution
    own_execution_of_other: Execution


@pytest.fixture
def world(alice: Any, bob: Any, staff: Any, superuser: Any, make_execution: Any) -> World:
    execution = make_execution(alice, "running", steps_entered=2)
    return World(
        users={"anonymous": None, "other": bob, "owner": alice, "staff": staff, "superuser": superuser},
        execution=execution,
        own_execution_of_other=make_execution(bob, "completed"),
    )


def path_for(row: Row, execution_id: str) -> str:
    shown = admin_quote(execution_id) if row.surface == "admin" else execution_id
    return row.path.replace("{id}", shown)


def api_client(user: Any) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {user_token(user)}")
    return client


def page_client(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


#: The nonces of an HTML page: the masked CSRF token differs on every response, the
#: server clock on every second. Nothing else may differ.
NONCES = (
    (re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"'), b'name="csrfmiddlewaretoken" value="*"'),
    (re.compile(rb'data-server-now="[^"]*"'), b'data-server-now="*"'),
)
#: Headers that legitimately follow the length of the id in the body.
LENGTH_HEADERS = {"content-length"}
#: Headers that carry the clock (``never_cache``'s Expires on admin answers).
CLOCK_HEADERS = {"expires"}


@dataclass
class Answer:
    """What a request got: an HTTP response or a WebSocket transcript, comparable."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cookies: tuple[str, ...] = ()
    body: bytes = b""
    #: WebSocket: ("accept" | "text" | "close", payload) in order.
    transcript: list[tuple[str, Any]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode()

    def masked(self, execution_id: str) -> tuple[Any, ...]:
        """Everything the client sees, with the id (raw, admin- and URL-quoted) and
        the nonces replaced, so two answers compare equal iff they say the same."""

        def sub(value: Any) -> Any:
            if isinstance(value, bytes):
                for pattern, replacement in NONCES:
                    value = pattern.sub(replacement, value)
                for form in {execution_id, admin_quote(execution_id), quote(execution_id, safe="")} - {""}:
                    value = value.replace(form.encode(), b"<id>")
                return value
            if isinstance(value, str):
                return sub(value.encode()).decode()
            if isinstance(value, dict):
                return {k: ("*" if k == "timestamp" else sub(v)) for k, v in value.items()}
            return value

        headers = {
            k.lower(): "*" if k.lower() in CLOCK_HEADERS else sub(v)
            for k, v in self.headers.items()
            if k.lower() not in LENGTH_HEADERS
        }
        transcript = [(kind, sub(payload)) for kind, payload in self.transcript]
        return self.status, headers, self.cookies, sub(self.body), transcript


def http_answer(response: Any) -> Answer:
    return Answer(
        status=response.status_code,
        headers=dict(response.headers),
        cookies=tuple(sorted(response.cookies)),
        body=b"".join(response.streaming_content) if response.streaming else response.content,
    )


def send_http(
    row: Row, principal: str, execution_id: str, world: World, *, client: Any = None, extra: dict[str, str] | None = None
) -> Answer:
    user = world.users[principal]
    if client is None:
        client = api_client(user) if row.surface == "REST" else page_client(user)
    path = path_for(row, execution_id)
    body = json.loads(json.dumps(row.body or {}).replace("{id}", execution_id))
    if row.path == "/api/v1/auth/token":
        # A login: anyone may post credentials; anonymous posts the owner's.
        who = user or world.users["owner"]
        body = {"username": who.get_username(), "password": PASSWORD}
    extra = extra or {}
    if row.method == "GET":
        return http_answer(client.get(path, **extra))
    if row.surface == "REST":
        return http_answer(client.post(path, json.dumps(body), content_type="application/json", **extra))
    return http_answer(client.post(path, body, **extra))


WS_TIMEOUT = 5.0


async def _ws_transcript(path: str, headers: list[tuple[bytes, bytes]]) -> Answer:
    """Connect, then read until the server closes or the stream has started."""
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await comm.connect(timeout=WS_TIMEOUT)
    answer = Answer(transcript=[("accept", connected if connected else code)])
    if connected:
        while True:
            message = await comm.receive_output(timeout=WS_TIMEOUT)
            if message["type"] == "websocket.close":
                answer.transcript.append(("close", message.get("code")))
                break
            frame = json.loads(message["text"])
            answer.transcript.append(("text", frame))
            if frame["type"] != "error":
                break  # the stream is live: that is all a cell needs
        await comm.disconnect()
    return answer


def ws_headers(user: Any, *, session: bool = False) -> list[tuple[bytes, bytes]]:
    if user is None:
        return []
    if session:
        client = page_client(user)
        return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())]
    return [(b"authorization", f"Token {user_token(user)}".encode())]


def send_ws(user: Any, path: str, *, session: bool = False) -> Answer:
    return async_to_sync(_ws_transcript)(path, ws_headers(user, session=session))


async def _sse_answer(path: str, headers: dict[str, str]) -> Answer:
    """GET through the ASGI handler; of a stream, read only its first two chunks (the
    ``retry:`` field and the opening: the stream of a running execution does not end)."""
    # Headers per request: AsyncClient(headers=...) stores them under WSGI names, which ASGI ignores.
    response = await AsyncClient().get(path, headers=headers)
    answer = Answer(status=response.status_code, headers=dict(response.headers), cookies=tuple(sorted(response.cookies)))
    if response.streaming:
        chunks = response.streaming_content
        answer.body = await anext(chunks) + await anext(chunks)
        await chunks.aclose()
    else:
        answer.body = response.content
    return answer


def send_sse(user: Any, path: str) -> Answer:
    headers = {}
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        headers["Authorization"] = f"Token {token.key}"
    return async_to_sync(_sse_answer)(path, headers)


def send(row: Row, principal: str, execution_id: str, world: World, **http: Any) -> Answer:
    if row.method == "WS":
        return send_ws(world.users[principal], path_for(row, execution_id))
    if row.method == "SSE":
        return send_sse(world.users[principal], path_for(row, execution_id))
    return send_http(row, principal, execution_id, world, **http)


# --- checking a cell ----------------------------------------------------------------------


@dataclass
class Cell:
    row: Row
    principal: str
    world: World
    answer: Answer
    new_executions: list[Execution]

    @property
    def execution_id(self) -> str:
        return self.world.execution.id

    @property
    def path(self) -> str:
        return path_for(self.row, self.execution_id)

    @property
    def user(self) -> Any:
        return self.world.users[self.principal]


def expect_status(cell: Cell, status: int) -> None:
    assert cell.answer.status == status, (cell.answer.status, cell.answer.headers.get("Location"), cell.answer.body[:300])


def shows_execution(cell: Cell) -> bool:
    if cell.row.path.endswith("/progress"):
        return cell.answer.json() == cell.world.execution.progress
    if cell.row.path.endswith("/steps"):
        return cell.answer.json() == {"steps": [step_dict(step) for step in execution_steps(cell.world.execution)]}
    return cell.execution_id.encode() in cell.answer.body


def check_200(cell: Cell) -> None:
    expect_status(cell, 200)
    if "{id}" in cell.row.path:
        assert shows_execution(cell), cell.answer.body[:300]


def check_listed(cell: Cell) -> None:
    expect_status(cell, 200)
    assert cell.execution_id.encode() in cell.answer.body


def check_hidden(cell: Cell) -> None:
    expect_status(cell, 200)
    assert cell.execution_id.encode() not in cell.answer.body
    # Not an empty or broken list: the user's own execution is there.
    assert cell.world.own_execution_of_other.id.encode() in cell.answer.body


def check_token(cell: Cell) -> None:
    expect_status(cell, 200)
    who = cell.user or cell.world.users["owner"]
    assert cell.answer.json() == {"token": Token.objects.get(user=who).key}


def check_cancelled_200(cell: Cell) -> None:
    expect_status(cell, 200)
    body = cell.answer.json()
    assert body["message"] == "Execution cancelled successfully"
    assert body["data"]["execution_id"] == cell.execution_id and body["data"]["status"] == "cancelled"
    assert Execution.objects.get(pk=cell.execution_id).status == "cancelled"


def check_cancelled_302(cell: Cell) -> None:
    expect_status(cell, 302)
    if cell.row.surface == "admin":
        # The cancel view goes back to the change page (its id quoted as the admin quotes
        # it), the action to the changelist.
        expected = f"{ADMIN}/{admin_quote(cell.execution_id)}/change/" if "{id}" in cell.row.path else cell.path
    else:
        expected = f"/executions/{cell.execution_id}"
    assert cell.answer.headers["Location"] == expected
    assert Execution.objects.get(pk=cell.execution_id).status == "cancelled"


def one_new_execution_of_the_caller(cell: Cell) -> Execution:
    assert len(cell.new_executions) == 1, cell.new_executions
    created = cell.new_executions[0]
    assert created.owner == cell.user
    return created


def check_created_202(cell: Cell) -> None:
    expect_status(cell, 202)
    created = one_new_execution_of_the_caller(cell)
    assert cell.answer.json()["execution_id"] == created.id


def check_created_302(cell: Cell) -> None:
    expect_status(cell, 302)
    created = one_new_execution_of_the_caller(cell)
    assert cell.answer.headers["Location"] == f"/executions/{created.id}"


def check_login(cell: Cell, login: str = "/accounts/login/") -> None:
    expect_status(cell, 302)
    assert cell.answer.headers["Location"] == f"{login}?next={quote(cell.path, safe='/')}"


def check_admin_login(cell: Cell) -> None:
    check_login(cell, "/admin/login/")


def check_401(cell: Cell) -> None:
    expect_status(cell, 401)
    assert cell.answer.headers["WWW-Authenticate"] == "Token"
    detail = cell.answer.json()["detail"]
    assert isinstance(detail, str) and detail


def check_401_bearer(cell: Cell) -> None:
    expect_status(cell, 401)
    assert cell.answer.headers["WWW-Authenticate"].startswith("Bearer ")
    assert cell.answer.json() == {"detail": "Authentication required"}


def check_probe(cell: Cell) -> None:
    assert cell.answer.status in (200, 503), cell.answer.status
    assert set(cell.answer.json()["checks"]) == {"database", "redis", "workers"}


def check_403(cell: Cell) -> None:
    expect_status(cell, 403)


def check_missing(cell: Cell) -> None:
    expect_status(cell, 404)
    if cell.row.surface in ("REST", "SSE"):
        assert cell.answer.json() == {"detail": f"Execution '{cell.execution_id}' not found"}
        assert cell.answer.headers["Content-Type"] == "application/json"
    else:
        # The people's 404 page (templates/404.html): the words, and the address asked for.
        assert "<h1>Page not found</h1>" in cell.answer.text()
        assert f"<code>/executions/{cell.execution_id}" in cell.answer.text()
    # ... and the same, byte for byte, as for an execution that does not exist.
    missing = send(cell.row, cell.principal, MISSING_ID, cell.world)
    assert cell.answer.masked(cell.execution_id) == missing.masked(MISSING_ID)


def check_ws_error(cell: Cell, message: str, code: int) -> None:
    assert cell.answer.transcript[0] == ("accept", True)
    assert [kind for kind, _ in cell.answer.transcript] == ["accept", "text", "close"], cell.answer.transcript
    frame = cell.answer.transcript[1][1]
    assert frame["type"] == "error" and frame["message"] == message and frame["code"] == code, frame
    assert cell.answer.transcript[2] == ("close", code)


def check_ws_4401(cell: Cell) -> None:
    check_ws_error(cell, "Authentication required", 4401)


def check_ws_4404(cell: Cell) -> None:
    check_ws_error(cell, f"Execution '{cell.execution_id}' not found", 4404)
    missing = send(cell.row, cell.principal, MISSING_ID, cell.world)
    assert cell.answer.masked(cell.execution_id) == missing.masked(MISSING_ID)


def check_ws_status(cell: Cell) -> None:
    assert [kind for kind, _ in cell.answer.transcript] == ["accept", "text"], cell.answer.transcript
    frame = cell.answer.transcript[1][1]
    execution = cell.world.execution
    assert frame["type"] == "status", frame
    assert (frame["execution_id"], frame["status"], frame["seq"]) == (execution.id, "running", execution.seq)
    assert frame["progress"] == execution.progress


def check_sse_status(cell: Cell) -> None:
    expect_status(cell, 200)
    assert cell.answer.headers["Content-Type"] == "text/event-stream"
    execution = cell.world.execution
    retry, first_event = cell.answer.text().split("\n\n")[:2]
    assert retry.startswith("retry: "), cell.answer.body[:300]  # every stream opens with it
    event_id, event, data = first_event.split("\n")
    assert (event_id, event) == (f"id: {execution.seq}", "event: status"), cell.answer.body[:300]
    frame = json.loads(data.removeprefix("data: "))
    assert (frame["type"], frame["execution_id"], frame["status"], frame["seq"]) == ("status", execution.id, "running", execution.seq)
    assert frame["progress"] == execution.progress
def check_ws_4403(cell: Cell) -> None:
    check_ws_error(cell, "scope=all is for staff only", 4403)


def snapshot_ids(cell: Cell) -> list[str]:
    assert [kind for kind, _ in cell.answer.transcript] == ["accept", "text"], cell.answer.transcript
    frame = cell.answer.transcript[1][1]
    assert frame["type"] == "snapshot", frame
    return [execution["execution_id"] for execution in frame["executions"]]


def check_ws_listed(cell: Cell) -> None:
    assert cell.execution_id in snapshot_ids(cell)


def check_ws_hidden(cell: Cell) -> None:
    assert cell.execution_id not in snapshot_ids(cell)


CHECKS = {
    "200": check_200,
    "200 listed": check_listed,
    "200 hidden": check_hidden,
    "200 token": check_token,
    "200 cancelled": check_cancelled_200,
    "202 created": check_created_202,
    "302 created": check_created_302,
    "302 cancelled": check_cancelled_302,
    "302 login": check_login,
    "302 admin login": check_admin_login,
    "401": check_401,
    "401 bearer": check_401_bearer,
    "probe": check_probe,
    "403": check_403,
    "404 missing": check_missing,
    "ws 4401": check_ws_4401,
    "ws 4404": check_ws_4404,
    "ws status": check_ws_status,
    "sse status": check_sse_status,
    "ws 4403": check_ws_4403,
    "ws listed": check_ws_listed,
    "ws hidden": check_ws_hidden,
}

MISSING_ID = "exec_000000000000"


def assert_untouched(world: World) -> None:
    """The owner's execution is as the world made it: running, no new event."""
    after = Execution.objects.get(pk=world.execution.id)
    assert (after.status, after.seq, after.cancelled_at) == ("running", world.execution.seq, None)


def play(row: Row, principal: str, world: World, **http: Any) -> Cell:
    before = set(Execution.objects.values_list("pk", flat=True))
    answer = send(row, principal, world.execution.id, world, **http)
    new = list(Execution.objects.exclude(pk__in=before))
    return Cell(row=row, principal=principal, world=world, answer=answer, new_executions=new)


def cell_params() -> list[Any]:
    params = []
    for row in MATRIX:
        # The consumer and the SSE view read the database from other threads: their cells commit.
        marks = [pytest.mark.django_db(transaction=True)] if row.method in ("WS", "SSE") else []
        for principal in PRINCIPALS:
            hole = KNOWN_HOLES.get((row.request, principal))
            cell_marks = [*marks, pytest.mark.xfail(reason=hole, strict=True)] if hole else marks
            params.append(pytest.param(row, principal, id=f"{row.request}-{principal}", marks=cell_marks))
    return params


# --- the tests ----------------------------------------------------------------------------


def test_every_cell_is_a_known_outcome_and_the_table_renders() -> None:
    assert set(CHECKS) == set(OUTCOMES)
    unknown = {(row.request, p, row.outcome(p)) for row in MATRIX for p in PRINCIPALS if row.outcome(p) not in CHECKS}
    assert not unknown
    requests = [row.request for row in MATRIX]
    assert len(requests) == len(set(requests)), "a request has two rows"
    rendered = render_markdown()
    assert all(f"`{row.request}`" in rendered for row in MATRIX)


@pytest.mark.parametrize(("row", "principal"), cell_params())
def test_cell(row: Row, principal: str, world: World) -> None:
    cell = play(row, principal, world)
    outcome = row.outcome(principal)
    CHECKS[outcome](cell)
    if "created" not in outcome:
        assert cell.new_executions == [], "an execution was created"
    if "cancelled" not in outcome:
        assert_untouched(world)


def _route_names(patterns: list[Any]) -> set[str]:
    """The names of routes that serve a view (the admin's unnamed catch-all redirect aside)."""
    return {p.name for p in patterns if isinstance(p, URLPattern) and p.name}


def test_the_matrix_covers_every_route(db: None) -> None:
    """Every API route, page and the execution admin's views have a row: a new
    route fails here until the matrix says who may use it."""
    sample = "exec_0123456789ab"
    covered = set()
    for row in MATRIX:
        if row.method == "WS":
            continue
        covered.add(resolve(path_for(row, sample).split("?")[0]).url_name)
    expected = _route_names(api_urls.urlpatterns) | _route_names(page_urls.urlpatterns) | {"api-schema", "api-docs"}
    expected |= {"login", "index"}
    expected |= _route_names(ops_urls.urlpatterns)
    expected |= _route_names(progress_urls.urlpatterns)
    expected |= _route_names(admin.site._registry[Execution].urls)
    assert expected - covered == set(), "routes without a row in MATRIX"
    ws_paths = [path_for(row, sample).split("?")[0].lstrip("/") for row in MATRIX if row.method == "WS"]
    for pattern in websocket_urlpatterns:
        assert any(pattern.pattern.match(path) for path in ws_paths), f"no WS row for {pattern.pattern}"
    for path in ws_paths:
        assert any(pattern.pattern.match(path) for pattern in websocket_urlpatterns), f"no route serves {path}"


# --- someone else's execution is a missing one ---------------------------------------------

#: Ids that name no execution: well-formed (``exec_`` + 12 hex) and malformed.
PROBE_IDS = (
    MISSING_ID,
    "exec_fedcba987654",
    "exec_12345",
    "EXEC_0123456789AB",
    "not-an-execution",
    "exec_" + "0" * 300,
)


def id_params() -> list[Any]:
    params = []
    for row in MATRIX:
        if "{id}" not in row.path:
            continue
        marks = [pytest.mark.django_db(transaction=True)] if row.method in ("WS", "SSE") else []
        params.append(pytest.param(row, id=row.request, marks=marks))
    return params


@pytest.mark.parametrize("row", id_params())
def test_someone_elses_execution_is_a_missing_one(row: Row, world: World) -> None:
    """Another user gets the same status, headers, cookies and body (WebSocket: the
    same frames and close code) for the owner's execution as for ids that name
    nothing, once the id itself and the page nonces are masked."""
    theirs = send(row, "other", world.execution.id, world).masked(world.execution.id)
    assert theirs[0] in {302, 404, None}, theirs[:2]  # refused, not served
    for probe in PROBE_IDS:
        assert send(row, "other", probe, world).masked(probe) == theirs, probe
    assert_untouched(world)


@pytest.mark.django_db(transaction=True)
def test_websocket_session_auth_refuses_the_same_way(world: World) -> None:
    """The same over a session cookie (browsers) as with a token."""
    row = next(row for row in MATRIX if row.method == "WS")
    own = send_ws(world.users["owner"], path_for(row, world.execution.id), session=True)
    assert [kind for kind, _ in own.transcript] == ["accept", "text"]
    assert own.transcript[1][1]["type"] == "status"
    theirs = send_ws(world.users["other"], path_for(row, world.execution.id), session=True)
    assert theirs.transcript[1][1]["message"] == f"Execution '{world.execution.id}' not found"
    for probe in PROBE_IDS:
        missing = send_ws(world.users["other"], path_for(row, probe), session=True)
        assert missing.masked(probe) == theirs.masked(world.execution.id), probe
    for kind, reference in (("token", MISSING_ID), ("session", MISSING_ID)):
        token_or_session = send_ws(world.users["other"], path_for(row, reference), session=kind == "session")
        assert token_or_session.masked(reference) == theirs.masked(world.execution.id), kind


# --- lists, counts and pagination ---------------------------------------------------------------

#: Every filter, both pagination edges and a page past the end.
API_LIST_QUERIES = (
    "",
    "?page_size=2",
    "?page_size=2&page=2",
    "?page_size=2&page=3",
    "?status=pending",
    "?status=running",
    "?status=cancelled",
    "?status=completed",
    "?status=failed",
    "?type=agent",
    "?type=pipeline",
    "?target_id=echo",
    "?target_id=demo_steps",
    "?target_id=customer_service_flow",
    "?sort=status&order=asc&page_size=1&page=2",
)
PAGE_LIST_QUERIES = (
    "",
    "?page=2",
    "?page=3",
    "?status=pending",
    "?status=running",
    "?status=cancelled",
    "?type=agent",
    "?target_id=echo",
    "?target_id=customer_service_flow",
)


def list_answers(user: Any) -> dict[str, tuple[Any, ...]]:
    answers = {}
    for query in API_LIST_QUERIES:
        answers["/api/v1/executions" + query] = http_answer(api_client(user).get("/api/v1/executions" + query))
    for query in PAGE_LIST_QUERIES:
        answers["/" + query] = http_answer(page_client(user).get("/" + query))
    for key, answer in answers.items():
        assert answer.status == 200, (key, answer.status)
    return answers


def test_lists_do_not_reveal_others_executions(
    alice: Any, bob: Any, staff: Any, make_execution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's lists, totals, pages and filter results are byte for byte what they
    were before alice had any execution; staff see everyone's."""
    monkeypatch.setattr(page_views, "PAGE_SIZE", 2)  # so that bob's three executions make two pages
    bobs = [make_execution(bob, "pending"), make_execution(bob, "completed"), make_execution(bob, "failed")]
    baseline = list_answers(bob)
    assert baseline["/api/v1/executions?page_size=2"].json()["pagination"]["total_pages"] == 2
    assert b"Page 1 of 2" in baseline["/"].body

    alices = [
        make_execution(alice, "running"),
        make_execution(alice, "pending", type="agent", target_id="echo"),
        make_execution(alice, "cancelled"),
        make_execution(alice, "completed", target_id="customer_service_flow", inputs={"customer_query": "hi"}),
        make_execution(alice, "failed"),
    ]
    after = list_answers(bob)
    for key, answer in after.items():
        assert answer.masked("") == baseline[key].masked(""), key
        for execution in alices:
            assert execution.id.encode() not in answer.body, key

    # Staff: everyone's, in the same lists (so the filters above did have something to hide).
    everyone = list_answers(staff)
    listed = everyone["/api/v1/executions"].json()
    assert listed["pagination"]["total_items"] == len(bobs) + len(alices)
    assert {e["execution_id"] for e in listed["executions"]} == {e.id for e in bobs + alices}
    for query, count in (("?target_id=echo", 1), ("?status=running", 1), ("?status=failed", 2), ("?type=agent", 1)):
        assert everyone["/api/v1/executions" + query].json()["pagination"]["total_items"] == count, query
    assert b"Page 1 of 4" in everyone["/"].body
    assert b"8 total" in everyone["/"].body and b"3 total" in after["/"].body


# --- CSRF -------------------------------------------------------------------------------------

CSRF_SECRET = "s" * 32


#: Unsafe requests that do not read the session, so a CSRF token means nothing to them.
CSRF_NOT_APPLICABLE = {
    # A login: the credentials are in the (JSON-only) body; the view authenticates
    # nobody, so a session cookie sent along is never read.
    "POST /api/v1/auth/token",
}


def csrf_params() -> list[Any]:
    return [
        pytest.param(row, id=row.request)
        for row in MATRIX
        if row.method == "POST" and row.request not in CSRF_NOT_APPLICABLE
    ]


def test_the_token_endpoint_ignores_the_session(world: World) -> None:
    row = next(row for row in MATRIX if row.request in CSRF_NOT_APPLICABLE)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.users["other"])
    cell = play(row, "owner", world, client=client)  # bob's session, alice's credentials
    check_token(cell)


@pytest.mark.parametrize("row", csrf_params())
def test_session_writes_need_the_csrf_token(row: Row, world: World) -> None:
    """Every unsafe request, made with a signed-in session but no CSRF token, is
    403 and changes nothing; with the token it goes through (the control)."""
    principal = "superuser" if row.surface == "admin" else "owner"
    client_class = APIClient if row.surface == "REST" else Client
    client = client_class(enforce_csrf_checks=True)
    client.force_login(world.users[principal])

    refused = play(row, principal, world, client=client)
    assert refused.answer.status == 403, (refused.answer.status, refused.answer.body[:200])
    assert b"CSRF" in refused.answer.body
    assert refused.new_executions == []
    assert_untouched(world)

    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    accepted = play(row, principal, world, client=client, extra={"HTTP_X_CSRFTOKEN": CSRF_SECRET})
    CHECKS[row.outcome(principal)](accepted)
