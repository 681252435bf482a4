"""The drop-in progress widget live in a plain template, and the stream client's transports.

The page is ``/widget-demo/`` of the test-only app ``tests/widget_site``: a template of
"another app" with the three lines of docs/guides/widget.md and nothing of the project's pages.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from executions.models import Execution
from executions.selectors import event_frames_after
from executions.services import execution_create
from tests.browser.helpers import Account

try:
    from playwright.sync_api import Page, expect
except ImportError:  # conftest skips these tests (or fails them under CI=true)
    Page = Any  # type: ignore[misc,assignment]  # the tests are skipped then

# A WebSocket that never connects, as behind a proxy that refuses the upgrade: each
# attempt fails (error, then close 1006) without a frame.
REFUSED_WEBSOCKET = """
window.__webSocketAttempts = 0;
window.WebSocket = class {
  constructor(url) {
    this.url = String(url);
    this.readyState = 0;
    window.__webSocketAttempts += 1;
    setTimeout(() => {
      this.readyState = 3;
      this.onerror?.(new Event("error"));
      this.onclose?.({ code: 1006, reason: "", wasClean: false });
    }, 20);
  }
  send() {}
  close() { this.readyState = 3; }
};
"""


def start(owner: Any, **inputs: Any) -> Execution:
    return execution_create(owner=owner, type="pipeline", target_id="demo_steps", inputs=inputs, config={})


def wait_for(execution: Execution, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while execution.status != status:
        assert time.monotonic() < deadline, f"{execution.id} stayed {execution.status}"
        time.sleep(0.1)
        execution.refresh_from_db()


def widget(page: Page, execution: Execution) -> Any:
    return page.locator(f'[data-execution-progress][data-execution-id="{execution.id}"]')


def demo_url(*executions: Execution) -> str:
    return "/widget-demo/?ids=" + ",".join(execution.id for execution in executions)


def test_the_widget_is_live_in_a_plain_template(user_page: Page, account: Account) -> None:
    page = user_page
    completed = start(account.user, steps=2, step_seconds=0)
    failed = start(account.user, steps=3, step_seconds=0, fail_at_step=2)
    wait_for(completed, "completed")
    wait_for(failed, "failed")
    running = start(account.user, steps=6, step_seconds=0.8)
    sockets: list[str] = []  # the streams of one execution (the list page left behind had its own socket)
    page.on("websocket", lambda socket: sockets.append(socket.url) if "/progress/ws" in socket.url else None)
    page.goto(demo_url(running, completed, failed))
    page.evaluate("window.__noReload = true")

    live = widget(page, running)
    bar = live.get_by_role("progressbar")
    expect(live).to_have_attribute("data-connection", "live")
    expect(live).to_have_attribute("data-transport", "websocket")
    expect(live.locator('[data-role="status"]')).to_have_text("Running")
    expect(live.locator('[data-role="step"]')).to_have_text(re.compile(r"^Step [2-6] of 6 · step_[2-6]$"))
    expect(live.locator('[data-role="eta"]')).to_have_text(re.compile(r"^Remaining: (about \d.*|less than a second)$"))
    expect(bar).to_have_attribute("aria-valuetext", re.compile(r"^\d+%, Step \d of 6 · step_\d$"))
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(live.locator('[data-role="status"]')).to_have_text("Completed")
    expect(live.locator('[data-role="percent"]')).to_have_text("100%")
    expect(live.locator('[data-role="step"]')).to_have_text("6 of 6 steps")
    expect(live.locator('[data-role="eta"]')).to_have_text("Remaining: done")
    expect(live).to_have_attribute("data-connection", "ended")
    expect(live.locator('[data-role="announce"]')).to_have_text("Completed")

    # Ended before the page loaded: worded at once, no stream opened for them.
    expect(widget(page, completed).locator('[data-role="status"]')).to_have_text("Completed")
    expect(widget(page, completed).locator('[data-role="step"]')).to_have_text("2 of 2 steps")
    expect(widget(page, failed).locator('[data-role="status"]')).to_have_text("Failed")
    expect(widget(page, failed).locator('[data-role="step"]')).to_have_text("Step 2 of 3 · step_2")
    expect(widget(page, failed).locator('[data-role="eta"]')).to_be_hidden()
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"
    assert len(sockets) == 1, f"one stream, for the running execution only: {sockets}"
    assert re.search(rf"/api/v1/executions/{running.id}/progress/ws\?after_seq=\d+$", sockets[0]), sockets


def test_the_widget_falls_back_to_server_sent_events(user_page: Page, account: Account) -> None:
    page = user_page
    page.add_init_script(REFUSED_WEBSOCKET)
    streams: list[str] = []
    polls: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/progress/stream" in request.url else None)
    page.on("request", lambda request: polls.append(request.url) if "/events?after_seq=" in request.url else None)
    execution = start(account.user, steps=5, step_seconds=0.8)
    page.goto(demo_url(execution))
    live = widget(page, execution)
    expect(live).to_have_attribute("data-transport", "sse")
    expect(live).to_have_attribute("data-connection", "live")
    expect(live.locator('[data-role="step"]')).to_have_text(re.compile(r"^Step \d of 5 · step_\d$"))
    expect(live.locator('[data-role="status"]')).to_have_text("Completed")
    expect(live.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(live).to_have_attribute("data-connection", "ended")
    assert page.evaluate("window.__webSocketAttempts") == 2, "two refused sockets, then the next transport"
    assert len(streams) == 1 and re.search(r"/progress/stream\?after_seq=\d+$", streams[0]), streams
    assert polls == [], "nothing was polled: the event stream carried every event"


def test_the_sse_transport_resumes_after_a_cut_without_loss_or_repeat(user_page: Page, account: Account) -> None:
    """The first event stream ends after two events (a proxy cutting it); the client
    reconnects with after_seq=2 and gets the rest, each event once, in order."""
    page = user_page
    execution = start(account.user, steps=6, step_seconds=0.5)
    deadline = time.monotonic() + 30
    while execution.seq < 2:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)
        execution.refresh_from_db()
    first_two = event_frames_after(execution_id=execution.id, after_seq=0, before_seq=3)
    cut_body = "".join(f"id: {seq}\nevent: {kind}\ndata: {frame}\n\n" for seq, kind, frame in first_two)
    asked: list[str] = []

    def cut_the_first(route: Any) -> None:
        asked.append(route.request.url)
        if len(asked) == 1:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=cut_body)
        else:
            route.continue_()

    page.route(re.compile(r"/progress/stream"), cut_the_first)
    received = page.evaluate(
        """async (executionId) => {
            const { StreamClient } = await import("/static/js/stream-client.js");
            return await new Promise((resolve) => {
                const frames = [];
                const client = new StreamClient(executionId, {
                    afterSeq: 0,
                    transports: ["sse"],
                    onFrame: (frame) => frames.push([frame.seq, frame.type]),
                    onConnection: (mode) => { if (mode === "ended") resolve(frames); },
                });
                client.start();
            });
        }""",
        execution.id,
    )
    execution.refresh_from_db()
    assert execution.status == "completed"
    assert [seq for seq, _ in received] == list(range(1, execution.seq + 1))
    assert received[0][1] == "started" and received[-1][1] == "completed"
    assert [url.split("?")[1] for url in asked] == ["after_seq=0", "after_seq=2"]


def test_the_sse_transport_reports_a_refusal_and_stops(user_page: Page) -> None:
    """A 404 (unknown or someone else's execution) ends the client, no retry, no polling."""
    result = user_page.evaluate(
        """async () => {
            const { StreamClient } = await import("/static/js/stream-client.js");
            return await new Promise((resolve) => {
                new StreamClient("exec_000000000000", {
                    transports: ["sse"],
                    onConnection: (mode, message) => { if (mode === "closed") resolve(message); },
                }).start();
            });
        }"""
    )
    assert result == "This execution is not available to you any more."


#: An error frame whose message is another refusal's text: the client must read ``code`` alone.
MISLEADING_ERROR = json.dumps(
    {
        "type": "error",
        "message": "Execution 'exec_000000000000' not found",
        "code": 4401,
        "timestamp": "2026-01-01T00:00:00Z",
    }
)
SESSION_ENDED = "Your session has ended. Reload the page to log in again."


def test_the_sse_transport_reads_the_error_events_code_not_its_message(user_page: Page) -> None:
    """Access lost mid-stream: the error event's ``code`` (4401) decides, whatever its text says."""
    page = user_page
    body = f"event: error\ndata: {MISLEADING_ERROR}\n\n"
    page.route(
        re.compile(r"/progress/stream"),
        lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body),
    )
    result = page.evaluate(
        """async () => {
            const { StreamClient } = await import("/static/js/stream-client.js");
            return await new Promise((resolve) => {
                new StreamClient("exec_000000000000", {
                    transports: ["sse"],
                    onConnection: (mode, message) => { if (mode === "closed") resolve(message); },
                }).start();
            });
        }"""
    )
    assert result == SESSION_ENDED


def test_the_websocket_transport_reads_the_error_frames_code_when_the_close_has_none(user_page: Page) -> None:
    """The error frame arrives, then the connection drops (1006, no close code of its own):
    the frame's ``code`` decides, whatever its text says."""
    result = user_page.evaluate(
        """async (errorFrame) => {
            window.WebSocket = class {
              constructor() {
                this.readyState = 0;
                setTimeout(() => {
                  this.readyState = 1;
                  this.onmessage?.({ data: errorFrame });
                  this.readyState = 3;
                  this.onclose?.({ code: 1006, reason: "", wasClean: false });
                }, 20);
              }
              send() {}
              close() { this.readyState = 3; }
            };
            const { StreamClient } = await import("/static/js/stream-client.js");
            return await new Promise((resolve) => {
                new StreamClient("exec_000000000000", {
                    transports: ["websocket"],
                    onConnection: (mode, message) => { if (mode === "closed") resolve(message); },
                }).start();
            });
        }""",
        MISLEADING_ERROR,
    )
    assert result == SESSION_ENDED


def test_the_event_stream_parser(user_page: Page) -> None:
    """CRLF, LF and CR line ends, comments, multi-line data, and chunks split anywhere."""
    results = user_page.evaluate(
        """async () => {
            const { eventStreamParser } = await import("/static/js/stream-client.js");
            const text = ": keep-alive\\r\\n\\r\\nid: 1\\r\\nevent: status\\r\\ndata: {\\"a\\":1}\\r\\n\\r\\n"
                + "id: 2\\ndata: x\\ndata:y\\n\\nid: 3\\rdata: z\\r\\r: done\\n";
            return [1, 2, 3, 7, 1000].map((size) => {
                const out = [];
                const feed = eventStreamParser((data) => out.push(data));
                for (let i = 0; i < text.length; i += size) feed(text.slice(i, i + size));
                return out;
            });
        }"""
    )
    assert results == [['{"a":1}', "x\ny", "z"]] * 5


def test_a_plain_event_source_follows_a_run_to_its_end_then_stops(user_page: Page, account: Account) -> None:
    """A template author's ``new EventSource(url)``: once the response ends after the terminal
    event, the browser reconnects with ``Last-Event-ID`` = its seq; the 204 answer closes it."""
    page = user_page
    execution = start(account.user, steps=3, step_seconds=0.3)
    page.goto(f"/event-source-demo/{execution.id}")
    items = page.locator("#events li")
    expect(items.last).to_have_text(re.compile(r"^\d+ completed$"), timeout=30_000)
    page.wait_for_function("window.__source.readyState === EventSource.CLOSED")
    texts = items.all_text_contents()
    (first, kind), *events = [text.split() for text in texts]
    assert kind == "status", texts
    # Each event once, in order, after the state it started from; then no second stream
    # (the reconnect was answered 204, which never "opens").
    assert [int(seq) for seq, _ in events] == list(range(int(first) + 1, 6)), texts
    assert events[-1][1] == "completed"
    assert page.evaluate("window.__opens") == 1
