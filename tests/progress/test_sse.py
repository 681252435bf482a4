"""Server-Sent Events (progress/sse.py) through the real ASGI handler, in process.

Django's ``AsyncClient`` calls the async view and hands back the streaming
response unread; the tests read its events as they come, with events recorded
by ``executions.events.event_record`` and delivered through the real Redis
channel layer, as for the WebSocket consumer (test_consumer.py). The live
server (daphne) is exercised in tests/e2e/test_sse.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from core.serving import drain
from executions.events import event_record
from executions.handover import execution_hand_over
from executions.selectors import event_frames_after
from progress import broadcast
from progress.protocol import execution_group, layer_reconnected_message
from progress.recheck import rechecker
from progress.sse import sse_event
from progress.streams import ExecutionStream, StreamFrame
from tests.frames import assert_frame_shape, final_progress, step_progress
from tests.helpers import create_execution

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5.0


def stream_path(execution_id: str, query: str = "") -> str:
    path = f"/api/v1/executions/{execution_id}/progress/stream"
    return f"{path}?{query}" if query else path


class Events:
    """The events of one streamed response, parsed as an ``EventSource`` would."""

    def __init__(self, response: Any) -> None:
        assert response.status_code == 200, response.content if not response.streaming else ""
        assert response["Content-Type"] == "text/event-stream"
        self.chunks: AsyncIterator[bytes] = response.streaming_content
        self.buffer = ""
        self.ended = False
        self.comments: list[str] = []
        #: The ``retry:`` field's value, once read.
        self.retry: str | None = None

    async def next(self, timeout: float = TIMEOUT) -> dict[str, str] | None:
        """The next event's fields (``id``, ``event``, ``data``), or None at the end of the response."""
        while "\n\n" not in self.buffer:
            try:
                chunk = await asyncio.wait_for(anext(self.chunks), timeout)
            except StopAsyncIteration:
                self.ended = True
                assert self.buffer == "", f"the response ended inside an event: {self.buffer!r}"
                return None
            self.buffer += chunk.decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            assert name not in fields, f"field {name} twice in {block!r}"
            fields[name] = value
        if "retry" in fields:
            assert list(fields) == ["retry"], f"retry goes in a block of its own: {block!r}"
            self.retry = fields.pop("retry")
        if not fields:  # a comment or the retry field alone
            return await self.next(timeout)
        return fields

    async def frame(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        event = await self.next(timeout)
        assert event is not None, "the response ended"
        frame = json.loads(event["data"])
        assert_frame_shape(frame)
        assert event["event"] == frame["type"]
        assert event.get("id") == (str(frame["seq"]) if "seq" in frame else None), event
        return frame

    async def frames(self, count: int) -> list[dict[str, Any]]:
        return [await self.frame() for _ in range(count)]

    async def expect_end(self) -> None:
        assert await self.next() is None

    async def close(self) -> None:
        """Go away as a client does: Django then cancels the response while it waits
        for the next event (the ASGI handler's disconnect handling)."""
        reading = asyncio.ensure_future(anext(self.chunks))
        await asyncio.sleep(0.05)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await reading


async def open_stream(execution_id: str, *, token: str | None = None, query: str = "", **headers: str) -> Events:
    if token is not None:
        headers["Authorization"] = f"Token {token}"
    response = await AsyncClient().get(stream_path(execution_id, query), headers=headers)
    return Events(response)


@database_sync_to_async
def record(execution_id: str, event_type: str, **kwargs: Any) -> int:
    recorded = event_record(execution_id=execution_id, event_type=event_type, **kwargs)
    assert recorded is not None, f"{event_type} was refused"
    return recorded.seq


async def record_run(execution_id: str, total: int) -> None:
    start = {"current_step": 0, "total_steps": total, "percentage": 0.0, "current_step_name": None}
    await record(execution_id, "started", progress=start)
    for k in range(1, total + 1):
        await record(execution_id, "progress", progress=step_progress(k, total))
    await record(execution_id, "completed", progress=final_progress(total), outputs={"steps_completed": total})


@pytest.fixture
def drop_publish(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Events whose seq is in the set are stored but never published (a lossy channel layer)."""
    dropped: set[int] = set()
    publish = broadcast.publish_event

    def lossy_publish(*, execution_id: str, seq: int, **rest: Any) -> None:
        if seq not in dropped:
            publish(execution_id=execution_id, seq=seq, **rest)

    monkeypatch.setattr(broadcast, "publish_event", lossy_publish)
    return dropped


@pytest.fixture
def fast_recheck(settings: Any) -> None:
    settings.PROGRESS_RECHECK_SECONDS = 0.2


# --- the format -------------------------------------------------------------------------------


async def test_an_event_is_id_event_and_the_frame_text_on_one_data_line() -> None:
    text = '{"type":"progress","seq":3,"note":"line\\nbreak \u2028"}'
    assert sse_event(StreamFrame(text, 3, "progress")) == f"id: 3\nevent: progress\ndata: {text}\n\n"
    assert sse_event(StreamFrame('{"type":"error"}', None, "error")) == 'event: error\ndata: {"type":"error"}\n\n'


# --- the stream -------------------------------------------------------------------------------


async def test_status_then_live_events_in_order_then_one_terminal_event_and_the_end(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=3)
    events = await open_stream(execution.id, token=token)
    status = await events.frame()
    assert (status["type"], status["status"], status["seq"], status["progress"]) == ("status", "pending", 0, None)

    await record_run(execution.id, 3)
    received = await events.frames(5)
    assert [(f["type"], f["seq"]) for f in received] == [
        ("started", 1), ("progress", 2), ("progress", 3), ("progress", 4), ("completed", 5)
    ]
    await events.expect_end()


async def test_a_hand_over_is_streamed_as_its_resumed_event(user, token):
    execution = await database_sync_to_async(create_execution)(
        user, target_id="demo_durable", inputs={"steps": 2, "step_seconds": 0}
    )
    events = await open_stream(execution.id, token=token)
    await events.frame()
    start = {"current_step": 0, "total_steps": 2, "percentage": 0.0, "current_step_name": None}
    await record(execution.id, "started", progress=start, worker="w1@host")
    assert await database_sync_to_async(execution_hand_over)(execution_id=execution.id, attempt=1, worker="w1@host")
    await record(execution.id, "resumed", progress=start, worker="w2@host", attempt=2)
    await record(execution.id, "completed", progress=final_progress(2), outputs={}, attempt=2)
    received = await events.frames(3)
    assert [(f["type"], f["seq"]) for f in received] == [("started", 1), ("resumed", 2), ("completed", 3)]
    assert (received[1]["attempt"], received[1]["status"]) == (2, "running")
    await events.expect_end()


async def test_each_event_carries_the_stored_frame_text_byte_for_byte(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=1)
    events = await open_stream(execution.id, token=token)
    await events.next()
    await record_run(execution.id, 1)
    live = [await events.next() for _ in range(3)]
    stored = await database_sync_to_async(event_frames_after)(execution_id=execution.id, after_seq=0)
    assert [event["data"] for event in live] == [frame for _, _, frame in stored]  # type: ignore[index]  # not None: 3 events


async def test_an_ended_execution_gets_status_then_its_terminal_event_then_the_end(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_run(execution.id, 2)
    events = await open_stream(execution.id, token=token)
    received = await events.frames(2)
    assert [(f["type"], f["seq"]) for f in received] == [("status", 4), ("completed", 4)]
    await events.expect_end()


async def test_a_dropped_message_is_filled_from_the_database(new_execution, token, drop_publish):
    execution = await database_sync_to_async(new_execution)(steps=4)
    events = await open_stream(execution.id, token=token)
    await events.frame()
    drop_publish.update({2, 4})
    await record_run(execution.id, 4)
    received = await events.frames(6)
    assert [f["seq"] for f in received] == [1, 2, 3, 4, 5, 6]
    await events.expect_end()


async def test_a_dropped_terminal_event_arrives_through_the_recheck(new_execution, token, drop_publish, fast_recheck):
    execution = await database_sync_to_async(new_execution)(steps=1)
    events = await open_stream(execution.id, token=token)
    await events.frame()
    drop_publish.add(3)  # nothing follows it to reveal the gap
    await record_run(execution.id, 1)
    received = await events.frames(3)
    assert [(f["type"], f["seq"]) for f in received] == [("started", 1), ("progress", 2), ("completed", 3)]
    await events.expect_end()


async def test_the_layers_reconnect_message_after_redis_was_away_catches_up(new_execution, token, drop_publish):
    execution = await database_sync_to_async(new_execution)(steps=1)
    events = await open_stream(execution.id, token=token)
    await events.frame()
    drop_publish.update({1, 2})
    start = {"current_step": 0, "total_steps": 1, "percentage": 0.0, "current_step_name": None}
    await record(execution.id, "started", progress=start)
    await record(execution.id, "progress", progress=step_progress(1, 1))
    # What the hub tells every member once its subscription is back (progress/hub.py).
    await get_channel_layer().group_send(execution_group(execution.id), layer_reconnected_message())
    received = await events.frames(2)
    assert [f["seq"] for f in received] == [1, 2]
    await events.close()


async def test_resume_with_after_seq_or_last_event_id(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=3)
    await record_run(execution.id, 3)

    events = await open_stream(execution.id, token=token, query="after_seq=2")
    assert [f["seq"] for f in await events.frames(3)] == [3, 4, 5]
    await events.expect_end()

    events = await open_stream(execution.id, token=token, **{"Last-Event-ID": "3"})
    assert [f["seq"] for f in await events.frames(2)] == [4, 5]
    await events.expect_end()

    # The header wins: a browser reconnects to the same URL with the newer id.
    events = await open_stream(execution.id, token=token, query="after_seq=1", **{"Last-Event-ID": "4"})
    assert [f["seq"] for f in await events.frames(1)] == [5]
    await events.expect_end()


async def test_a_resume_at_or_past_the_terminal_event_is_answered_204(new_execution, token):
    """The standard's one way to stop a browser's EventSource, which reconnects with the
    terminal event's id whenever the response ends (docs/protocol/sse.md)."""
    execution = await database_sync_to_async(new_execution)(steps=1)
    client = AsyncClient()
    headers = {"Authorization": f"Token {token}"}
    # Not ended yet: a resume past the end gets a status event (guarantee 4), as before.
    events = await open_stream(execution.id, token=token, query="after_seq=7")
    assert [(f["type"], f["seq"]) for f in await events.frames(1)] == [("status", 0)]
    await events.close()

    await record_run(execution.id, 1)  # the terminal event is seq 3
    for query, last_event_id in [("after_seq=3", None), ("after_seq=9", None), ("", "3"), ("after_seq=0", "3")]:
        extra = {"Last-Event-ID": last_event_id} if last_event_id else {}
        response = await client.get(stream_path(execution.id, query), headers={**headers, **extra})
        assert (response.status_code, response.content) == (204, b""), (query, last_event_id)
    # Before the terminal event: the rest of the stream.
    events = await open_stream(execution.id, token=token, **{"Last-Event-ID": "2"})
    assert [(f["type"], f["seq"]) for f in await events.frames(1)] == [("completed", 3)]
    await events.expect_end()


async def test_every_stream_opens_with_the_retry_field(new_execution, token, settings):
    settings.PROGRESS_SSE_RETRY_SECONDS = 2.5
    execution = await database_sync_to_async(new_execution)()
    events = await open_stream(execution.id, token=token)
    assert await asyncio.wait_for(anext(events.chunks), TIMEOUT) == b"retry: 2500\n\n"
    await events.close()


async def test_keep_alive_comments_go_out_on_schedule(new_execution, token, settings):
    settings.PROGRESS_SSE_KEEPALIVE_SECONDS = 0.2
    execution = await database_sync_to_async(new_execution)()
    events = await open_stream(execution.id, token=token)
    await events.frame()
    assert events.retry == "1000"
    loop = asyncio.get_running_loop()
    started = loop.time()
    while len(events.comments) < 3:
        event = await asyncio.wait_for(anext(events.chunks), TIMEOUT)
        assert event == b": keep-alive\n\n"
        events.comments.append(event.decode())
    assert 0.5 < loop.time() - started < 2.0
    await events.close()


async def test_a_drain_ends_the_stream_after_its_last_whole_event_and_a_resume_misses_nothing(
    new_execution, token, draining_process
):
    execution = await database_sync_to_async(new_execution)(steps=2)
    events = await open_stream(execution.id, token=token)
    await events.frame()
    start = {"current_step": 0, "total_steps": 2, "percentage": 0.0, "current_step_name": None}
    await record(execution.id, "started", progress=start)
    assert (await events.frame())["seq"] == 1
    ends = draining_process()
    assert len(ends) == 1  # this stream's, which the server calls at its turn in the spread
    ends[0]()
    await events.expect_end()

    # The client comes back with the last id it read (to a process that does not drain).
    drain.reset()
    await record(execution.id, "progress", progress=step_progress(1, 2))
    events = await open_stream(execution.id, token=token, **{"Last-Event-ID": "1"})
    assert [f["seq"] for f in await events.frames(1)] == [2]
    await events.close()


async def test_a_stream_opened_while_the_process_drains_sends_its_opening_then_ends(
    new_execution, token, draining_process
):
    execution = await database_sync_to_async(new_execution)()
    draining_process()
    events = await open_stream(execution.id, token=token)
    assert (await events.frame())["type"] == "status"
    await events.expect_end()
    assert not drain.begin()  # it left nothing registered


async def test_the_session_authenticates(new_execution, user):
    execution = await database_sync_to_async(new_execution)()
    client = AsyncClient()
    await client.aforce_login(user)
    events = Events(await client.get(stream_path(execution.id)))
    assert (await events.frame())["type"] == "status"
    await events.close()


async def test_refusals_are_the_rest_apis_json_answers(new_execution, other_user, token):
    execution = await database_sync_to_async(new_execution)()
    client = AsyncClient()
    cases = [
        ({}, "", 401, {"detail": "Authentication credentials were not provided."}),
        ({"Authorization": "Token nope"}, "", 401, {"detail": "Invalid token."}),
        ({"Authorization": f"Token {token}"}, "after_seq=-1", 400, None),
        ({"Authorization": f"Token {token}"}, "after_seq=1&after_seq=2", 400, None),
        ({"Authorization": f"Token {token}", "Last-Event-ID": "x"}, "", 400, None),
    ]
    for headers, query, status, body in cases:
        response = await client.get(stream_path(execution.id, query), headers=headers)
        assert response.status_code == status, (headers, query, response.content)
        assert response["Content-Type"] == "application/json"
        if body is not None:
            assert response.json() == body
        else:
            assert response.json()["detail"].startswith("Invalid ") and response.json()["errors"]
        if status == 401:
            assert response["WWW-Authenticate"] == "Token"
    other_token = await database_sync_to_async(lambda: Token.objects.create(user=other_user).key)()
    for execution_id in (execution.id, "exec_000000000000", "not-an-id", "x" * 300):
        response = await client.get(stream_path(execution_id), headers={"Authorization": f"Token {other_token}"})
        assert (response.status_code, response.json()) == (404, {"detail": f"Execution '{execution_id}' not found"})


async def test_losing_access_ends_the_stream_with_an_error_event(new_execution, user, token, fast_recheck):
    execution = await database_sync_to_async(new_execution)()
    events = await open_stream(execution.id, token=token)
    await events.frame()
    await database_sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
    frame = await events.frame()
    assert (frame["type"], frame["message"], frame["code"]) == ("error", "Authentication required", 4401)
    await events.expect_end()


async def test_a_client_that_goes_away_leaves_no_membership_behind(new_execution, token):
    execution = await database_sync_to_async(new_execution)()
    layer = get_channel_layer()
    group = execution_group(execution.id)
    events = await open_stream(execution.id, token=token)
    await events.frame()
    state = layer._state()  # the hub's per-loop state (progress/hub.py)
    assert len(state.groups[group]) == 1
    await events.close()
    assert group not in state.groups


async def test_an_open_stream_is_checked_by_the_process_re_check_not_a_loop_of_its_own(new_execution, token):
    """One member of the running loop's re-check (progress/recheck.py) while open, gone once closed."""
    execution = await database_sync_to_async(new_execution)()
    events = await open_stream(execution.id, token=token)
    await events.frame()
    members = [m for m in rechecker().members if isinstance(m, ExecutionStream)]
    assert [m.execution_id for m in members] == [execution.id]
    await events.close()
    assert not [m for m in rechecker().members if isinstance(m, ExecutionStream)]
