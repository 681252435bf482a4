"""WCAG 2.1 A and AA on every page, checked by axe-core in the real browser.

Each page is checked in the light and the dark colour scheme, with a running, a
completed and a failed execution on screen (the list shows all three; the
detail and admin change pages one each), and durable runs: a failed one (its
Resume button, its steps in the admin), its resume (reused steps) and one
handed over once (the hand-over in the timeline). The user is a superuser, so the list
has its owner column and the admin pages open. The drop-in widget is checked on
the plain page of tests/widget_site, with the three executions. The test fails on any violation
and prints each one (rule, element, why); run with ``-s`` to see the counts of
every page.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from executions.errors import NotCancellableError
from executions.handover import execution_hand_over
from executions.models import Execution
from executions.services import execution_cancel, execution_create, execution_rerun
from tests.browser.axe import axe_violations, describe, node_count
from tests.browser.helpers import Account, log_in, screenshot_path

try:
    from playwright.sync_api import Page, expect
except ImportError:  # conftest skips these tests (or fails them under CI=true)
    Page = Any  # type: ignore[misc,assignment]  # the tests are skipped then

SCHEMES = ("light", "dark")


def start(owner: Any, **inputs: Any) -> Execution:
    return execution_create(owner=owner, type="pipeline", target_id="demo_steps", inputs=inputs, config={})


def start_durable(owner: Any, **inputs: Any) -> Execution:
    return execution_create(owner=owner, type="pipeline", target_id="demo_durable", inputs=inputs, config={})


def wait_until(execution: Execution, predicate: Callable[[Execution], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        execution.refresh_from_db()
        if predicate(execution):
            return
        assert time.monotonic() < deadline, f"{execution.id} stayed {execution.status}"
        time.sleep(0.1)


@pytest.fixture
def three_executions(admin_account: Account) -> Iterator[dict[str, Execution]]:
    """A completed, a failed and a running execution (the last cancelled afterwards)."""
    owner = admin_account.user
    executions = {
        "completed": start(owner, steps=3, step_seconds=0),
        "failed": start(owner, steps=3, step_seconds=0, fail_at_step=2),
        "running": start(owner, steps=300, step_seconds=1),
    }
    try:
        wait_until(executions["completed"], lambda e: e.status == "completed")
        wait_until(executions["failed"], lambda e: e.status == "failed")
        wait_until(executions["running"], lambda e: e.status == "running" and e.seq >= 3)
        yield executions
    finally:
        with contextlib.suppress(NotCancellableError):  # it may have ended already
            execution_cancel(execution_id=executions["running"].id)


@pytest.fixture
def durable_executions(admin_account: Account) -> dict[str, Execution]:
    """Durable runs: one failed (its Resume button), its resume (reused steps), one handed over once."""
    owner = admin_account.user
    failed = start_durable(owner, steps=3, step_seconds=0, fail_at_step=2)
    handed = start_durable(owner, steps=3, step_seconds=1)
    wait_until(failed, lambda e: e.status == "failed")
    resumed = execution_rerun(original=failed, owner=owner, from_failed_step=True)
    wait_until(handed, lambda e: e.status == "running" and e.seq >= 3)
    assert execution_hand_over(execution_id=handed.id, attempt=handed.attempt, worker=handed.worker)
    wait_until(resumed, lambda e: e.status == "completed")
    wait_until(handed, lambda e: e.status == "completed")
    return {"failed": failed, "completed": resumed, "handed over": handed}


def settle_detail(page: Page, status: str) -> None:
    expect(page.locator('#execution [data-role="badge"]')).to_have_text(status.capitalize())
    if status == "running":
        expect(page.locator('#execution [data-role="connection"]')).to_have_attribute("data-mode", "live")
        expect(page.locator('[data-kind="step"][data-state="running"]')).to_have_count(1)
        expect(page.locator('[data-kind="step"][data-state="upcoming"]').first).to_be_visible()
    else:
        expect(page.locator(f'[data-kind="{status}"]')).to_have_count(1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_page_passes_wcag_21_aa(
    new_page: Callable[..., Page],
    admin_account: Account,
    three_executions: dict[str, Execution],
    durable_executions: dict[str, Execution],
    scheme: str,
) -> None:
    found: dict[str, list[dict[str, Any]]] = {}

    def check(name: str, page: Page) -> None:
        found[name] = axe_violations(page)
        page.screenshot(path=screenshot_path(f"axe-{name}-{scheme}"), full_page=True)

    page = new_page(color_scheme=scheme)
    page.goto("/accounts/login/")
    check("login", page)
    log_in(page, admin_account)

    expect(page.locator('.page-head [data-role="connection"]')).to_have_attribute("data-mode", "live")
    for status, execution in three_executions.items():
        row_badge = page.locator(f'tr[data-execution-id="{execution.id}"] [data-role="badge"]')
        expect(row_badge).to_have_text(status.capitalize())
    check("list", page)

    page.goto("/executions/new?target=pipeline:demo_steps")
    expect(page.get_by_role("heading", name="Inputs of demo_steps")).to_be_visible()
    check("start", page)

    for status, execution in three_executions.items():
        page.goto(f"/executions/{execution.id}")
        settle_detail(page, status)
        check(f"detail-{status}", page)
    for label, execution in durable_executions.items():
        page.goto(f"/executions/{execution.id}")
        settle_detail(page, execution.status)
        check(f"detail-durable-{label}", page)
    expect(page.locator('[data-kind="resumed"]')).to_have_count(1)

    # The drop-in widget on a plain page of another app (tests/widget_site), all three at once.
    page.goto("/widget-demo/?ids=" + ",".join(execution.id for execution in three_executions.values()))
    for status, execution in three_executions.items():
        widget = page.locator(f'[data-execution-progress][data-execution-id="{execution.id}"]')
        expect(widget.locator('[data-role="status"]')).to_have_text(status.capitalize())
    expect(page.locator('[data-execution-progress][data-connection="live"]')).to_have_count(1)
    check("widget", page)

    page.goto("/admin/")
    expect(page.get_by_role("link", name=re.compile("^Executions$")).first).to_be_visible()
    check("admin-index", page)
    page.goto("/admin/executions/execution/")
    expect(page.locator("#result_list tbody tr")).to_have_count(len(three_executions) + len(durable_executions))
    check("admin-changelist", page)
    for status, execution in three_executions.items():
        page.goto(reverse("admin:executions_execution_change", args=[quote(execution.id)]))
        expect(page.get_by_role("link", name="Open live page")).to_be_visible()
        check(f"admin-change-{status}", page)
    page.goto(reverse("admin:executions_execution_change", args=[quote(durable_executions["failed"].id)]))
    expect(page.get_by_role("heading", name="Steps (durable run)")).to_be_visible()
    check("admin-change-durable", page)

    print(f"\naxe, {scheme} scheme: " + ", ".join(f"{name} {node_count(v)}" for name, v in found.items()))
    failing = {name: violations for name, violations in found.items() if violations}
    assert not failing, f"WCAG 2.1 A/AA violations in the {scheme} scheme:\n" + "\n".join(
        describe(name, violations) for name, violations in failing.items()
    )
