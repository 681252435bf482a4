"""Server-Sent Events against the real daphne (docs/protocol/sse.md).

Whole streams while a worker runs the execution, resume by ``after_seq`` and
by ``Last-Event-ID``, refusals, a daphne restart in the middle of a stream,
and the keep-alive comment (on a second daphne with a short interval).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from devtools import processes

from .sse import SseStream, open_sse, sse
from .streams import Api, in_step, open_ws, read_to_close

pytestmark = pytest.mark.e2e


def assert_one_stream(stream: SseStream, first_seq: int) -> None:
    """``status`` first, then every later event once, in order, one terminal event, the end."""
    assert stream.ended and not stream.broken
    frames = stream.frames
    assert frames[0]["type"] == "status"
    after = frames[1:]
    assert [f["seq"] for f in after] == list(range(first_seq, first_seq + len(after))), stream.seqs
    terminal = [f for f in frames[1:] if f["type"] in ("completed", "failed", "cancelled")]
    assert terminal == [frames[-1]]


def test_a_whole_stream_arrives_live_and_each_event_is_the_websocket_frame(live_stack: Any, api_user: Any) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 4, "step_seconds": 0.3})["execution_id"]

    stream = sse(live_stack.http_url, execution_id, token).read_to_end()

    status = stream.frames[0]
    assert_one_stream(stream, status["seq"] + 1)
    assert stream.frames[-1]["type"] == "completed"
    assert stream.frames[-1]["seq"] == 6  # started, 4 steps, completed
    # Live, not buffered until the end: the steps arrived as they happened.
    steps = [e for e in stream.events if e.event == "progress"]
    assert steps[-1].arrived - steps[0].arrived > 0.5, [e.arrived for e in stream.events]
    # Byte for byte the WebSocket's frames (its replay of the whole history).
    with open_ws(live_stack.ws_url, execution_id, token, query="after_seq=0") as ws:
        replay = read_to_close(ws)
    by_seq = dict(zip(replay.seqs, replay.texts, strict=True))
    for event in stream.events[1:]:
        assert event.data == by_seq[int(event.id or 0)]


@pytest.mark.parametrize("how", ["Last-Event-ID", "after_seq"])
def test_a_stream_resumes_where_it_stopped(live_stack: Any, api_user: Any, how: str) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 6, "step_seconds": 0.2})["execution_id"]

    before = sse(live_stack.http_url, execution_id, token)
    before.read_until(in_step(2))
    before.close()
    last_id = before.events[-1].id
    assert last_id is not None

    resume = {"headers": {"Last-Event-ID": last_id}} if how == "Last-Event-ID" else {"params": {"after_seq": last_id}}
    after = sse(live_stack.http_url, execution_id, token, **resume).read_to_end()
    frames = after.frames
    if frames[0]["type"] == "status":  # nothing had been recorded after last_id yet
        assert frames[0]["seq"] == int(last_id)
        frames = frames[1:]
    seqs = before.seqs[1:] + [f["seq"] for f in frames]
    assert seqs == list(range(before.seqs[1], 9)), seqs
    assert frames[-1]["type"] == "completed" and after.ended


def test_resuming_an_ended_execution(live_stack: Any, api_user: Any) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 2, "step_seconds": 0})["execution_id"]
    api.wait_until_ended(execution_id)

    replay = sse(live_stack.http_url, execution_id, token, params={"after_seq": 1}).read_to_end()
    assert [(f["type"], f["seq"]) for f in replay.frames] == [("progress", 2), ("progress", 3), ("completed", 4)]
    # At or past the terminal event: 204, which stops a browser's EventSource for good.
    for resume in ({"headers": {"Last-Event-ID": "4"}}, {"params": {"after_seq": 5}}):
        past = open_sse(live_stack.http_url, execution_id, token, **resume)
        assert (past.status_code, past.content) == (204, b""), resume


def test_refusals_are_plain_http_with_the_rest_apis_detail(
    live_stack: Any, api_user: Any, django_user_model: Any
) -> None:
    token = api_user[1]
    execution_id = Api(live_stack.http_url, token).submit("echo", type="agent")["execution_id"]
    stranger = django_user_model.objects.create_user(username=f"e2e-{uuid.uuid4().hex[:12]}")
    stranger_token = Token.objects.create(user=stranger).key

    def refusal(token: str | None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = open_sse(live_stack.http_url, kwargs.pop("execution_id", execution_id), token, **kwargs)
        assert response.headers["Content-Type"] == "application/json"
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == "Token"
        return response.status_code, response.json()

    assert refusal(None) == (401, {"detail": "Authentication credentials were not provided."})
    assert refusal("not-a-token") == (401, {"detail": "Invalid token."})
    status, body = refusal(token, params={"after_seq": "-1"})
    assert status == 400 and body["detail"] == "Invalid after_seq" and "after_seq" in body["errors"]
    status, body = refusal(token, headers={"Last-Event-ID": "1e3"})
    assert status == 400 and body["detail"] == "Invalid Last-Event-ID"
    assert refusal(stranger_token) == (404, {"detail": f"Execution '{execution_id}' not found"})
    missing = "exec_000000000000"
    assert refusal(token, execution_id=missing) == (404, {"detail": f"Execution '{missing}' not found"})


def test_a_client_resumes_with_last_event_id_after_a_daphne_restart(live_stack: Any, api_user: Any) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    steps = 20
    execution_id = api.submit("demo_steps", inputs={"steps": steps, "step_seconds": 0.25})["execution_id"]

    before = sse(live_stack.http_url, execution_id, token)
    before.read_until(in_step(3))
    live_stack.restart_daphne()  # SIGTERM, as in a deploy: the server drains
    while before.next() is not None:
        pass
    assert before.ended and not before.broken, "a draining server ends the response after a whole event"
    assert before.retry == "1000"
    last_id = before.events[-1].id

    after = sse(live_stack.http_url, execution_id, token, headers={"Last-Event-ID": str(last_id)}, read_timeout=15)
    after.read_to_end()
    frames = after.frames
    if frames[0]["type"] == "status":
        assert frames[0]["seq"] == int(str(last_id))
        frames = frames[1:]
    seqs = before.seqs[1:] + [f["seq"] for f in frames]
    assert seqs == list(range(before.seqs[1], steps + 3)), seqs
    assert frames[-1]["type"] == "completed"


@pytest.fixture
def quick_keepalive_url(live_stack: Any, tmp_path: Path) -> Any:
    """A second daphne on the same database and Redis, with a 0.3 s keep-alive."""
    env = {**live_stack.env, "PROGRESS_SSE_KEEPALIVE_SECONDS": "0.3"}
    child = processes.start_web(env, processes.free_port(), log_path=tmp_path / "web-keepalive.log")
    try:
        yield child.url
    finally:
        child.stop()


def test_a_quiet_stream_gets_keep_alive_comments(live_stack: Any, api_user: Any, quick_keepalive_url: str) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 1, "step_seconds": 30})["execution_id"]

    stream = sse(quick_keepalive_url, execution_id, token)
    stream.read_until(in_step(1))
    quiet_since = time.monotonic()
    while len(stream.comments) < 4:
        assert stream.buffer == "" or stream.buffer.startswith(":")
        chunk = next(stream.chunks).decode()
        stream.buffer += chunk
        if "\n\n" in stream.buffer:
            block, stream.buffer = stream.buffer.split("\n\n", 1)
            assert block == ": keep-alive", block
            stream.comments.append((time.monotonic(), block))
    assert stream.comments[-1][0] - quiet_since < 3.0, "four keep-alives at 0.3 s took too long"
    api.cancel(execution_id)
    stream.read_to_end()
    assert stream.frames[-1]["type"] == "cancelled"
    assert stream.ended


def daphne_threads(live_stack: Any) -> int:
    status = Path(f"/proc/{live_stack.daphne.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="counts threads through /proc")
def test_open_streams_hold_no_thread(live_stack: Any, api_user: Any) -> None:
    """Served in the event loop: 40 open streams cost daphne no thread each."""
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 1, "step_seconds": 60})["execution_id"]
    warm = [sse(live_stack.http_url, execution_id, token) for _ in range(4)]  # the pool's threads exist
    for stream in warm:
        stream.next()
    before = daphne_threads(live_stack)
    streams = [sse(live_stack.http_url, execution_id, token) for _ in range(40)]
    for stream in streams:
        assert stream.next() is not None  # each one open and streaming
    during = daphne_threads(live_stack)
    print(f"daphne threads: {before} with 4 streams open, {during} with 44")
    api.cancel(execution_id)
    for stream in [*warm, *streams]:
        assert stream.read_to_end().frames[-1]["type"] == "cancelled"
    assert during - before < 10, f"daphne went from {before} to {during} threads with 40 more streams open"
