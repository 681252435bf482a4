"""``Client`` and ``AsyncClient`` against the live stack (daphne, a Celery worker, Redis).

Every API call, the typed errors, paging, and ``watch``: whole streams over
each transport, and the fallbacks when something between refuses the
WebSocket (then SSE too) or throttles the polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from devtools import processes
from progress_client import (
    AsyncClient,
    AuthenticationFailed,
    Client,
    ConnectionFailed,
    NotFound,
    ServiceUnavailable,
    Throttled,
    ValidationFailed,
)

from .proxy import HostileProxy, Refusal, is_events, is_sse, is_submit, is_websocket

pytestmark = pytest.mark.e2e

DEMO = {"steps": 3, "step_seconds": 0.2}
TERMINAL = {"completed", "failed", "cancelled"}


def assert_whole_stream(frames: list[dict[str, Any]], last_type: str = "completed") -> None:
    """``status`` first, then each later event once in order, the terminal one last."""
    assert frames[0]["type"] == "status", frames
    events = frames[1:]
    if frames[0]["status"] in TERMINAL:
        assert [f["seq"] for f in events] == [frames[0]["seq"]]
    else:
        first = frames[0]["seq"] + 1
        assert [f["seq"] for f in events] == list(range(first, first + len(events))), [f["seq"] for f in frames]
    assert [f["type"] in TERMINAL for f in frames[1:]].count(True) == 1
    assert frames[-1]["type"] == last_type


# --- the API calls ------------------------------------------------------------------------


def test_every_api_call(client: Client) -> None:
    targets = {(t["type"], t["target_id"]) for t in client.targets()}
    assert {("pipeline", "demo_steps"), ("agent", "echo")} <= targets

    submitted = client.start("demo_steps", DEMO)  # the type looked up in /targets
    execution_id = submitted["execution_id"]
    assert submitted["status"] == "pending" and submitted["ws_url"].endswith("/progress/ws")
    frames = list(client.watch(execution_id))
    assert_whole_stream(frames)

    execution = client.get(execution_id)
    assert (execution["status"], execution["inputs"]["steps"], execution["outputs"]) == (
        "completed", 3, {"steps_completed": 3}
    )
    assert client.progress(execution_id) == execution["progress"]
    events = client.events(execution_id)
    assert [e["type"] for e in events] == ["started", "progress", "progress", "progress", "completed"]
    assert client.events(execution_id, after_seq=3) == events[3:]

    agent = client.start("echo", {"n": 1}, type="agent", config={"timeout": 30})["execution_id"]
    assert client.get(agent)["config"] == {"timeout": 30}

    pending = client.start("demo_steps", {"steps": 1, "step_seconds": 30})["execution_id"]
    cancelled = client.cancel(pending)
    assert cancelled["data"]["status"] == "cancelled" and cancelled["message"] == "Execution cancelled successfully"
    assert list(client.watch(pending))[-1]["type"] == "cancelled"


def test_a_pending_execution_has_no_progress(client: Client, live_stack: Any) -> None:
    # Enough long runs to keep both worker processes busy, so the last stays pending.
    blockers = [client.start("demo_steps", {"steps": 1, "step_seconds": 30})["execution_id"] for _ in range(2)]
    pending = client.start("echo", {}, type="agent")["execution_id"]
    try:
        for blocker in blockers:
            while client.get(blocker)["status"] == "pending":
                time.sleep(0.05)
        assert client.get(pending)["status"] == "pending"
        assert client.progress(pending) is None
    finally:
        for execution_id in [pending, *blockers]:  # the pending one first: it would run next
            with contextlib.suppress(ValidationFailed):  # ended meanwhile
                client.cancel(execution_id)


def test_list_iterates_over_every_page(client: Client) -> None:
    ids = {client.start("echo", {"i": i}, type="agent")["execution_id"] for i in range(5)}
    listed = [e["execution_id"] for e in client.list(page_size=2, type="agent")]
    assert sorted(listed) == sorted(ids), "three pages of at most 2, each execution once"
    assert [e["execution_id"] for e in client.list(target_id="nothing-is-called-this")] == []


def test_errors_are_typed_and_carry_the_detail(client: Client, live_stack: Any) -> None:
    with pytest.raises(NotFound) as missing:
        client.get("exec_000000000000")
    assert missing.value.detail == "Execution 'exec_000000000000' not found" and missing.value.status == 404

    with pytest.raises(NotFound, match="Target 'nope' not found"):
        client.start("nope", {})
    with pytest.raises(NotFound) as unknown:
        client.start("nope", {}, type="pipeline")
    assert unknown.value.detail == "Pipeline 'nope' not found"

    with pytest.raises(ValidationFailed) as invalid:
        client.start("demo_steps", {"steps": 0})
    assert invalid.value.status == 400 and "steps" in invalid.value.errors["inputs"]

    ended = client.start("echo", {}, type="agent")["execution_id"]
    list(client.watch(ended))
    with pytest.raises(ValidationFailed) as refused:
        client.cancel(ended)
    assert refused.value.detail == "Cannot cancel execution with status 'completed'"

    with Client(live_stack.http_url, "not-a-token") as stranger, pytest.raises(AuthenticationFailed) as denied:
        stranger.get(ended)
    assert denied.value.detail == "Invalid token."
    with Client(live_stack.http_url, "not-a-token") as stranger, pytest.raises(AuthenticationFailed):
        list(stranger.watch(ended))

    with Client(f"http://127.0.0.1:{processes.free_port()}", "t", max_retries=1) as nowhere:
        with pytest.raises(ConnectionFailed):
            nowhere.get(ended)
        with pytest.raises(ConnectionFailed):
            list(nowhere.watch(ended))


@pytest.mark.parametrize(("status", "error"), [(429, Throttled), (503, ServiceUnavailable)])
def test_refusals_to_come_back_later_carry_retry_after(live_stack: Any, token: str, status: int, error: type) -> None:
    refusal = Refusal(is_submit, status, body=b'{"detail": "Later"}', content_type="application/json",
                      headers={"Retry-After": "7"})
    with (
        HostileProxy(live_stack.port, [refusal]) as proxy,
        Client(proxy.url, token) as client,
        pytest.raises(error) as later,
    ):
        client.start("echo", {}, type="agent")
    assert (later.value.detail, later.value.retry_after, later.value.status) == ("Later", 7.0, status)


def test_the_idempotency_key_is_sent(live_stack: Any, token: str) -> None:
    with HostileProxy(live_stack.port, []) as proxy, Client(proxy.url, token) as client:
        client.start("echo", {}, type="agent", idempotency_key="deploy-42")
        client.start("echo", {}, type="agent")
    keys = [seen.headers.get("idempotency-key") for seen in proxy.seen(is_submit)]
    assert keys == ["deploy-42", None]


# --- watch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "sse", "poll"])
def test_watch_gives_the_whole_stream_over_each_transport(client: Client, transport: str) -> None:
    execution_id = client.start("demo_steps", {"steps": 4, "step_seconds": 0.2})["execution_id"]
    frames = list(client.watch(execution_id, transports=[transport]))
    assert_whole_stream(frames)
    stored = client.events(execution_id)
    assert frames[1:] == [e for e in stored if e["seq"] > frames[0]["seq"]], "each event exactly as stored"


@pytest.mark.parametrize("transport", ["websocket", "sse", "poll"])
def test_watch_of_an_ended_execution_and_a_resume(client: Client, transport: str) -> None:
    execution_id = client.start("demo_steps", {"steps": 2, "step_seconds": 0, "fail_at_step": 2})["execution_id"]
    frames = list(client.watch(execution_id, transports=[transport]))
    assert [(f["type"], f.get("status")) for f in frames][-1] == ("failed", "failed")
    again = list(client.watch(execution_id, transports=[transport]))
    assert [(f["type"], f["seq"]) for f in again] == [("status", 4), ("failed", 4)]
    resumed = list(client.watch(execution_id, after_seq=2, transports=[transport]))
    assert [f["seq"] for f in resumed] == [3, 4]
    assert list(client.watch(execution_id, after_seq=4, transports=[transport])) == []


def test_the_async_client(live_stack: Any, token: str) -> None:
    async def run() -> tuple[list[dict[str, Any]], list[str]]:
        async with AsyncClient(live_stack.http_url, token) as client:
            execution_id = (await client.start("demo_steps", DEMO))["execution_id"]
            frames = [frame async for frame in client.watch(execution_id)]
            listed = [e["execution_id"] async for e in client.list(status="completed")]
            return frames, listed

    frames, listed = asyncio.run(run())
    assert_whole_stream(frames)
    assert frames[0]["execution_id"] in listed


@pytest.mark.parametrize("upgrade_answer", [403, 426])
def test_a_refused_websocket_falls_back_to_sse(live_stack: Any, token: str, upgrade_answer: int) -> None:
    with (
        HostileProxy(live_stack.port, [Refusal(is_websocket, upgrade_answer)]) as proxy,
        Client(proxy.url, token) as client,
    ):
        execution_id = client.start("demo_steps", DEMO)["execution_id"]
        frames = list(client.watch(execution_id))
    assert_whole_stream(frames)
    assert [s.answered for s in proxy.seen(is_websocket)] == [upgrade_answer], "refused once, not tried again"
    assert len(proxy.seen(is_sse)) == 1 and proxy.seen(is_sse)[0].answered is None


def test_repeated_handshake_failures_fall_back_to_sse(live_stack: Any, token: str) -> None:
    with HostileProxy(live_stack.port, [Refusal(is_websocket, 502)]) as proxy, Client(proxy.url, token) as client:
        execution_id = client.start("demo_steps", DEMO)["execution_id"]
        frames = list(client.watch(execution_id))
    assert_whole_stream(frames)
    assert [s.answered for s in proxy.seen(is_websocket)] == [502, 502, 502]
    assert proxy.seen(is_sse)


def test_without_websocket_and_sse_it_polls_and_honours_retry_after(live_stack: Any, token: str) -> None:
    refusals = [
        Refusal(is_websocket, 403),
        Refusal(is_sse, 404),  # an HTML 404 from the proxy, while the execution exists
        Refusal(is_events, 429, body=b'{"detail": "Slow down"}', content_type="application/json",
                headers={"Retry-After": "1"}, times=2),
    ]
    with HostileProxy(live_stack.port, refusals) as proxy, Client(proxy.url, token, poll_interval=0.2) as client:
        execution_id = client.start("demo_steps", DEMO)["execution_id"]
        frames = list(client.watch(execution_id))
    assert_whole_stream(frames)
    polls = proxy.seen(is_events)
    assert [p.answered for p in polls[:3]] == [429, 429, None]
    assert polls[1].at - polls[0].at >= 0.95 and polls[2].at - polls[1].at >= 0.95, "Retry-After: 1 waited out"


def test_an_unknown_execution_behind_a_proxy_that_refuses_sse_is_not_found(live_stack: Any, token: str) -> None:
    with (
        HostileProxy(live_stack.port, [Refusal(is_websocket, 403), Refusal(is_sse, 404)]) as proxy,
        Client(proxy.url, token) as client,
        pytest.raises(NotFound),
    ):
        list(client.watch("exec_000000000000"))
