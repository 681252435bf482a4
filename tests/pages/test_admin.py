"""Admin inspection of executions, through Django's test client."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from executions.admin import HISTORY_PAGE_SIZE, INLINE_EVENTS
from executions.models import Execution, WebhookAttempt
from tests.executions.states import EXECUTION_STATES
from tests.helpers import create_execution_with_history, logged_in, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/executions/execution/"


def admin_url(execution: Execution, view: str) -> str:
    """As the admin links it: the primary key quoted (``_`` becomes ``_5F``)."""
    return f"{CHANGELIST}{quote(execution.id)}/{view}/"


def change_url(execution: Execution) -> str:
    return admin_url(execution, "change")


def html(response: Any) -> str:
    return response.content.decode()


def test_changelist_has_progress_status_and_live_page_link(admin_page: Client, alice: Any, make_execution: Any) -> None:
    running = make_execution(alice, "running", steps_entered=3)
    done = make_execution(alice, "completed")
    page = html(admin_page.get(CHANGELIST))
    assert '<progress value="40.00" max="100"' in page and "40% · 2/5 steps" in page
    assert '<progress value="100.00" max="100"' in page
    assert f'href="/executions/{running.id}"' in page and f'href="/executions/{done.id}"' in page
    assert "Running" in page and "Completed" in page


def test_changelist_filters_and_search(admin_page: Client, alice: Any, make_execution: Any) -> None:
    running = make_execution(alice, "running")
    done = make_execution(alice, "completed")
    page = html(admin_page.get(CHANGELIST + "?status__exact=completed"))
    assert done.id in page and running.id not in page
    page = html(admin_page.get(CHANGELIST + f"?q={running.id}"))
    assert running.id in page and done.id not in page


def test_no_add_and_no_save_everything_read_only(admin_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "completed")
    assert admin_page.get(CHANGELIST + "add/").status_code == 403
    page = html(admin_page.get(change_url(execution)))
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert not re.search(r'<(input|textarea|select)[^>]+name="(status|inputs|outputs|progress|owner)"', page)
    assert "steps_completed" in page  # outputs shown read-only
    assert admin_page.post(change_url(execution), {"status": "running"}).status_code == 405
    execution.refresh_from_db()
    assert execution.status == "completed"


def test_change_page_links_to_live_page_and_history(admin_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    page = html(admin_page.get(change_url(execution)))
    assert f'href="/executions/{execution.id}">Open live page' in page
    assert f'href="{admin_url(execution, "events")}"' in page
    assert "Cancel execution" in page
    finished = make_execution(alice, "completed")
    assert "Cancel execution" not in html(admin_page.get(change_url(finished)))


def test_change_page_with_10000_events_shows_only_the_latest(admin_page: Client, alice: Any) -> None:
    execution = create_execution_with_history(alice, 10_000)
    admin_page.get(change_url(execution))  # warm up templates
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = admin_page.get(change_url(execution))
        elapsed = time.perf_counter() - started
    page = html(response)
    assert response.status_code == 200
    assert page.count('class="event-row"') == INLINE_EVENTS
    assert f"The latest {INLINE_EVENTS} of 10000 events, newest first." in page
    assert page.index("<td>10000</td>") < page.index("<td>9951</td>")  # newest first
    assert "<td>9950</td>" not in page
    assert len(queries) < 25, [q["sql"] for q in queries]
    assert elapsed < 2.0, f"change page took {elapsed:.2f} s"


def test_event_history_is_paginated(admin_page: Client, alice: Any) -> None:
    execution = create_execution_with_history(alice, 1_000)
    url = admin_url(execution, "events")
    first = html(admin_page.get(url))
    assert first.count('class="event-row"') == HISTORY_PAGE_SIZE
    assert "1000 events, oldest first; showing 1&ndash;100" in first
    assert f'href="?p={1000 // HISTORY_PAGE_SIZE}"' in first
    last = html(admin_page.get(url + "?p=10"))
    assert last.count('class="event-row"') == HISTORY_PAGE_SIZE
    assert "<td>1000</td>" in last and "<td>1</td>" not in last
    assert f'href="/executions/{execution.id}"' in last


def test_event_history_of_unknown_execution_is_404(admin_page: Client) -> None:
    assert admin_page.get(f"{CHANGELIST}exec_000000000000/events/").status_code == 404


def test_admin_needs_staff(alice_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    response = alice_page.get(admin_url(execution, "events"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_cancel_action_reports_what_it_did(admin_page: Client, alice: Any, make_execution: Any) -> None:
    running = make_execution(alice, "running")
    pending = make_execution(alice, "pending")
    done = make_execution(alice, "completed")
    response = admin_page.post(
        CHANGELIST,
        {"action": "cancel_selected", "_selected_action": [running.id, pending.id, done.id]},
        follow=True,
    )
    page = html(response)
    assert "Cancelled 2 execution(s):" in page and running.id in page and pending.id in page
    assert f"Not cancelled, 1 already ended: {done.id} (completed)." in page
    statuses = dict(Execution.objects.values_list("id", "status"))
    assert statuses == {running.id: "cancelled", pending.id: "cancelled", done.id: "completed"}


def test_cancel_button_on_the_change_page(admin_page: Client, alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    url = admin_url(execution, "cancel")
    assert admin_page.get(url).status_code == 405
    page = html(admin_page.post(url, follow=True))
    assert f"Cancelled {execution.id}." in page
    again = html(admin_page.post(url, follow=True))
    assert "was not cancelled: Cannot cancel execution with status" in again


def test_cancel_button_returns_to_the_change_page_of_any_id(
    admin_page: Client, alice: Any, make_execution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id the admin's unquoting would misread (``_23`` is ``#``) comes back quoted."""
    monkeypatch.setattr("executions.models.secrets.token_hex", lambda nbytes: "23abcdef0123")
    execution = make_execution(alice, "running")
    response = admin_page.post(admin_url(execution, "cancel"))
    assert response.status_code == 302 and response["Location"] == change_url(execution)
    assert admin_page.get(response["Location"]).status_code == 200


def test_the_status_column_is_coloured_by_the_admin_stylesheet(
    admin_page: Client, alice: Any, make_execution: Any
) -> None:
    """No inline colour (it could not follow the admin's dark theme): a class per status,
    coloured by static/css/admin.css, which every admin page loads."""
    running = make_execution(alice, "running")
    page = html(admin_page.get(CHANGELIST))
    assert (
        '<span class="execution-status execution-status-running"><span aria-hidden="true">&#9679;</span> Running</span>'
        in page
    )
    assert "style=\"color:" not in page
    assert '<link rel="stylesheet" href="/static/css/admin.css">' in page
    assert "execution-status-running" in html(admin_page.get(change_url(running)))
    assert '<link rel="stylesheet" href="/static/css/admin.css">' in html(admin_page.get("/admin/"))


def test_view_only_staff_cannot_cancel(alice: Any, make_execution: Any) -> None:
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_execution"))
    client = logged_in(viewer)
    execution = make_execution(alice, "running")
    changelist = html(client.get(CHANGELIST))
    assert execution.id in changelist and "cancel_selected" not in changelist
    assert "Cancel execution" not in html(client.get(change_url(execution)))
    assert client.post(admin_url(execution, "cancel")).status_code == 403
    execution.refresh_from_db()
    assert execution.status == "running"


def with_webhook_attempts(owner: Any, make_execution: Any) -> Execution:
    """A completed execution whose webhook failed twice (a 503, then a timeout) and then got through."""
    execution = make_execution(owner, status="completed")
    url = "https://hooks.example.com/progress"
    event = "execution.completed"
    WebhookAttempt.objects.create(
        execution=execution, attempt=1, url=url, event=event, status_code=503, error="HTTP 503", duration_ms=41
    )
    WebhookAttempt.objects.create(
        execution=execution, attempt=2, url=url, event=event, error="TimeoutError: timed out", duration_ms=10002
    )
    WebhookAttempt.objects.create(
        execution=execution, attempt=3, url=url, event=event, status_code=204, duration_ms=37, delivered=True
    )
    return execution


def test_change_page_lists_every_webhook_attempt(admin_page: Client, alice: Any, make_execution: Any) -> None:
    execution = with_webhook_attempts(alice, make_execution)
    page = html(admin_page.get(change_url(execution)))
    section = page[page.index("Webhook attempts") :]
    assert "HTTP 503" in section and "TimeoutError: timed out" in section
    assert "10002" in section and "https://hooks.example.com/progress" in section
    # Oldest first: the three attempts in the order they were made.
    assert section.index("HTTP 503") < section.index("TimeoutError") < section.index(">204<")
    # Read-only: no form fields for the attempts, no "add another".
    assert 'name="webhook_attempts-0-status_code"' not in page
    assert "Add another webhook attempt" not in page


def test_webhook_attempts_changelist_filters_failed_deliveries(
    admin_page: Client, alice: Any, make_execution: Any
) -> None:
    execution = with_webhook_attempts(alice, make_execution)
    failed = html(admin_page.get("/admin/executions/webhookattempt/", {"delivered__exact": "0"}))
    assert "2 webhook attempts" in failed
    assert execution.id in failed
    delivered = html(admin_page.get("/admin/executions/webhookattempt/", {"delivered__exact": "1"}))
    assert "1 webhook attempt" in delivered
    assert admin_page.get("/admin/executions/webhookattempt/add/").status_code == 403


def test_only_ended_executions_can_be_deleted(admin_page: Client, alice: Any, make_execution: Any) -> None:
    running = make_execution(alice, "running")
    ended = make_execution(alice, "completed")
    assert admin_page.get(admin_url(running, "delete")).status_code == 403
    assert admin_page.post(admin_url(running, "delete"), {"post": "yes"}).status_code == 403
    assert Execution.objects.filter(pk=running.pk).exists()
    assert admin_page.post(admin_url(ended, "delete"), {"post": "yes"}).status_code == 302
    assert not Execution.objects.filter(pk=ended.pk).exists()
    # No bulk delete: it could not check each row's status.
    assert "delete_selected" not in html(admin_page.get(CHANGELIST))


def test_rerun_action_starts_copies_owned_by_the_admin(
    admin_page: Client, superuser: Any, alice: Any, make_execution: Any
) -> None:
    done = make_execution(alice, "completed")
    failed = make_execution(alice, "failed", type="agent", target_id="echo", inputs={"x": 1})
    response = admin_page.post(
        CHANGELIST, {"action": "rerun_selected", "_selected_action": [done.id, failed.id]}, follow=True
    )
    copies = list(Execution.objects.exclude(pk__in=[done.id, failed.id]).order_by("created_at"))
    assert [(c.rerun_of, c.owner, c.target_id, c.inputs) for c in copies] == [
        (done.id, superuser, "demo_steps", done.inputs),
        (failed.id, superuser, "echo", failed.inputs),
    ]
    page = html(response)
    assert "Started 2 execution(s):" in page and f"{copies[0].id} (rerun of {done.id})" in page
    assert done.id in html(admin_page.get(change_url(copies[0])))  # its rerun_of field


def test_rerun_action_reports_what_it_could_not_start(admin_page: Client, alice: Any, make_execution: Any) -> None:
    done = make_execution(alice, "completed")
    Execution.objects.filter(pk=done.id).update(inputs={"steps": 0})
    page = html(admin_page.post(CHANGELIST, {"action": "rerun_selected", "_selected_action": [done.id]}, follow=True))
    assert f"Not rerun, 1: {done.id} (Invalid inputs)." in page
    assert Execution.objects.count() == 1


def test_view_only_staff_may_rerun(alice: Any, make_execution: Any, django_user_model: Any) -> None:
    """A rerun changes nothing of the original: seeing it is enough (as through the API)."""
    viewer = django_user_model.objects.create_user("viewer", password="correct horse battery staple", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_execution"))
    client = logged_in(viewer)
    done = make_execution(alice, "completed")
    assert "rerun_selected" in html(client.get(CHANGELIST))
    client.post(CHANGELIST, {"action": "rerun_selected", "_selected_action": [done.id]})
    assert Execution.objects.get(rerun_of=done.id).owner == viewer


# --- durable runs -----------------------------------------------------------------------------


def test_a_durable_execution_shows_its_steps_inline_read_only(
    admin_page: Client, alice: Any, make_execution: Any
) -> None:
    failed = EXECUTION_STATES["durable failed at step 3"](alice)
    page = html(admin_page.get(change_url(failed)))
    assert "Steps (durable run)" in page
    for name in ("step_1", "step_2", "step_3", "step_4"):
        assert name in page
    assert 'name="steps-0-name"' not in page, "read-only: no form fields"
    plain = make_execution(alice, "completed")
    assert "Steps (durable run)" not in html(admin_page.get(change_url(plain)))


def test_resume_action_resumes_failed_durable_executions_and_reports_the_others(
    admin_page: Client, superuser: Any, alice: Any, make_execution: Any
) -> None:
    failed = EXECUTION_STATES["durable failed at step 3"](alice)
    plain = make_execution(alice, "failed")
    response = admin_page.post(
        CHANGELIST, {"action": "resume_selected", "_selected_action": [failed.id, plain.id]}, follow=True
    )
    copy = Execution.objects.get(rerun_of=failed.id)
    assert (copy.owner, copy.from_failed_step) == (superuser, True)
    page = html(response)
    assert f"Started 1 execution(s): {copy.id} (resumed from {failed.id})." in page
    assert f"Not resumed, 1: {plain.id} (Execution &#x27;{plain.id}&#x27; is not durable" in page
    assert not Execution.objects.filter(rerun_of=plain.id).exists()
