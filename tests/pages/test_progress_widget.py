"""The drop-in widget's template tags (executions/templatetags/progress.py), rendered in-process.

What the script makes of them is the browser tests' (tests/browser/test_widget.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import Context, Template
from django.test import Client

from executions.models import ProgressSnapshot

pytestmark = pytest.mark.django_db

WIDGET = Template("{% load progress %}{% execution_progress execution %}")


def render(execution: Any, **context: Any) -> str:
    return WIDGET.render(Context({"execution": execution, **context}))


def state_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert found, html
    return json.loads(found.group(1))


def test_a_running_execution_renders_bar_step_eta_and_status(alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running", steps_entered=2)
    html = render(execution)
    assert "data-execution-progress" in html and f'data-execution-id="{execution.id}"' in html
    assert 'role="progressbar"' in html and 'aria-label="Progress of demo_steps"' in html
    assert 'aria-valuenow="20"' in html and "width: 20%" in html
    assert '<span class="epw-status epw-status-running" data-role="status">Running</span>' in html
    assert ">step_2 · 1/5</span>" in html  # raw, as the pages render it without JavaScript
    eta = execution.progress["eta_seconds"]
    assert eta is not None and f'<span data-role="eta-text">{eta:g} s</span>' in html
    state = state_of(html)
    last_event = ProgressSnapshot.objects.get(execution=execution, seq=execution.seq)
    assert state["execution_id"] == execution.id and state["seq"] == execution.seq == 3
    assert state["status"] == "running" and state["progress"] == execution.progress
    assert state["progress_at"] == json.loads(last_event.frame)["timestamp"]
    assert state["api_root"] == "/api/v1" and state["labels"]["running"] == "Running"
    assert "inputs" not in state and "outputs" not in state  # the host page may show it to anyone


def test_a_pending_execution_is_not_started_yet(alice: Any, make_execution: Any) -> None:
    html = render(make_execution(alice, "pending"))
    assert 'aria-valuetext="Not started"' in html and "aria-valuenow" not in html
    assert 'data-role="eta" hidden' in html
    state = state_of(html)
    assert state["seq"] == 0 and state["progress"] is None and state["progress_at"] is None


def test_an_ended_execution_shows_its_end(alice: Any, make_execution: Any) -> None:
    html = render(make_execution(alice, "failed", steps_entered=2))
    assert "epw-status-failed" in html and ">Failed<" in html and state_of(html)["status"] == "failed"


def test_a_label_names_it(alice: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    html = Template('{% load progress %}{% execution_progress e label="Nightly import" %}').render(
        Context({"e": execution})
    )
    assert '<span class="epw-label">Nightly import</span>' in html and 'aria-label="Progress of Nightly import"' in html


def test_an_id_is_looked_up_as_the_user_may_see_it(alice: Any, bob: Any, make_execution: Any) -> None:
    execution = make_execution(alice, "running")
    assert state_of(render(execution.id, user=alice))["execution_id"] == execution.id
    for context in ({"user": bob}, {"user": AnonymousUser()}, {}):
        html = render(execution.id, **context)
        assert "data-execution-progress" not in html and f"Execution {execution.id} is not available." in html
    assert "is not available" in render("exec_000000000000", user=alice)


def test_the_assets_tag_writes_the_stylesheet_and_the_module() -> None:
    html = Template("{% load progress %}{% execution_progress_assets %}").render(Context())
    assert html == (
        '<link rel="stylesheet" href="/static/css/progress-widget.css">\n'
        '<script type="module" src="/static/js/progress-widget.js"></script>'
    )


@pytest.mark.parametrize(
    "path", ["/static/js/progress-widget.js", "/static/js/progress-format.js", "/static/css/progress-widget.css"]
)
def test_the_widget_files_are_served(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_the_demo_page_of_the_tests_is_a_plain_template(alice_page: Client, alice: Any, make_execution: Any) -> None:
    """tests/widget_site: the page the browser tests load, with the three lines of docs/guides/widget.md only."""
    running = make_execution(alice, "running")
    html = alice_page.get(f"/widget-demo/?ids={running.id},exec_000000000000").content.decode()
    assert '<script type="module" src="/static/js/progress-widget.js"></script>' in html
    assert "/static/css/app.css" not in html and "execution-page.js" not in html
    assert html.count("data-execution-progress") == 1 and "exec_000000000000 is not available" in html
