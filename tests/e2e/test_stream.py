"""The WebSocket stream end to end: daphne, a prefork Celery worker, Redis, SQLite.

Every test submits over HTTP with a token and follows the execution through a
real WebSocket, checking the frames against the contract ("Events and the
WebSocket stream").
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus

from tests.frames import final_progress, step_progress
from tests.helpers import PASSWORD, make_user, user_token

from .streams import (
    Api,
    Stream,
    all_workers_busy,
    assert_consecutive,
    in_step,
    open_ws,
    read_frame,
    read_to_close,
    read_until,
)


@pytest.fixture
def api(live_stack: Any, api_user: tuple[Any, str]) -> Api:
    return Api(live_stack.http_url, api_user[1])


@pytest.fixture
def token(api_user: tuple[Any, str]) -> str:
    return api_user[1]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def demo(api: Api, steps: int, step_seconds: float, fail_at_step: int | None = None, **body: Any) -> str:
    inputs = {"steps": steps, "step_seconds": step_seconds, "fail_at_step": fail_at_step}
    return api.submit("demo_steps", inputs=inputs, **body)["execution_id"]


def assert_whole_stream(stream: Stream, api: Api, execution_id: str) -> list[dict[str, Any]]:
    """status first, then every later stored event exactly once and in order, then 1000.

    Returns the stored history, which the frames after ``status`` must equal
    text for text (whatever the worker had already done when the socket opened).
    """
    assert stream.close_code == 1000, stream.types
    status, rest = stream.frames[0], stream.frames[1:]
    assert status["type"] == "status"
    assert status["execution_id"] == execution_id
    assert_consecutive(rest, status["seq"] + 1)
    assert rest and rest[-1]["type"] in ("completed", "failed", "cancelled")
    assert sum(f["type"] in ("completed", "failed", "cancelled") for f in rest) == 1
    history = api.events(execution_id)
    assert_consecutive(history, 1)
    assert stream.texts[1:] == [_text_of(e, stream) for e in history[status["seq"]:]]
    stamps = [parse_ts(f["timestamp"]) for f in rest]
    assert stamps == sorted(stamps)
    return history


def _text_of(event: dict[str, Any], stream: Stream) -> str:
    """The text the socket received for the event with this seq (frames are stored text)."""
    for frame, text in zip(stream.frames, stream.texts, strict=True):
        if frame["type"] != "status" and frame["seq"] == event["seq"]:
            assert frame == event, (frame, event)
            return text
    raise AssertionError(f"seq {event['seq']} never reached the socket")


# --- the three ways a run ends ----------------------------------------------------------------


def test_a_completed_run_streams_status_started_one_progress_per_step_completed_then_1000(live_stack, api, token):
    steps = 5
    stream = Stream()
    with all_workers_busy(api, live_stack.worker.read_log()):
        # Still pending while the socket opens, so the stream shows the whole run.
        execution_id = demo(api, steps=steps, step_seconds=0.1)
        ws = open_ws(live_stack.ws_url, execution_id, token)
        read_frame(ws, stream)
    with ws:
        read_to_close(ws, stream)

    print("\nstream:", " ".join(f"{f['type']}#{f['seq']}" for f in stream.frames), "close", stream.close_code)
    history = assert_whole_stream(stream, api, execution_id)
    assert [e["type"] for e in history] == ["started"] + ["progress"] * steps + ["completed"]
    assert [e["progress"] for e in history[1:-1]] == [step_progress(k, steps) for k in range(1, steps + 1)]
    completed = history[-1]
    assert completed["status"] == "completed"
    assert completed["progress"] == final_progress(steps)
    assert completed["outputs"] == {"steps_completed": steps}
    assert completed["error"] is None
    assert completed["seq"] == steps + 2
    status = stream.frames[0]
    assert (status["status"], status["progress"], status["seq"]) == ("pending", None, 0)
    assert stream.types == ["status", "started"] + ["progress"] * steps + ["completed"]

    execution = api.get(execution_id)
    assert (execution["status"], execution["seq"]) == ("completed", steps + 2)
    assert execution["progress"] == final_progress(steps)


def test_a_failing_run_streams_the_failing_steps_progress_then_failed_with_a_value_error(live_stack, api, token):
    execution_id = demo(api, steps=5, step_seconds=0.05, fail_at_step=3)
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        stream = read_to_close(ws)

    history = assert_whole_stream(stream, api, execution_id)
    assert [e["type"] for e in history] == ["started", "progress", "progress", "progress", "failed"]
    failed = history[-1]
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "ValueError", "message": "Simulated failure at step 3", "details": None}
    assert failed["outputs"] is None
    assert failed["progress"] == step_progress(3, 5)
    assert api.get(execution_id)["error"]["type"] == "ValueError"


def test_cancel_reaches_the_socket_within_1s_and_frees_the_worker_within_2s(live_stack, api, token):
    # Every worker process but one is busy, so the next execution can only start
    # once the cancelled one has really given its process back.
    with all_workers_busy(api, live_stack.worker.read_log(), spare=1):
        execution_id = demo(api, steps=3, step_seconds=30)
        with open_ws(live_stack.ws_url, execution_id, token) as ws:
            stream = Stream()
            read_until(ws, stream, in_step(1))  # the status frame may already show it

            sent = time.monotonic()
            response = api.cancel(execution_id)
            assert response.status_code == 200, response.text
            assert response.json()["data"]["status"] == "cancelled"
            cancelled = read_frame(ws, stream, timeout=1.0)
            assert cancelled is not None and cancelled["type"] == "cancelled"
            cancel_latency = stream.arrived[-1] - sent
            print(f"\ncancel: the cancelled frame arrived {cancel_latency * 1000:.0f} ms after the request was sent")
            assert cancel_latency < 1.0
            assert read_frame(ws, stream, timeout=1.0) is None
            assert stream.close_code == 1000

        assert cancelled["progress"] == step_progress(1, 3)
        assert cancelled["outputs"] is None and cancelled["error"] is None
        assert_whole_stream(stream, api, execution_id)

        # The 30 s step was interrupted: a new execution starts on the freed process.
        follower = api.wait_until_ended(demo(api, steps=1, step_seconds=0), timeout=5.0)
        assert follower["status"] == "completed"
        freed_after = parse_ts(follower["started_at"]) - parse_ts(api.get(execution_id)["cancelled_at"])
        print(f"cancel: the next execution started {freed_after.total_seconds() * 1000:.0f} ms after cancelled_at")
        assert freed_after.total_seconds() < 2.0, freed_after


def test_cancelling_a_pending_execution_sends_cancelled_with_seq_1_and_it_never_runs(live_stack, api, token):
    # Every worker process busy: the execution stays pending until cancelled.
    with all_workers_busy(api, live_stack.worker.read_log()):
        execution_id = demo(api, steps=2, step_seconds=0)
        with open_ws(live_stack.ws_url, execution_id, token) as ws:
            stream = Stream()
            status = read_frame(ws, stream)
            assert (status["status"], status["progress"], status["seq"]) == ("pending", None, 0)
            assert api.cancel(execution_id).status_code == 200
            read_to_close(ws, stream, timeout=1.0)
        assert stream.types == ["status", "cancelled"]
        cancelled = stream.frames[1]
        assert cancelled["seq"] == 1
        assert (cancelled["progress"], cancelled["outputs"], cancelled["error"]) == (None, None, None)
        assert stream.close_code == 1000
    # Its task is delivered once a process is free, and its claim fails: nothing more is recorded.
    follower = api.wait_until_ended(demo(api, steps=1, step_seconds=0))
    assert follower["status"] == "completed"
    assert [e["type"] for e in api.events(execution_id)] == ["cancelled"]
    assert api.get(execution_id)["started_at"] is None


def test_config_timeout_ends_a_long_step_with_a_timeout_error(live_stack, api, token):
    execution_id = demo(api, steps=2, step_seconds=30, config={"timeout": 1})
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        stream = read_to_close(ws, timeout=5.0)

    history = assert_whole_stream(stream, api, execution_id)
    assert [e["type"] for e in history] == ["started", "progress", "failed"]
    failed = history[-1]
    assert failed["error"]["type"] == "TimeoutError"
    assert failed["progress"] == step_progress(1, 2)
    execution = api.get(execution_id)
    ran_for = (parse_ts(execution["failed_at"]) - parse_ts(execution["started_at"])).total_seconds()
    print(f"\ntimeout: failed {ran_for:.3f} s after started_at (config.timeout = 1)")
    assert 1.0 <= ran_for < 2.0, ran_for


# --- joining late, reconnecting --------------------------------------------------------------


def test_a_client_joining_mid_run_gets_a_status_snapshot_then_the_rest(live_stack, api, token):
    steps = 12
    execution_id = demo(api, steps=steps, step_seconds=0.15)
    with open_ws(live_stack.ws_url, execution_id, token) as first:
        early = Stream()
        read_until(first, early, in_step(4))
        with open_ws(live_stack.ws_url, execution_id, token) as second:
            late = read_to_close(second)
        read_to_close(first, early)

    assert_whole_stream(early, api, execution_id)
    history = assert_whole_stream(late, api, execution_id)
    status = late.frames[0]
    assert status["status"] == "running"
    assert status["seq"] >= 5
    # The snapshot is the state after its seq: the progress of that very event.
    assert status["progress"] == history[status["seq"] - 1]["progress"]
    assert late.texts[1:] == [
        t for f, t in zip(early.frames, early.texts, strict=True) if f["type"] != "status" and f["seq"] > status["seq"]
    ]


def test_a_client_joining_after_the_end_gets_status_and_the_stored_terminal_frame(live_stack, api, token):
    execution_id = demo(api, steps=2, step_seconds=0)
    api.wait_until_ended(execution_id)
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        stream = read_to_close(ws)

    assert stream.close_code == 1000
    assert stream.types == ["status", "completed"]
    status, terminal = stream.frames
    assert (status["status"], status["seq"], status["progress"]) == ("completed", 4, final_progress(2))
    assert terminal["seq"] == 4
    assert stream.texts[1] == _text_of(api.events(execution_id)[-1], stream)


def test_replay_with_after_seq(live_stack, api, token):
    execution_id = demo(api, steps=3, step_seconds=0)
    api.wait_until_ended(execution_id)

    with open_ws(live_stack.ws_url, execution_id, token, query="after_seq=2") as ws:
        replay = read_to_close(ws)
    assert replay.close_code == 1000
    assert replay.types == ["progress", "progress", "completed"]  # no status frame
    assert_consecutive(replay.frames, 3)
    assert replay.frames == api.events(execution_id, after_seq=2)

    for after_seq in (5, 500):  # nothing after it, the run has ended: status then 1000
        with open_ws(live_stack.ws_url, execution_id, token, query=f"after_seq={after_seq}") as ws:
            stream = read_to_close(ws)
        assert stream.close_code == 1000
        assert stream.types == ["status"]
        assert (stream.frames[0]["status"], stream.frames[0]["seq"]) == ("completed", 5)


def test_a_client_reconnecting_with_after_seq_mid_run_loses_nothing(live_stack, api, token):
    steps = 10
    execution_id = demo(api, steps=steps, step_seconds=0.15)
    first = Stream()
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        last = read_until(ws, first, in_step(3))
    # The connection dropped here. Events go on being recorded meanwhile (two at
    # least, so there is something to replay); the client resumes from the last
    # seq it saw.
    api.wait_for(execution_id, lambda e: e["seq"] >= last["seq"] + 2)
    with open_ws(live_stack.ws_url, execution_id, token, query=f"after_seq={last['seq']}") as ws:
        resumed = read_to_close(ws)

    assert resumed.close_code == 1000
    assert resumed.frames[0]["type"] != "status"
    assert_consecutive(resumed.frames, last["seq"] + 1)
    assert resumed.frames[-1]["type"] == "completed"
    seen = [f for f in first.frames if f["type"] != "status"] + resumed.frames
    history = api.events(execution_id)
    assert [f["seq"] for f in seen if f["seq"] > first.frames[0]["seq"]] == [
        e["seq"] for e in history if e["seq"] > first.frames[0]["seq"]
    ]


# --- refusals and the rest of the protocol over real sockets -------------------------------------


def test_refusals_send_an_error_frame_and_an_application_close_code(live_stack, api, token):
    execution_id = demo(api, steps=1, step_seconds=0)
    cases = [
        (execution_id, None, "", "Authentication required", 4401),
        (execution_id, "not-a-token", "", "Authentication required", 4401),
        (execution_id, token, "after_seq=abc", "Invalid after_seq", 4400),
        (execution_id, token, "after_seq=-1", "Invalid after_seq", 4400),
        ("exec_000000000000", token, "", "Execution 'exec_000000000000' not found", 4404),
    ]
    for target, key, query, message, code in cases:
        with open_ws(live_stack.ws_url, target, key, query=query) as ws:
            stream = read_to_close(ws)
        assert [(f["type"], f["message"], f["code"]) for f in stream.frames] == [("error", message, code)], (query, key)
        assert stream.close_code == code
    api.wait_until_ended(execution_id)


def test_someone_elses_execution_is_not_found(live_stack, api):
    stranger_token = user_token(make_user("e2e-stranger"))
    execution_id = demo(api, steps=1, step_seconds=0)
    with open_ws(live_stack.ws_url, execution_id, stranger_token) as ws:
        stream = read_to_close(ws)
    assert [(f["type"], f["message"], f["code"]) for f in stream.frames] == [
        ("error", f"Execution '{execution_id}' not found", 4404)
    ]
    assert stream.close_code == 4404
    api.wait_until_ended(execution_id)


def test_a_foreign_origin_gets_403_before_the_handshake(live_stack, api, token):
    execution_id = demo(api, steps=1, step_seconds=0)
    with pytest.raises(InvalidStatus) as refused:
        open_ws(live_stack.ws_url, execution_id, token, headers={"Origin": "http://evil.example.com"})
    assert refused.value.response.status_code == 403

    for origin in (f"http://localhost:{live_stack.port}", f"http://127.0.0.1:{live_stack.port}"):
        with open_ws(live_stack.ws_url, execution_id, token, headers={"Origin": origin}) as ws:
            assert read_frame(ws, Stream())["type"] == "status"
    api.wait_until_ended(execution_id)


def test_a_browser_session_streams_with_its_cookie(live_stack, transactional_db):
    """Log in through the login page like a browser, then open the socket with the cookie."""
    make_user("e2e-browser")
    browser = requests.Session()
    login_url = f"{live_stack.http_url}/accounts/login/"
    browser.get(login_url, timeout=10)
    response = browser.post(
        login_url,
        data={"username": "e2e-browser", "password": PASSWORD,
              "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": login_url},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    submitted = browser.post(
        f"{live_stack.http_url}/api/v1/executions",
        json={"type": "agent", "target_id": "echo", "inputs": {"hello": "world"}},
        headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": live_stack.http_url + "/"},
        timeout=10,
    )
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["execution_id"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    origin = f"http://127.0.0.1:{live_stack.port}"
    with open_ws(live_stack.ws_url, execution_id, headers={"Cookie": cookie, "Origin": origin}) as ws:
        stream = read_to_close(ws)
    assert stream.close_code == 1000
    assert stream.frames[0]["type"] == "status"
    assert stream.frames[-1]["type"] == "completed"
    assert stream.frames[-1]["outputs"] == {"output": {"hello": "world"}}


def test_client_frames_get_an_error_and_the_stream_goes_on(live_stack, api, token):
    execution_id = demo(api, steps=3, step_seconds=0.2)
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        stream = Stream()
        read_until(ws, stream, lambda f: f["type"] == "status")
        ws.send('{"type": "subscribe"}')
        read_until(ws, stream, lambda f: f["type"] == "error")
        read_to_close(ws, stream)

    errors = [f for f in stream.frames if f["type"] == "error"]
    assert [e["message"] for e in errors] == ["Unsupported message"]
    events = Stream(
        frames=[f for f in stream.frames if f["type"] != "error"],
        texts=[t for f, t in zip(stream.frames, stream.texts, strict=True) if f["type"] != "error"],
        close_code=stream.close_code,
    )
    assert_whole_stream(events, api, execution_id)
