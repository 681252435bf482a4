"""The pages in a real browser against daphne + Celery + Redis.

"No reload" is checked with a marker set on ``window`` after the page loads:
a reload would drop it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from executions.handover import execution_hand_over
from executions.models import Execution
from executions.services import execution_create
from tests.browser.helpers import DESKTOP, PHONE, Account, log_in, screenshot_path

try:
    from playwright.sync_api import Page, expect
except ImportError:  # conftest skips these tests (or fails them under CI=true)
    Page = Any  # type: ignore[misc,assignment]  # the tests are skipped then

DETAIL_URL = re.compile(r"/executions/exec_[0-9a-f]{12}$")
#: ``state:number`` of each step of the timeline, in page order.
STEP_STATES = "els => els.map(e => e.dataset.state + ':' + e.dataset.step)"


def mark_page(page: Page) -> None:
    page.evaluate("window.__noReload = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def start(owner: Any, **inputs: Any) -> Execution:
    return execution_create(owner=owner, type="pipeline", target_id="demo_steps", inputs=inputs, config={})


def bar(page: Page) -> Any:
    return page.locator('#execution [role="progressbar"]')


def badge(page: Page) -> Any:
    return page.locator('#execution [data-role="badge"]')


def wait_for_percentage_between(page: Page, selector: str, low: float, high: float) -> None:
    page.wait_for_function(
        """([selector, low, high]) => {
            const value = Number(document.querySelector(selector)?.getAttribute("aria-valuenow"));
            return value > low && value < high;
        }""",
        arg=[selector, low, high],
    )


def test_login_then_every_page_opens(new_page: Callable[..., Page], account: Account) -> None:
    page = new_page()
    page.goto("/executions/new")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/executions/new"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/executions/new$"))
    expect(page.get_by_role("heading", name="Start an execution")).to_be_visible()
    page.get_by_role("link", name="Executions", exact=True).click()
    expect(page.get_by_role("heading", name="Executions", exact=True)).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))


def test_start_demo_steps_from_the_form_and_watch_it_complete(user_page: Page) -> None:
    page = user_page
    page.get_by_role("link", name="New execution").first.click()
    # The page's script hides this button once it listens for the choice (a module script
    # runs after the page is parsed: a choice made before that would not submit).
    expect(page.locator("form[data-auto-submit] [data-js-hide]")).to_have_attribute("hidden", "")
    page.get_by_label("Pipeline or agent").select_option("pipeline:demo_steps")
    expect(page.get_by_role("heading", name="Inputs of demo_steps")).to_be_visible()
    page.get_by_label(re.compile(r"^Steps\b")).fill("4")
    page.get_by_label("Step seconds").fill("0.6")
    page.get_by_role("button", name="Start execution").click()

    expect(page).to_have_url(DETAIL_URL)
    mark_page(page)
    wait_for_percentage_between(page, '#execution [role="progressbar"]', 0, 100)  # seen mid-run
    expect(badge(page)).to_have_text("Running")
    expect(bar(page)).to_have_attribute("aria-valuenow", "100")
    expect(badge(page)).to_have_text("Completed")
    expect(page.locator('[data-role="percent"]')).to_have_text("100%")
    steps = page.locator('[data-kind="step"]')
    expect(steps).to_have_count(4)
    expect(page.locator('[data-kind="step"][data-state="done"]')).to_have_count(4)
    expect(page.locator('[data-role="outputs-json"]')).to_contain_text('"steps_completed": 4')
    expect(page.locator('[data-role="eta"]')).to_have_text("done")
    expect(page.get_by_role("button", name="Cancel execution")).to_have_count(0)
    assert_not_reloaded(page)
    execution = Execution.objects.get(pk=page.url.rsplit("/", 1)[1])
    assert execution.status == "completed"


def test_validation_errors_show_next_to_the_fields(user_page: Page) -> None:
    page = user_page
    page.goto("/executions/new?target=pipeline:demo_steps")
    page.get_by_label(re.compile(r"^Steps\b")).fill("0")
    page.get_by_label("Fail at step").fill("3")
    page.get_by_role("button", name="Start execution").click()
    steps_field = page.locator('[data-field="input_steps"]')
    expect(steps_field.locator(".field-errors")).to_have_text("Ensure this value is greater than or equal to 1.")
    expect(page.get_by_label(re.compile(r"^Steps\b"))).to_have_attribute("aria-invalid", "true")
    page.get_by_label(re.compile(r"^Steps\b")).fill("2")
    page.get_by_role("button", name="Start execution").click()
    fail_at_step_errors = page.locator('[data-field="input_fail_at_step"] .field-errors')
    expect(fail_at_step_errors).to_contain_text("less than or equal to steps (2)")
    assert not Execution.objects.exists()


def test_cancel_a_running_execution_from_its_page(user_page: Page, account: Account) -> None:
    page = user_page
    execution = start(account.user, steps=30, step_seconds=1)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    expect(badge(page)).to_have_text("Running")
    page.get_by_role("button", name="Cancel execution").click()
    expect(badge(page)).to_have_text("Cancelled", timeout=5_000)
    expect(page.get_by_role("button", name="Cancel execution")).to_have_count(0)
    expect(page.locator('[data-kind="cancelled"]')).to_be_visible()
    expect(page.locator('[data-kind="step"][data-state="cancelled"]')).to_have_count(1)
    expect(page.locator('[data-kind="step"][data-state="upcoming"]')).to_have_count(0)
    expect(page.locator('[data-role="cancelled-note"]')).to_be_visible()
    assert_not_reloaded(page)
    execution.refresh_from_db()
    assert execution.status == "cancelled"


def test_a_failed_execution_shows_its_error(user_page: Page) -> None:
    page = user_page
    page.goto("/executions/new?target=pipeline:demo_steps")
    page.get_by_label(re.compile(r"^Steps\b")).fill("3")
    page.get_by_label("Step seconds").fill("0.3")
    page.get_by_label("Fail at step").fill("2")
    page.get_by_role("button", name="Start execution").click()
    expect(page).to_have_url(DETAIL_URL)
    expect(badge(page)).to_have_text("Failed")
    error = page.locator('[data-role="error"]')
    expect(error).to_be_visible()
    expect(error.locator('[data-role="error-type"]')).to_have_text("ValueError")
    expect(error.locator('[data-role="error-message"]')).to_have_text("Simulated failure at step 2")
    expect(page.locator('[data-kind="step"]')).to_have_count(2)
    expect(page.locator('[data-kind="step"][data-state="failed"]')).to_contain_text("step_2")
    # The same, rendered by the server.
    page.reload()
    expect(page.locator('[data-role="error-message"]')).to_have_text("Simulated failure at step 2")


def test_the_list_updates_a_running_row_live(user_page: Page, account: Account) -> None:
    page = user_page
    finished = start(account.user, steps=1, step_seconds=0)
    execution = start(account.user, steps=8, step_seconds=0.6)
    page.goto("/")
    mark_page(page)
    row = page.locator(f'tr[data-execution-id="{execution.id}"]')
    expect(row).to_be_visible()
    selector = f'tr[data-execution-id="{execution.id}"] [role="progressbar"]'
    wait_for_percentage_between(page, selector, 0, 100)
    expect(row.locator('[data-role="badge"]')).to_have_text("Running")
    expect(row.locator('[data-role="step"]')).to_contain_text("step_")
    expect(row.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
    expect(row.locator('[data-role="badge"]')).to_have_text("Completed")
    expect(row.locator('[data-role="percent"]')).to_have_text("100%")
    expect(page.locator(f'tr[data-execution-id="{finished.id}"] [data-role="badge"]')).to_have_text("Completed")
    assert_not_reloaded(page)


def test_the_list_shows_new_executions_and_settles_them_without_a_reload(user_page: Page, account: Account) -> None:
    """One socket for the whole list (WS /api/v1/executions/ws): rows appear, move and settle."""
    page = user_page
    list_url = page.url
    # Away first, so that no socket of the page the login landed on can be
    # reported after the listener is attached: from here, every socket is this load's.
    page.goto("about:blank")
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(list_url)
    mark_page(page)
    expect(page.get_by_role("heading", name="No executions yet")).to_be_visible()
    expect(page.locator('.page-head [data-role="connection"]')).to_have_attribute("data-mode", "live")

    first = start(account.user, steps=6, step_seconds=0.5)
    row = page.locator(f'tr[data-execution-id="{first.id}"]')
    expect(row).to_be_visible()
    expect(page.get_by_role("heading", name="No executions yet")).to_be_hidden()
    expect(row.get_by_role("link", name=first.id)).to_have_attribute("href", f"/executions/{first.id}")
    expect(row.locator('[data-role="target"]')).to_have_text("demo_steps")
    wait_for_percentage_between(page, f'tr[data-execution-id="{first.id}"] [role="progressbar"]', 0, 100)
    expect(row.locator('[data-role="badge"]')).to_have_text("Running")
    expect(row.locator('[data-role="step"]')).to_contain_text("step_")
    expect(row.locator('[data-role="eta"]')).to_have_text(re.compile(r"^~\d.* left$|^less than a second$"))

    second = start(account.user, steps=2, step_seconds=0.2)
    second_row = page.locator(f'tr[data-execution-id="{second.id}"]')
    expect(second_row.locator('[data-role="badge"]')).to_have_text("Completed")
    expect(page.locator('[data-role="total"]')).to_have_text("2 total")
    order = page.locator("tr.execution-row").evaluate_all("els => els.map(e => e.dataset.executionId)")
    assert order == [second.id, first.id], "newest first"

    expect(row.locator('[data-role="badge"]')).to_have_text("Completed")
    expect(row.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
    expect(row.locator('[data-role="percent"]')).to_have_text("100%")
    expect(row.locator('[data-role="eta"]')).to_have_text("")
    assert_not_reloaded(page)
    feeds = [url for url in sockets if url.endswith("/api/v1/executions/ws")]
    assert len(feeds) == 1 and len(sockets) == 1, f"one socket for the whole list, not one per row: {sockets}"


# A WebSocket whose every connection sends one empty snapshot (nothing is running any more).
EMPTY_SNAPSHOT_SOCKET = """
window.WebSocket = class {
  constructor(url) {
    this.url = String(url);
    this.readyState = 1;
    window.__feedUrls = [...(window.__feedUrls || []), this.url];
    const snapshot = { type: "snapshot", executions: [], timestamp: new Date().toISOString() };
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(snapshot) }), 0);
  }
  close() { this.readyState = 3; }
};
"""


def test_the_feed_client_settles_what_ended_while_it_was_away(user_page: Page, account: Account) -> None:
    """An execution the page shows as running and the snapshot no longer lists has ended: the
    client fetches its REST state (a row rendered just before its run ended still settles)."""
    page = user_page
    ended = start(account.user, steps=1, step_seconds=0)
    page.goto(f"/executions/{ended.id}")
    expect(badge(page)).to_have_text("Completed")
    delivered = page.evaluate(
        """async ([executionId, fakeSocket]) => {
            eval(fakeSocket);
            const { FeedClient } = await import("/static/js/stream-client.js");
            return await new Promise((resolve) => {
                new FeedClient({
                    executions: [{ execution_id: executionId, status: "running", seq: 1 }],
                    scope: "all",
                    status: ["running"],
                    onExecution: (execution) => resolve([execution.execution_id, execution.status, window.__feedUrls]),
                }).start();
            });
        }""",
        [ended.id, EMPTY_SNAPSHOT_SOCKET],
    )
    assert delivered[:2] == [ended.id, "completed"]
    assert delivered[2][-1].endswith("/api/v1/executions/ws?scope=all&status=running")


def test_staff_see_everyones_new_executions_on_the_list(
    new_page: Callable[..., Page], admin_account: Account, account: Account
) -> None:
    page = new_page()
    log_in(page, admin_account)
    mark_page(page)
    expect(page.locator('.page-head [data-role="connection"]')).to_have_attribute("data-mode", "live")
    theirs = start(account.user, steps=2, step_seconds=0.3)
    row = page.locator(f'tr[data-execution-id="{theirs.id}"]')
    expect(row.locator('[data-role="owner"]')).to_have_text(account.username)
    expect(row.locator('[data-role="badge"]')).to_have_text("Completed")
    assert_not_reloaded(page)


def test_rerun_an_ended_execution_from_its_page(user_page: Page, account: Account) -> None:
    page = user_page
    original = start(account.user, steps=3, step_seconds=0.3)
    page.goto(f"/executions/{original.id}")
    rerun = page.get_by_role("button", name="Rerun")
    expect(badge(page)).to_have_text("Running")
    expect(rerun).to_be_hidden()
    expect(page.locator('[data-role="eta"]')).to_have_text(re.compile(r"^(about .+|less than a second|estimating…)$"))
    expect(badge(page)).to_have_text("Completed")
    expect(page.locator('[data-role="eta"]')).to_have_text("done")
    expect(rerun).to_be_visible()  # shown when the end arrived live
    rerun.click()
    expect(page).to_have_url(DETAIL_URL)
    assert not page.url.endswith(original.id)
    expect(page.locator('[data-role="rerun-of"]')).to_have_text(original.id)
    expect(badge(page)).to_have_text("Completed")
    copy = Execution.objects.get(pk=page.url.rsplit("/", 1)[1])
    assert (copy.rerun_of, copy.inputs, copy.owner_id) == (original.id, original.inputs, account.user.pk)


def test_the_detail_page_survives_a_daphne_restart(user_page: Page, account: Account, live_stack: Any) -> None:
    page = user_page
    steps = 20
    execution = start(account.user, steps=steps, step_seconds=0.7)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    connection = page.locator('[data-role="connection"]')
    expect(connection).to_have_attribute("data-mode", "live")
    wait_for_percentage_between(page, '#execution [role="progressbar"]', 5, 35)

    live_stack.daphne.stop()
    expect(connection).to_have_attribute("data-mode", re.compile("reconnecting|polling|offline"))
    live_stack.restart_daphne()
    execution.refresh_from_db()
    assert execution.status == "running", "the run ended before daphne was back: nothing was resumed"

    expect(bar(page)).to_have_attribute("aria-valuenow", "100")
    expect(badge(page)).to_have_text("Completed")
    done = page.locator('[data-kind="step"][data-state="done"]')
    expect(done).to_have_count(steps)
    expect(page.locator('[data-kind="step"]')).to_have_count(steps)
    for number in range(1, steps + 1):
        step = page.locator(f'[data-kind="step"][data-step="{number}"]')
        expect(step).to_contain_text(f"step_{number}")
        expect(step.locator('[data-role="duration"]')).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    expect(page.locator('[data-kind="completed"]')).to_have_count(1)
    expect(page.locator('[data-kind="more"]')).to_have_count(0)
    assert_not_reloaded(page)
    # What the page pieced together live matches what it renders at load from the stored events.
    rendered = page.locator('[data-kind="step"]').evaluate_all(STEP_STATES)
    page.reload()
    assert page.locator('[data-kind="step"]').evaluate_all(STEP_STATES) == rendered


#: Records every value the page's live indicator takes, from now on, in ``window.__modes``.
RECORD_MODES = """() => {
    const el = document.querySelector('[data-role="connection"]');
    window.__modes = [el.dataset.mode];
    new MutationObserver(() => {
        if (window.__modes.at(-1) !== el.dataset.mode) window.__modes.push(el.dataset.mode);
    }).observe(el, { attributes: true, attributeFilter: ["data-mode"] });
}"""


def test_the_detail_page_across_a_reload_has_no_gap_and_no_duplicate_step(
    user_page: Page, account: Account, live_stack: Any
) -> None:
    """SIGHUP to serve mid-run: the socket is closed with 1012, the page says "Reconnecting…"
    until it is live again (within a second or two), and the timeline stays whole."""
    page = user_page
    steps = 25
    execution = start(account.user, steps=steps, step_seconds=0.4)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    connection = page.locator('[data-role="connection"]')
    expect(connection).to_have_attribute("data-mode", "live")
    page.evaluate(RECORD_MODES)
    wait_for_percentage_between(page, '#execution [role="progressbar"]', 3, 30)

    replaced = live_stack.reload_web()
    live_stack.wait_reloaded(replaced)
    execution.refresh_from_db()
    assert execution.status == "running", "the run ended before the reload: nothing was cut"

    expect(badge(page)).to_have_text("Completed")
    expect(page.locator('[data-kind="step"][data-state="done"]')).to_have_count(steps)
    expect(page.locator('[data-kind="step"]')).to_have_count(steps)
    for number in range(1, steps + 1):
        expect(page.locator(f'[data-kind="step"][data-step="{number}"]')).to_have_count(1)
    expect(page.locator('[data-kind="completed"]')).to_have_count(1)
    assert_not_reloaded(page)
    # "Reconnecting…" once, while the socket was away, then live again until the end.
    assert page.evaluate("window.__modes") == ["live", "reconnecting", "live", "ended"]
    rendered = page.locator('[data-kind="step"]').evaluate_all(STEP_STATES)
    page.reload()
    assert page.locator('[data-kind="step"]').evaluate_all(STEP_STATES) == rendered


def test_server_sent_events_when_the_websocket_cannot_be_used(user_page: Page, account: Account) -> None:
    page = user_page
    page.add_init_script("delete window.WebSocket")
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/events?after_seq=" in request.url else None)
    execution = start(account.user, steps=4, step_seconds=0.5)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    expect(page.locator('[data-role="connection"]')).to_have_attribute("data-mode", "live")
    expect(page.locator('[data-role="connection"]')).to_contain_text("Live (SSE)")
    expect(bar(page)).to_have_attribute("aria-valuenow", "100")
    expect(badge(page)).to_have_text("Completed")
    expect(page.locator('[data-kind="step"][data-state="done"]')).to_have_count(4)
    assert polls == [], "the event stream carried every event"
    assert_not_reloaded(page)


def test_polling_when_neither_stream_can_be_used(user_page: Page, account: Account) -> None:
    page = user_page
    page.add_init_script("delete window.WebSocket")
    page.route(re.compile(r"/progress/stream"), lambda route: route.abort())
    execution = start(account.user, steps=4, step_seconds=0.5)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    connection = page.locator('[data-role="connection"]')
    expect(connection).to_have_attribute("data-mode", "polling")
    expect(connection).to_contain_text("polling")
    expect(bar(page)).to_have_attribute("aria-valuenow", "100")
    expect(badge(page)).to_have_text("Completed")
    expect(page.locator('[data-kind="step"][data-state="done"]')).to_have_count(4)
    assert_not_reloaded(page)


def test_without_javascript_the_server_renders_the_state(
    new_page: Callable[..., Page], account: Account, user_page: Page
) -> None:
    execution = start(account.user, steps=3, step_seconds=0)
    user_page.goto(f"/executions/{execution.id}")
    expect(badge(user_page)).to_have_text("Completed")  # it has ended (watched with JavaScript)
    page = new_page(javascript=False)
    log_in(page, account, f"/executions/{execution.id}")
    expect(badge(page)).to_have_text("Completed")
    expect(bar(page)).to_have_attribute("aria-valuenow", "100")
    expect(page.locator('[data-role="percent"]')).to_have_text("100%")
    expect(page.locator('[data-role="step"]')).to_have_text("3/3")
    # The stored events as a plain list (the timeline of steps is the script's).
    events = page.locator('[data-role="timeline"] li[data-event]')
    assert events.evaluate_all("els => els.map(e => e.dataset.event)") == [
        "started", "progress", "progress", "progress", "completed"
    ]
    expect(page.locator('li[data-event="progress"] .event-step')).to_have_text(
        ["step_1 · 0/3", "step_2 · 1/3", "step_3 · 2/3"]
    )
    expect(page.locator('[data-kind="step"]')).to_have_count(0)
    expect(page.locator('[data-role="outputs-json"]')).to_contain_text('"steps_completed": 3')
    expect(page.locator('[data-role="connection"]')).to_be_hidden()


def test_admin_list_detail_and_cancel_action(new_page: Callable[..., Page], admin_account: Account) -> None:
    running = start(admin_account.user, steps=30, step_seconds=1)
    page = new_page()
    page.goto("/admin/")
    page.get_by_label("Username").fill(admin_account.username)
    page.get_by_label("Password").fill(admin_account.password)
    page.get_by_role("button", name="Log in").click()
    page.goto("/admin/executions/execution/")
    row = page.locator("#result_list tbody tr", has_text=running.id)
    expect(row).to_be_visible()
    expect(row.locator("progress")).to_have_count(1)
    expect(row.get_by_role("link", name="Open →")).to_have_attribute("href", f"/executions/{running.id}")
    page.screenshot(path=screenshot_path("admin-changelist"), full_page=True)

    row.get_by_role("link", name=running.id).click()
    expect(page.get_by_role("link", name="Open live page")).to_be_visible()
    expect(page.get_by_text("Full event history (paginated)")).to_be_visible()
    expect(page.locator('input[name="_save"]')).to_have_count(0)
    page.screenshot(path=screenshot_path("admin-change"), full_page=True)
    page.get_by_role("link", name="Event history", exact=True).click()
    expect(page.locator("tr.event-row").first).to_be_visible()

    page.goto("/admin/executions/execution/")
    page.locator("#result_list tbody tr", has_text=running.id).locator('input[name="_selected_action"]').check()
    page.locator('select[name="action"]').select_option("cancel_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Cancelled 1 execution(s): {running.id}.")
    running.refresh_from_db()
    assert running.status == "cancelled"

    page.get_by_role("link", name="Open →").first.click()
    expect(page).to_have_url(re.compile(f"/executions/{running.id}$"))
    expect(badge(page)).to_have_text("Cancelled")
    expect(page.get_by_role("link", name="Open in admin")).to_be_visible()


def test_pages_at_desktop_and_phone_width(new_page: Callable[..., Page], account: Account) -> None:
    """Screenshots of the list, detail and start pages; nothing overflows sideways on a phone."""
    completed = start(account.user, steps=4, step_seconds=0.2)
    start(account.user, steps=2, step_seconds=0.2, fail_at_step=2)
    running = start(account.user, steps=40, step_seconds=1)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(viewport=viewport)
        page.goto("/accounts/login/")
        page.screenshot(path=screenshot_path(f"login-{label}"), full_page=True)
        log_in(page, account)
        expect(page.locator(f'tr[data-execution-id="{completed.id}"] [data-role="badge"]')).to_have_text("Completed")
        expect(page.locator(f'tr[data-execution-id="{running.id}"] [data-role="badge"]')).to_have_text("Running")
        expect(page.locator('[data-role="badge"]', has_text="Failed")).to_have_count(1)
        for name, path in (
            ("list", "/"),
            ("detail-running", f"/executions/{running.id}"),
            ("detail-completed", f"/executions/{completed.id}"),
            ("start", "/executions/new?target=pipeline:demo_steps"),
        ):
            page.goto(path)
            if name == "detail-running":
                expect(page.locator('[data-kind="step"][data-state="running"]')).to_have_count(1)
                expect(page.locator('[data-role="eta"]')).to_have_text(re.compile(r"about|less"))
                expect(page.locator('[data-kind="more"]')).to_contain_text(re.compile(r"\+ \d+ more steps"))
            page.screenshot(path=screenshot_path(f"{name}-{label}"), full_page=True)
            overflow = page.evaluate("document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth")
            assert overflow <= 0, f"{name} overflows by {overflow}px at {viewport['width']}px"
    page.goto(f"/executions/{running.id}")
    page.get_by_role("button", name="Cancel execution").click()
    expect(badge(page)).to_have_text("Cancelled")


def test_a_reload_mid_run_neither_repeats_nor_skips_steps(user_page: Page, account: Account) -> None:
    page = user_page
    steps = 6
    execution = start(account.user, steps=steps, step_seconds=0.7)
    page.goto(f"/executions/{execution.id}")
    expect(page.locator('[data-kind="step"][data-step="2"][data-state="running"]')).to_have_count(1)
    page.reload()
    mark_page(page)
    expect(bar(page)).to_have_attribute("aria-valuenow", "100")
    expect(badge(page)).to_have_text("Completed")
    expect(page.locator('[data-role="percent"]')).to_have_text("100%")
    expect(page.locator('[data-role="step"]')).to_have_text(f"{steps} of {steps} steps")
    expect(page.locator('[data-kind="step"][data-state="done"]')).to_have_count(steps)
    numbers = page.locator('[data-kind="step"]').evaluate_all("els => els.map(e => Number(e.dataset.step))")
    assert numbers == list(range(1, steps + 1))
    for number in range(1, steps + 1):
        duration = page.locator(f'[data-kind="step"][data-step="{number}"] [data-role="duration"]')
        expect(duration).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    expect(page.locator('[data-kind="started"]')).to_have_count(1)
    expect(page.locator('[data-kind="completed"]')).to_have_count(1)
    assert_not_reloaded(page)


# A WebSocket that loses the third message of each socket and delivers the fifth twice.
LOSSY_WEBSOCKET = """
(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    set onmessage(handler) {
      let count = 0;
      super.onmessage = (event) => {
        count += 1;
        if (count === 3) return;
        handler(event);
        if (count === 5) handler(event);
      };
    }
    get onmessage() { return super.onmessage; }
  };
})();
"""


def test_the_stream_client_fills_gaps_and_never_repeats_a_frame(user_page: Page, account: Account) -> None:
    page = user_page
    page.add_init_script(LOSSY_WEBSOCKET)
    gap_fetches: list[str] = []
    page.on("request", lambda request: gap_fetches.append(request.url) if "/events?after_seq=" in request.url else None)
    execution = start(account.user, steps=5, step_seconds=0.3)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    expect(badge(page)).to_have_text("Completed")
    assert page.locator('[data-kind="step"]').evaluate_all(STEP_STATES) == [f"done:{n}" for n in range(1, 6)]
    # The client on its own, as another page would use it: the whole stored history, once each.
    received = page.evaluate(
        """async (executionId) => {
            const { StreamClient } = await import("/static/js/stream-client.js");
            return await new Promise((resolve) => {
                const frames = [];
                new StreamClient(executionId, {
                    afterSeq: 0,
                    onFrame: (frame) => frames.push([frame.seq, frame.type]),
                    onConnection: (mode) => { if (mode === "ended") resolve(frames); },
                }).start();
            });
        }""",
        execution.id,
    )
    execution.refresh_from_db()
    assert [seq for seq, _ in received] == list(range(1, execution.seq + 1))
    assert received[-1][1] == "completed"
    assert gap_fetches, "the lost frame was never fetched from the events endpoint"
    assert_not_reloaded(page)


def test_polling_honours_retry_after(user_page: Page, account: Account) -> None:
    page = user_page
    page.add_init_script("delete window.WebSocket")
    page.route(re.compile(r"/progress/stream"), lambda route: route.abort())  # no event stream either
    asked: list[float] = []

    def throttle_first(route: Any) -> None:
        asked.append(time.monotonic())
        if len(asked) == 1:
            route.fulfill(
                status=429,
                headers={"Retry-After": "3"},
                content_type="application/json",
                body='{"detail": "Request was throttled."}',
            )
        else:
            route.continue_()

    page.route(re.compile(r"/events\?after_seq="), throttle_first)
    execution = start(account.user, steps=3, step_seconds=0.2)
    page.goto(f"/executions/{execution.id}")
    expect(page.locator('[data-role="connection"]')).to_have_attribute("data-mode", "offline")
    expect(badge(page)).to_have_text("Completed")
    assert asked[1] - asked[0] >= 2.8, f"polled again {asked[1] - asked[0]:.1f} s after a 429 with Retry-After: 3"
    expect(page.locator('[data-kind="step"][data-state="done"]')).to_have_count(3)


def test_the_presentation_rules_of_the_script(user_page: Page) -> None:
    """The rules live in static/js/execution-page.js only; here they are called directly."""
    results = user_page.evaluate(
        """async () => {
            const m = await import("/static/js/execution-page.js");
            const at = (seconds) => new Date(Date.UTC(2026, 0, 1, 12, 0, 0) + seconds * 1000).toISOString();
            const progress = (step, total, name) => ({
                current_step: step - 1,
                total_steps: total,
                percentage: ((step - 1) / total) * 100,
                current_step_name: name,
            });
            const frames = [
                { type: "started", seq: 1, status: "running", timestamp: at(0) },
                { type: "progress", seq: 2, status: "running", progress: progress(1, 40, "fetch"), timestamp: at(1) },
                {
                    type: "progress", seq: 3, status: "running",
                    progress: { ...progress(1, 40, "fetch"), percentage: 1 }, timestamp: at(1.5),
                },
                { type: "progress", seq: 4, status: "running", progress: progress(2, 40, "resize"), timestamp: at(3) },
            ];
            const failed = {
                type: "failed", seq: 5, status: "failed", progress: progress(2, 40, "resize"), timestamp: at(4.25),
            };
            const plannedSteps = Array.from({ length: 40 }, (_, i) => `step_${i + 1}`);
            // A durable run handed over in step 2 of 3, resumed from a run that failed at step 1
            // (its step 1 reused): the cut-off step, the marker, each step's attempt.
            const handedOver = [
                { type: "started", seq: 1, status: "running", timestamp: at(0) },
                { type: "progress", seq: 2, status: "running", progress: progress(2, 3, "b"), timestamp: at(1) },
                {
                    type: "resumed", seq: 3, status: "running", attempt: 2,
                    progress: progress(2, 3, null), timestamp: at(5),
                },
                { type: "progress", seq: 4, status: "running", progress: progress(2, 3, "b"), timestamp: at(6) },
                { type: "progress", seq: 5, status: "running", progress: progress(3, 3, "c"), timestamp: at(7) },
                { type: "completed", seq: 6, status: "completed", progress: progress(3, 3, "c"), timestamp: at(8) },
            ];
            const reusedSteps = [
                { name: "a", attempt: 1, started_at: at(0), finished_at: at(0.5), reused_from: "exec_000000000001" },
            ];
            const briefDurable = (t) => t.steps.map((s) => (s.kind === "resumed"
                ? `resumed:${s.number}:${s.attempt}:${s.at}`
                : `${s.number}:${s.name}:${s.state}:${s.attempt}:${s.reusedFrom ?? ""}`));
            const brief = (t) => ({
                ...t,
                steps: t.steps.map((s) => `${s.number}:${s.name}:${s.state}:${s.startedAt ?? ""}:${s.endedAt ?? ""}`),
            });
            return {
                durations: [null, 0.04, 3.24, 42.4, 65, 7380, -5].map(m.formatDuration),
                steps: [
                    m.stepText("running", progress(3, 5, "step_3")),
                    m.stepText(
                        "completed", { current_step: 5, total_steps: 5, percentage: 100, current_step_name: null },
                    ),
                    m.stepText("running", { current_step: 2, total_steps: 5, percentage: 40, current_step_name: null }),
                    m.stepText("pending", null),
                ],
                percent: [m.percentOf({ percentage: 33.33333 }), m.percentOf({ percentage: 140 })],
                running: brief(m.buildTimeline(frames, { status: "running", plannedSteps })),
                failed: brief(m.buildTimeline([...frames, failed], { status: "failed", plannedSteps })),
                window: brief(m.buildTimeline(frames.slice(3), { status: "running", plannedSteps: null })),
                handedOver: briefDurable(m.buildTimeline(handedOver, { status: "completed", reusedSteps })),
                remaining: [
                    m.remainingText({
                        status: "running", progress: { percentage: 50, eta_seconds: 10 }, progressAt: 10000, now: 12000,
                    }),
                    m.remainingText({
                        status: "running", progress: { percentage: 99.99, eta_seconds: 0.1 }, progressAt: 10000,
                        now: 10000,
                    }),
                    m.remainingText({
                        status: "running", progress: { percentage: 0, eta_seconds: null }, progressAt: 0, now: 5000,
                    }),
                    m.remainingText({
                        status: "completed", progress: { percentage: 100, eta_seconds: 0 }, progressAt: 0, now: 0,
                    }),
                    m.remainingText({ status: "pending", progress: null, progressAt: null, now: 0 }),
                    m.remainingText({
                        status: "running", progress: { percentage: 50, eta_seconds: 42.4 }, progressAt: null, now: 0,
                    }),
                ],
            };
        }"""
    )
    assert results["durations"] == ["—", "0.0 s", "3.2 s", "42 s", "1 min 05 s", "2 h 03 min", "0.0 s"]
    assert results["steps"] == ["Step 3 of 5 · step_3", "5 of 5 steps", "2 of 5 steps", ""]
    assert results["percent"] == [33.33, 100]
    t = "2026-01-01T12:00:0{}.000Z".format
    running = results["running"]
    assert running["startedAt"] == t("0") and running["progressAt"] == t("3") and running["end"] is None
    assert running["steps"] == [
        f"1:fetch:done:{t('1')}:{t('3')}",  # the report within the step added no row
        f"2:resize:running:{t('3')}:",
        *(f"{n}:step_{n}:upcoming::" for n in range(3, 8)),
    ]
    assert running["moreSteps"] == 33
    failed = results["failed"]
    assert failed["steps"] == [f"1:fetch:done:{t('1')}:{t('3')}", f"2:resize:failed:{t('3')}:2026-01-01T12:00:04.250Z"]
    assert failed["end"] == {"type": "failed", "at": "2026-01-01T12:00:04.250Z"} and failed["moreSteps"] == 0
    window = results["window"]  # a long run's page shows only the latest events
    assert window["startedAt"] is None and window["steps"] == [f"2:resize:running:{t('3')}:"]
    assert results["handedOver"] == [
        "1:a:reused:1:exec_000000000001",
        "2:b:interrupted:1:",
        f"resumed:2:2:{t('5')}",
        "2:b:done:2:",
        "3:c:done:2:",
    ]
    # The estimate is the server's (progress.eta_seconds); the script counts it down since it was recorded.
    assert results["remaining"] == ["about 8.0 s", "less than a second", "estimating…", "done", "—", "about 42 s"]


# --- durable runs ------------------------------------------------------------------------------

#: ``step:state:attempt`` of each step of the timeline, in page order.
STEP_ATTEMPTS = "els => els.map(e => `${e.dataset.step}:${e.dataset.state}:${e.dataset.attempt}`)"


def start_durable(owner: Any, **inputs: Any) -> Execution:
    return execution_create(owner=owner, type="pipeline", target_id="demo_durable", inputs=inputs, config={})


def test_the_detail_page_shows_a_hand_over_live_and_the_attempt_of_each_step(
    user_page: Page, account: Account
) -> None:
    page = user_page
    execution = start_durable(account.user, steps=3, step_seconds=2)
    page.goto(f"/executions/{execution.id}")
    mark_page(page)
    expect(page.locator('[data-kind="step"][data-step="2"][data-state="running"]')).to_have_count(1)
    execution.refresh_from_db()
    # What the sweeper does with a lost worker's run: the next attempt, queued for any worker.
    assert execution_hand_over(execution_id=execution.id, attempt=execution.attempt, worker=execution.worker)
    marker = page.locator('[data-kind="resumed"]')
    expect(marker).to_have_text(re.compile(r"^Resumed on attempt 2 at step \d"))
    expect(badge(page)).to_have_text("Completed", timeout=20_000)
    cut = int(marker.get_attribute("data-step") or 0)
    expected = [f"{n}:done:1" for n in range(1, cut)] + [f"{cut}:interrupted:1"]
    expected += [f"{n}:done:2" for n in range(cut, 4)]
    assert page.locator('[data-kind="step"]').evaluate_all(STEP_ATTEMPTS) == expected
    expect(page.locator('[data-kind="step"] .step-attempt').last).to_have_text("attempt 2")
    assert_not_reloaded(page)
    page.reload()  # the same timeline from the stored events
    expect(page.locator('[data-kind="resumed"]')).to_have_count(1)
    assert page.locator('[data-kind="step"]').evaluate_all(STEP_ATTEMPTS) == expected


def test_resume_a_failed_durable_execution_from_its_failed_step(user_page: Page, account: Account) -> None:
    page = user_page
    failed = start_durable(account.user, steps=4, step_seconds=0, fail_at_step=3)
    page.goto(f"/executions/{failed.id}")
    expect(badge(page)).to_have_text("Failed")
    page.get_by_role("button", name="Resume from step 3").click()
    expect(page).to_have_url(DETAIL_URL)
    assert failed.id not in page.url
    expect(badge(page)).to_have_text("Completed")
    assert page.locator('[data-kind="step"]').evaluate_all(STEP_ATTEMPTS) == [
        "1:reused:1", "2:reused:1", "3:done:1", "4:done:1",
    ]
    reused = page.locator('[data-kind="step"][data-state="reused"]').first
    expect(reused.get_by_role("link", name=failed.id)).to_have_attribute("href", f"/executions/{failed.id}")
