"""The server-rendered pages through Django's test client (no JavaScript)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from kombu.exceptions import OperationalError

from executions.errors import BrokerUnavailableError
from executions.frames import iso
from executions.models import Execution
from executions.pages import views
from executions.pages.views import PAGE_SIZE
from tests.executions.states import EXECUTION_STATES
from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = ["/", "/executions/new", "/executions/exec_000000000000"]


def html(response: Any) -> str:
    return response.content.decode()


def progressbars(text: str) -> list[str]:
    """The progress bars shown (the list's blank row, a ``<template>`` the script copies, is not shown)."""
    text = re.sub(r"<template\b.*?</template>", "", text, flags=re.S)
    return re.findall(r'<div class="progress[^"]*"[^>]*role="progressbar"[^>]*>', text, flags=re.S)


def page_data(text: str) -> dict[str, Any]:
    """What the page hands to its script (``json_script``)."""
    return json.loads(re.search(r'<script id="page-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def listed_events(text: str) -> list[tuple[str, int]]:
    """The stored events of the server's plain list, as (type, seq)."""
    return [(kind, int(seq)) for kind, seq in re.findall(r'<li data-event="(\w+)" data-seq="(\d+)">', text)]


# --- login ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", PAGES)
def test_every_page_requires_login(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_is_styled_and_logs_in(client: Client, alice: Any) -> None:
    page = client.get("/accounts/login/?next=/executions/new")
    assert page.status_code == 200
    assert 'href="/static/css/app.css"' in html(page)
    assert 'name="username"' in html(page) and 'name="password"' in html(page)
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD, "next": "/executions/new"})
    assert response.status_code == 302 and response["Location"] == "/executions/new"
    assert client.get("/").status_code == 200


def test_login_shows_bad_credentials(client: Client, alice: Any) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in html(response)
    assert "Please enter a correct username and password" in html(response)


def test_logout_is_a_post_from_the_header(alice_page: Client) -> None:
    page = html(alice_page.get("/"))
    assert 'action="/accounts/logout/"' in page
    response = alice_page.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert alice_page.get("/").status_code == 302


# --- list -----------------------------------------------------------------------------------


def test_list_shows_own_executions_newest_first(alice_page: Client, alice: Any, bob: Any, make_execution: Any) -> None:
    first = make_execution(alice, "completed")
    second = make_execution(alice, "running", steps_entered=2)
    others = make_execution(bob, "running")
    page = html(alice_page.get("/"))
    assert page.index(second.id) < page.index(first.id)
    assert others.id not in page
    assert "2 total" in page


def test_list_rows_have_badge_and_accessible_progress_bar(alice_page: Client, alice: Any, make_execution: Any) -> None:
    running = make_execution(alice, "running", steps_entered=3)  # 5 steps: entering step 3 is 40 %
    pending = make_execution(alice, "pending")
    page = html(alice_page.get("/"))
    assert 'class="badge badge-running"' in page and 'class="badge badge-pending"' in page
    bars = progressbars(page)
    assert len(bars) == 2
    running_bar = next(b for b in bars if running.id in b)
    assert 'aria-valuenow="40"' in running_bar
    assert 'aria-valuemin="0"' in running_bar and 'aria-valuemax="100"' in running_bar
    pending_bar = next(b for b in bars if pending.id in b)
    assert "aria-valuenow" not in pending_bar  # indeterminate until it starts
    assert f'data-execution-id="{running.id}" data-status="running" data-seq="{running.seq}"' in page
    assert ">step_3 · 2/5</div>" in page  # raw: the name and current_step/total_steps; the script words it
    assert 'data-role="percent">40%<' in page
    data = page_data(page)
    assert data["status_labels"]["running"] == "Running"
    states = {state["execution_id"]: state for state in data["executions"]}
    assert states[running.id] == {
        "execution_id": running.id,
        "status": "running",
        "progress": running.progress,
        "seq": running.seq,
        "started_at": iso(running.started_at),
        "completed_at": None,
        "failed_at": None,
        "cancelled_at": None,
    }
    assert states[pending.id]["progress"] is None and states[pending.id]["seq"] == 0


def test_staff_see_everyones_executions_with_owner(
    staff_page: Client, alice: Any, bob: Any, make_execution: Any
) -> None:
    a, b = make_execution(alice, "running"), make_execution(bob, "completed")
    page = html(staff_page.get("/"))
    assert a.id in page and b.id in page
    assert "Everyone" in page and ">alice<" in page and ">bob<" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=completed", {"done"}),
        ("status=running", {"running", "other_target"}),
        ("type=agent", {"agent"}),
        ("target_id=customer_service_flow", {"other_target"}),
        ("status=running&target_id=demo_steps", {"running"}),
    ],
)
def test_list_filters(alice_page: Client, alice: Any, make_execution: Any, query: str, expected: set[str]) -> None:
    made = {
        "done": make_execution(alice, "completed"),
        "running": make_execution(alice, "running"),
        "agent": make_execution(alice, "pending", type="agent", target_id="echo"),
        "other_target": make_execution(
            alice, "running", target_id="customer_service_flow", inputs={"customer_query": "hi"}
        ),
    }
    page = html(alice_page.get("/?" + query))
    shown = {name for name, execution in made.items() if execution.id in page}
    assert shown == expected


def test_invalid_filter_is_reported_not_a_500(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    response = alice_page.get("/?status=bogus")
    assert response.status_code == 200
    assert "Select a valid choice" in html(response)
    assert execution.id in html(response)  # the invalid filter is ignored


def test_list_paginates_and_keeps_filters(alice_page: Client, alice: Any, make_execution: Any) -> None:
    for _ in range(PAGE_SIZE + 3):
        make_execution(alice, "pending")
    first = html(alice_page.get("/?status=pending"))
    assert first.count('class="execution-row"') == PAGE_SIZE
    assert "Page 1 of 2" in first
    assert 'href="?status=pending&amp;page=2"' in first
    second = html(alice_page.get("/?status=pending&page=2"))
    assert second.count('class="execution-row"') == 3
    assert html(alice_page.get("/?page=999")).count('class="execution-row"') == 3  # clamps to the last page


def test_empty_list_invites_to_start(alice_page: Client) -> None:
    page = html(alice_page.get("/"))
    assert "No executions yet" in page and 'href="/executions/new"' in page


# --- detail -----------------------------------------------------------------------------------


def test_detail_of_someone_elses_execution_is_404(bob_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    assert bob_page.get(f"/executions/{execution.id}").status_code == 404
    assert bob_page.get("/executions/exec_000000000000").status_code == 404


def test_detail_renders_running_state_and_timeline(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=2)
    page = html(alice_page.get(f"/executions/{execution.id}"))
    bar = progressbars(page)[0]
    assert 'aria-valuenow="20"' in bar and "progress-large" in bar
    assert 'data-role="step">step_2 · 1/5<' in page
    assert 'data-role="elapsed"' in page and 'data-role="eta"' in page
    assert listed_events(page) == [("started", 1), ("progress", 2), ("progress", 3)]
    assert 'data-role="cancel-form"' in page and 'name="csrfmiddlewaretoken"' in page
    data = page_data(page)
    state = data["execution"]
    assert state["execution_id"] == execution.id and state["seq"] == execution.seq and state["status"] == "running"
    # The events the script builds its timeline from: the stored frames, as the API serves them.
    stored = alice_page.get(f"/api/v1/executions/{execution.id}/events?after_seq=0").json()["events"]
    assert data["events"] == stored
    assert data["planned_steps"] == ["step_1", "step_2", "step_3", "step_4", "step_5"]
    assert '<noscript><meta http-equiv="refresh"' in page  # without JavaScript it refreshes itself
    assert f'data-seq="{execution.seq}"' in page


def test_detail_hands_the_planned_steps_to_the_script_while_they_can_run(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    running = make_execution(alice, "running", inputs={"steps": 40}, steps_entered=2)
    planned = page_data(html(alice_page.get(f"/executions/{running.id}")))["planned_steps"]
    assert planned == [f"step_{n}" for n in range(1, 41)]
    done = make_execution(alice, "completed")
    assert page_data(html(alice_page.get(f"/executions/{done.id}")))["planned_steps"] is None


def test_detail_of_completed_execution(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "completed")
    page = html(alice_page.get(f"/executions/{execution.id}"))
    assert 'aria-valuenow="100"' in page and "badge-completed" in page
    assert listed_events(page) == [("started", 1), *(("progress", seq) for seq in range(2, 7)), ("completed", 7)]
    assert re.findall(r'<span class="event-step">(.*?)</span>', page) == [
        "", *[f"step_{n} · {n - 1}/5" for n in range(1, 6)], ""
    ]
    assert "&quot;steps_completed&quot;: 5" in page  # outputs, pretty-printed
    assert 'data-role="cancel-form"' not in page
    assert "noscript" not in page.split("</head>")[0]


def test_detail_of_failed_execution_shows_error(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "failed", steps_entered=2)
    page = html(alice_page.get(f"/executions/{execution.id}"))
    error = re.search(r'<div class="alert alert-error" data-role="error"(.*?)</div>', page, re.S).group(0)
    assert "hidden" not in error.split(">")[0]
    assert "ValueError" in error and "boom" in error
    assert listed_events(page) == [("started", 1), ("progress", 2), ("progress", 3), ("failed", 4)]
    assert page_data(page)["events"][-1]["error"] == {"type": "ValueError", "message": "boom", "details": None}


def test_detail_of_pending_execution(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "pending")
    page = html(alice_page.get(f"/executions/{execution.id}"))
    assert "aria-valuenow" not in progressbars(page)[0] and 'aria-valuetext="Not started"' in progressbars(page)[0]
    assert listed_events(page) == [] and "No events yet." in page
    data = page_data(page)
    assert data["events"] == [] and len(data["planned_steps"]) == 5 and data["execution"]["seq"] == 0


def test_staff_get_an_admin_link(staff_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    page = html(staff_page.get(f"/executions/{execution.id}"))
    assert f'href="/admin/executions/execution/{quote(execution.id)}/change/"' in page
    assert "started by alice" in page


def test_the_admin_links_quote_the_id_as_the_admin_does(
    admin_page: Client, alice: Any, make_execution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin reads ``_23`` in a primary key as ``#``: exec_23... must be linked as exec_5F23...."""
    monkeypatch.setattr("executions.models.secrets.token_hex", lambda nbytes: "23abcdef0123")
    execution = make_execution(alice, "running")
    assert execution.id == "exec_23abcdef0123"
    page = html(admin_page.get(f"/executions/{execution.id}"))
    change = "/admin/executions/execution/exec_5F23abcdef0123/change/"
    assert f'href="{change}"' in page
    response = admin_page.get(change)
    assert response.status_code == 200 and execution.id in html(response)


def test_long_runs_render_only_the_latest_events(
    alice_page: Client, alice: Any, make_execution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution = make_execution(alice, "running", inputs={"steps": 40}, steps_entered=30)
    monkeypatch.setattr(views, "TIMELINE_MAX_EVENTS", 10)
    page = html(alice_page.get(f"/executions/{execution.id}"))
    assert f"{execution.seq - 10} earlier events not shown" in page
    shown = list(range(execution.seq - 9, execution.seq + 1))
    assert [seq for _, seq in listed_events(page)] == shown
    assert [frame["seq"] for frame in page_data(page)["events"]] == shown


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_needs_the_csrf_token(alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    assert client.post(f"/executions/{execution.id}/cancel").status_code == 403
    page = html(client.get(f"/executions/{execution.id}"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(f"/executions/{execution.id}/cancel", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == f"/executions/{execution.id}"
    execution.refresh_from_db()
    assert execution.status == "cancelled"


def test_cancel_reports_what_happened(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    page = html(alice_page.post(f"/executions/{execution.id}/cancel", follow=True))
    assert "Execution cancelled." in page and "badge-cancelled" in page
    again = html(alice_page.post(f"/executions/{execution.id}/cancel", follow=True))
    assert "Cannot cancel execution with status &#x27;cancelled&#x27;" in again


def test_cancel_is_post_only_and_scoped(alice_page: Client, bob: Any, make_execution: Any) -> None:
    execution = make_execution(bob, "running")
    assert alice_page.get(f"/executions/{execution.id}/cancel").status_code == 405
    assert alice_page.post(f"/executions/{execution.id}/cancel").status_code == 404
    execution.refresh_from_db()
    assert execution.status == "running"


# --- start -------------------------------------------------------------------------------------


def test_start_page_lists_targets_and_generates_the_form(alice_page: Client) -> None:
    page = html(alice_page.get("/executions/new?target=pipeline:demo_steps"))
    assert '<option value="pipeline:demo_steps" selected>' in page
    assert '<option value="pipeline:customer_service_flow">' in page and '<option value="agent:echo">' in page
    steps = re.search(r'<input type="number" name="input_steps"[^>]*>', page).group(0)
    assert 'value="5"' in steps and 'min="1"' in steps and 'max="10000"' in steps
    seconds = re.search(r'<input type="number" name="input_step_seconds"[^>]*>', page).group(0)
    assert 'step="any"' in seconds and 'max="60"' in seconds
    assert 'name="input_fail_at_step"' in page and "How many steps to run" in page
    assert 'name="config_timeout"' in page


def test_start_creates_and_lands_on_the_detail_page(alice_page: Client, alice: Any, task_queue: Any) -> None:
    response = alice_page.post(
        "/executions/new",
        {
            "target": "pipeline:demo_steps",
            "input_steps": "3",
            "input_step_seconds": "0.5",
            "input_fail_at_step": "",
            "config_timeout": "30",
        },
    )
    execution = Execution.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/executions/{execution.id}"
    assert execution.inputs == {"steps": 3, "step_seconds": 0.5, "fail_at_step": None}
    assert execution.config == {"timeout": 30.0}


def test_start_while_the_queue_is_down_keeps_the_form_and_stores_nothing(
    alice_page: Client, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise BrokerUnavailableError(OperationalError("Connection refused"))

    monkeypatch.setattr(views, "execution_create", refuse)
    response = alice_page.post("/executions/new", {"target": "pipeline:demo_steps", "input_steps": "7"})
    assert response.status_code == 503
    assert "The task queue is unavailable, try again shortly" in response.content.decode()
    assert 'value="7"' in response.content.decode()
    assert not Execution.objects.exists()


def test_start_with_defaults(alice_page: Client, alice: Any) -> None:
    alice_page.post("/executions/new", {"target": "pipeline:demo_steps"})
    assert Execution.objects.get(owner=alice).inputs == {"steps": 5, "step_seconds": 1.0, "fail_at_step": None}


def test_start_shows_errors_next_to_the_fields(alice_page: Client, alice: Any) -> None:
    response = alice_page.post(
        "/executions/new", {"target": "pipeline:demo_steps", "input_steps": "0", "input_step_seconds": "abc"}
    )
    page = html(response)
    assert response.status_code == 200 and not Execution.objects.exists()
    steps = re.search(r'data-field="input_steps".*?</div>', page, re.S).group(0)
    assert "Ensure this value is greater than or equal to 1." in steps and 'aria-invalid="true"' in steps
    seconds = re.search(r'data-field="input_step_seconds".*?</div>', page, re.S).group(0)
    assert "Enter a number." in seconds


def test_start_shows_the_targets_own_cross_check(alice_page: Client) -> None:
    form = {"target": "pipeline:demo_steps", "input_steps": "2", "input_fail_at_step": "3"}
    page = html(alice_page.post("/executions/new", form))
    field = re.search(r'data-field="input_fail_at_step".*?</div>', page, re.S).group(0)
    assert "less than or equal to steps (2)" in field
    assert not Execution.objects.exists()


def test_start_required_string(alice_page: Client, alice: Any) -> None:
    form = {"target": "pipeline:customer_service_flow", "input_customer_query": ""}
    page = html(alice_page.post("/executions/new", form))
    assert "This field is required." in re.search(r'data-field="input_customer_query".*?</div>', page, re.S).group(0)
    alice_page.post("/executions/new", {**form, "input_customer_query": "Where is my order?"})
    assert Execution.objects.get(owner=alice).inputs == {"customer_query": "Where is my order?"}


def test_start_free_form_agent(alice_page: Client, alice: Any) -> None:
    page = html(alice_page.get("/executions/new?target=agent:echo"))
    assert 'name="inputs_json"' in page
    bad = html(alice_page.post("/executions/new", {"target": "agent:echo", "inputs_json": "[1, 2]"}))
    assert "Enter a JSON object" in bad
    alice_page.post("/executions/new", {"target": "agent:echo", "inputs_json": '{"message": "hi"}'})
    assert Execution.objects.get(owner=alice).inputs == {"message": "hi"}


def test_start_unknown_target(alice_page: Client) -> None:
    response = alice_page.get("/executions/new?target=pipeline:nope")
    assert response.status_code == 400 and "Unknown target" in html(response)
    assert alice_page.post("/executions/new", {"target": "pipeline:nope"}).status_code == 400
    assert not Execution.objects.exists()


# --- static and helpers --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/static/js/stream-client.js", "/static/js/execution-page.js", "/static/css/app.css"])
def test_static_files_are_served_by_the_app(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_pages_load_the_page_script_only(alice_page: Client) -> None:
    page = html(alice_page.get("/"))
    assert '<script type="module" src="/static/js/execution-page.js">' in page
    assert "progress.js" not in page


# --- rerun ------------------------------------------------------------------------------------


def test_an_ended_execution_has_a_rerun_button_that_starts_a_copy(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    done = make_execution(alice, "completed")
    page = html(alice_page.get(f"/executions/{done.id}"))
    form_tag = r'<form method="post" action="/executions/[^"]+/rerun" data-role="rerun-form"[^>]*>'
    form = re.search(form_tag, page).group(0)
    assert "hidden" not in form and f'action="/executions/{done.id}/rerun"' in form
    response = alice_page.post(f"/executions/{done.id}/rerun")
    copy = Execution.objects.get(rerun_of=done.id)
    assert response.status_code == 302 and response["Location"] == f"/executions/{copy.id}"
    assert (copy.owner, copy.inputs, copy.status) == (alice, done.inputs, "pending")
    copy_page = html(alice_page.get(response["Location"]))
    assert f'rerun of <a class="mono" href="/executions/{done.id}" data-role="rerun-of">{done.id}</a>' in copy_page


def test_a_running_execution_hides_the_rerun_button_until_it_ends(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    running = make_execution(alice, "running")
    page = html(alice_page.get(f"/executions/{running.id}"))
    assert re.search(r'data-role="rerun-form" hidden>', page), "the script shows it when the end arrives"


def test_rerun_of_someone_elses_execution_is_404(bob_page: Client, alice: Any, make_execution: Any) -> None:
    done = make_execution(alice, "completed")
    assert bob_page.post(f"/executions/{done.id}/rerun").status_code == 404
    assert bob_page.get(f"/executions/{done.id}/rerun").status_code == 405
    assert Execution.objects.count() == 1


def test_a_rerun_that_cannot_start_says_why_on_the_original_page(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    done = make_execution(alice, "completed")
    Execution.objects.filter(pk=done.id).update(inputs={"steps": 0})
    response = alice_page.post(f"/executions/{done.id}/rerun", follow=True)
    assert response.redirect_chain[-1][0] == f"/executions/{done.id}"
    assert "Not rerun: its inputs are no longer valid (steps:" in html(response)
    assert Execution.objects.count() == 1


# --- durable runs: resume from the failed step, the steps of a hand-over -----------------------------

RESUME_FORM = r'<form method="post" action="/executions/[^"]+/rerun" data-role="resume-form"[^>]*>(.*?)</form>'


def test_a_failed_durable_execution_has_a_resume_button_naming_its_failed_step(alice_page: Client, alice: Any) -> None:
    failed = EXECUTION_STATES["durable failed at step 3"](alice)
    page = html(alice_page.get(f"/executions/{failed.id}"))
    form = re.search(RESUME_FORM, page, re.S)
    assert form and "hidden" not in form.group(0).split(">", 1)[0]
    assert 'name="csrfmiddlewaretoken"' in form.group(1) and 'name="from_failed_step" value="1"' in form.group(1)
    assert "Resume from step 3</button>" in form.group(1)
    response = alice_page.post(f"/executions/{failed.id}/rerun", {"from_failed_step": "1"})
    copy = Execution.objects.get(rerun_of=failed.id)
    assert response["Location"] == f"/executions/{copy.id}"
    assert copy.from_failed_step and copy.owner == alice
    data = page_data(html(alice_page.get(response["Location"])))
    assert data["durable"] is True
    assert [(s["name"], s["reused_from"]) for s in data["reused_steps"]] == [
        ("step_1", failed.id), ("step_2", failed.id),
    ], "the script lists the reused steps first"


def test_only_a_durable_execution_has_a_resume_form_and_only_a_failed_one_shows_it(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    plain = make_execution(alice, "failed")
    assert 'data-role="resume-form"' not in html(alice_page.get(f"/executions/{plain.id}"))
    running = EXECUTION_STATES["resumed after a hand-over"](alice)
    page = html(alice_page.get(f"/executions/{running.id}"))
    assert re.search(r'data-role="resume-form" hidden>', page), "the script shows it if the run fails"


def test_a_resume_that_cannot_start_says_why(alice_page: Client, alice: Any, make_execution: Any) -> None:
    plain = make_execution(alice, "failed")
    response = alice_page.post(f"/executions/{plain.id}/rerun", {"from_failed_step": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/executions/{plain.id}"
    assert "Not rerun: Execution" in html(response) and "is not durable" in html(response)
    assert Execution.objects.count() == 1


def test_the_no_script_timeline_names_the_attempt_of_a_resumed_event(alice_page: Client, alice: Any) -> None:
    running = EXECUTION_STATES["resumed after a hand-over"](alice)
    page = html(alice_page.get(f"/executions/{running.id}"))
    assert re.search(r'<li data-event="resumed" data-seq="2">.*?attempt 2', page, re.S)


def test_the_detail_page_renders_the_servers_estimate_without_javascript(
    alice_page: Client, alice: Any, make_execution: Any
) -> None:
    running = make_execution(alice, "running", steps_entered=3)
    eta = running.progress["eta_seconds"]
    page = html(alice_page.get(f"/executions/{running.id}"))
    assert f'data-role="eta">{eta:g} s<' in page
    done = make_execution(alice, "completed")
    assert 'data-role="eta">0 s<' in html(alice_page.get(f"/executions/{done.id}"))


def test_the_list_hands_its_script_what_the_feed_needs(
    alice_page: Client, staff_page: Client, alice: Any, make_execution: Any
) -> None:
    make_execution(alice, "running")
    data = page_data(html(alice_page.get("/?type=pipeline")))
    assert data["feed"] == {"scope": "own", "adds_rows": True, "filters": {"type": "pipeline"}, "page_size": PAGE_SIZE}
    assert data["detail_url"] == f"/executions/{data['blank_id']}"
    assert page_data(html(staff_page.get("/?page=2")))["feed"]["scope"] == "all"
    empty = html(staff_page.get("/?status=failed"))
    assert 'data-role="table" hidden' in empty and "No executions match these filters" in empty
    assert re.search(r'<template id="row-template">\s*<tr data-execution-id="exec_000000000000"', empty)
