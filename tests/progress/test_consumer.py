"""The WebSocket consumer against the real ASGI application.

Everything goes through ``config.asgi.application`` (origin validator, token
or session authentication, URL routing) and the real Redis channel layer;
events are recorded with ``executions.events.event_record`` (or by running a
target in-process), exactly as the worker records them. Waits are on frames
with timeouts, never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from config.asgi import application
from executions.events import event_record
from executions.models import Execution
from executions.runner import execution_run
from executions.selectors import event_frame_at
from executions.services import execution_cancel
from progress import broadcast
from progress.protocol import execution_group, layer_reconnected_message
from tests.frames import (
    TERMINAL_TYPES,
    assert_frame_shape,
    final_progress,
    step_progress,
)
from tests.helpers import create_execution, user_token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

#: Generous: a busy CI machine may take a while, and a passing test never waits it out.
TIMEOUT = 5.0
UNKNOWN_ID = "exec_000000000000"


# --- helpers ---------------------------------------------------------------------------


def ws_path(execution_id: str, query: str = "") -> str:
    path = f"/api/v1/executions/{execution_id}/progress/ws"
    return f"{path}?{query}" if query else path


def communicator(
    execution_id: str,
    *,
    token: str | None = None,
    query: str = "",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> WebsocketCommunicator:
    all_headers = list(headers)
    if token is not None:
        all_headers.append((b"authorization", f"Token {token}".encode()))
    return WebsocketCommunicator(application, ws_path(execution_id, query), headers=all_headers)


async def open_socket(execution_id: str, **kwargs: Any) -> WebsocketCommunicator:
    comm = communicator(execution_id, **kwargs)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected, "the handshake was refused"
    return comm


async def next_frame(comm: WebsocketCommunicator, timeout: float = TIMEOUT) -> dict[str, Any]:
    frame = await comm.receive_json_from(timeout=timeout)
    assert_frame_shape(frame)
    return frame


async def frames(comm: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    return [await next_frame(comm) for _ in range(count)]


async def expect_close(comm: WebsocketCommunicator, code: int, timeout: float = TIMEOUT) -> None:
    message = await comm.receive_output(timeout=timeout)
    assert message["type"] == "websocket.close", f"expected a close, got {message}"
    assert message.get("code") == code, message


async def expect_silence(comm: WebsocketCommunicator, timeout: float = 0.3) -> None:
    """Nothing more is sent (e.g. after the close: no second terminal frame)."""
    assert await comm.receive_nothing(timeout=timeout), "an unexpected message was sent"


async def expect_refusal(comm: WebsocketCommunicator, message: str, code: int) -> None:
    """Guarantee 3: the handshake is accepted, then one error frame, then the close code."""
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    frame = await next_frame(comm)
    assert frame["type"] == "error"
    assert frame["message"] == message
    assert frame["code"] == code, "the error frame carries the close code that follows"
    await expect_close(comm, code)
    await expect_silence(comm)
    await comm.disconnect()


@database_sync_to_async
def record(execution_id: str, event_type: str, **kwargs: Any) -> int:
    recorded = event_record(execution_id=execution_id, event_type=event_type, **kwargs)
    assert recorded is not None, f"{event_type} was refused"
    return recorded.seq


async def record_started(execution_id: str, total: int) -> int:
    return await record(
        execution_id,
        "started",
        progress={"current_step": 0, "total_steps": total, "percentage": 0.0, "current_step_name": None},
    )


async def record_steps(execution_id: str, steps: Iterable[int], total: int) -> None:
    for k in steps:
        await record(execution_id, "progress", progress=step_progress(k, total))


async def record_completed(execution_id: str, total: int) -> int:
    return await record(
        execution_id, "completed", progress=final_progress(total), outputs={"steps_completed": total}
    )


def assert_sequence(received: list[dict[str, Any]], first_seq: int) -> None:
    """Strictly consecutive ``seq`` from ``first_seq``, no gap, no repeat."""
    assert [f["seq"] for f in received] == list(range(first_seq, first_seq + len(received))), [
        (f["type"], f["seq"]) for f in received
    ]


@pytest.fixture
def drop_publish(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Simulate the channel layer losing messages: events whose seq is in the set
    are recorded (database) but never published (group_send)."""
    dropped: set[int] = set()
    publish = broadcast.publish_event

    def lossy_publish(*, execution_id: str, seq: int, event_type: str, frame_text: str, **rest: Any) -> None:
        if seq in dropped:
            return
        publish(execution_id=execution_id, seq=seq, event_type=event_type, frame_text=frame_text, **rest)

    monkeypatch.setattr(broadcast, "publish_event", lossy_publish)
    return dropped


@pytest.fixture
def fast_recheck(settings: Any) -> float:
    settings.PROGRESS_RECHECK_SECONDS = 0.2
    return 0.2


# --- the status frame and live events -------------------------------------------------------


async def test_pending_execution_gets_a_status_frame_with_null_progress_and_seq_0(new_execution, token):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, token=token)

    frame = await next_frame(comm)
    assert frame["type"] == "status"
    assert frame["execution_id"] == execution.id
    assert frame["status"] == "pending"
    assert frame["progress"] is None
    assert frame["seq"] == 0
    await expect_silence(comm)  # the socket stays open, waiting for events
    await comm.disconnect()


async def test_live_events_are_forwarded_in_order_then_one_terminal_frame_and_close_1000(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=3)
    comm = await open_socket(execution.id, token=token)
    assert (await next_frame(comm))["type"] == "status"

    await record_started(execution.id, 3)
    await record_steps(execution.id, [1, 2, 3], 3)
    await record_completed(execution.id, 3)

    received = await frames(comm, 5)
    assert [f["type"] for f in received] == ["started", "progress", "progress", "progress", "completed"]
    assert_sequence(received, 1)
    assert [f["progress"] for f in received[1:4]] == [step_progress(k, 3) for k in (1, 2, 3)]
    assert received[-1]["progress"] == final_progress(3)
    assert received[-1]["outputs"] == {"steps_completed": 3}
    assert received[-1]["error"] is None
    await expect_close(comm, 1000)
    await expect_silence(comm)
    await comm.disconnect()


async def test_each_forwarded_frame_is_the_stored_event_text(new_execution, token):
    """The socket sends exactly what is stored (and what /events returns)."""
    execution = await database_sync_to_async(new_execution)(steps=1)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    await record_started(execution.id, 1)
    text = await comm.receive_from(timeout=TIMEOUT)
    assert text == await database_sync_to_async(event_frame_at)(execution_id=execution.id, seq=1)
    await comm.disconnect()


async def test_a_run_in_process_streams_started_progress_per_step_and_completed(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=4)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    assert await sync_to_async(execution_run, thread_sensitive=False)(execution_id=execution.id) == "completed"

    received = await frames(comm, 6)
    assert [f["type"] for f in received] == ["started"] + ["progress"] * 4 + ["completed"]
    assert_sequence(received, 1)
    assert [f["progress"]["current_step_name"] for f in received[1:5]] == ["step_1", "step_2", "step_3", "step_4"]
    assert received[-1]["outputs"] == {"steps_completed": 4}
    await expect_close(comm, 1000)
    await comm.disconnect()


async def test_a_failing_run_ends_with_one_failed_frame(user, token):
    execution = await database_sync_to_async(create_execution)(
        user, inputs={"steps": 3, "step_seconds": 0, "fail_at_step": 2}
    )
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    assert await sync_to_async(execution_run, thread_sensitive=False)(execution_id=execution.id) == "failed"

    received = await frames(comm, 4)
    assert [f["type"] for f in received] == ["started", "progress", "progress", "failed"]
    assert_sequence(received, 1)
    failed = received[-1]
    assert failed["error"] == {"type": "ValueError", "message": "Simulated failure at step 2", "details": None}
    assert failed["outputs"] is None
    assert failed["progress"]["current_step_name"] == "step_2"
    await expect_close(comm, 1000)
    await comm.disconnect()


async def test_cancel_reaches_the_socket_at_once_and_interrupts_the_running_step(user, token):
    execution = await database_sync_to_async(create_execution)(user, inputs={"steps": 2, "step_seconds": 30})
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)
    run = asyncio.ensure_future(sync_to_async(execution_run, thread_sensitive=False)(execution_id=execution.id))
    try:
        assert [f["type"] for f in await frames(comm, 2)] == ["started", "progress"]

        cancelled_at = time.monotonic()
        await database_sync_to_async(execution_cancel)(execution_id=execution.id)
        frame = await next_frame(comm, timeout=1.0)
        assert frame["type"] == "cancelled"
        assert frame["seq"] == 3
        assert frame["progress"] == step_progress(1, 2)
        await expect_close(comm, 1000, timeout=1.0)
        # The 30 s step is interrupted, not waited out: the run returns well within 2 s.
        assert await asyncio.wait_for(run, timeout=2.0) is None
        assert time.monotonic() - cancelled_at < 2.0
    finally:
        if not run.done():
            await database_sync_to_async(execution_cancel)(execution_id=execution.id)
            await asyncio.wait_for(run, timeout=5)
    await comm.disconnect()


async def test_a_pending_execution_cancelled_gets_cancelled_with_seq_1_and_null_progress(new_execution, token):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    await database_sync_to_async(execution_cancel)(execution_id=execution.id)
    frame = await next_frame(comm)
    assert (frame["type"], frame["seq"], frame["progress"]) == ("cancelled", 1, None)
    await expect_close(comm, 1000)
    await comm.disconnect()


# --- gaps and duplicates -----------------------------------------------------------------------------


async def test_a_dropped_group_message_is_filled_from_the_database_in_order(new_execution, token, drop_publish):
    execution = await database_sync_to_async(new_execution)(steps=3)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    await record_started(execution.id, 3)
    assert (await next_frame(comm))["seq"] == 1
    drop_publish.add(2)
    await record_steps(execution.id, [1], 3)  # seq 2: stored, never published
    await record_steps(execution.id, [2, 3], 3)  # seq 3 reveals the gap
    await record_completed(execution.id, 3)

    received = await frames(comm, 4)
    assert [(f["type"], f["seq"]) for f in received] == [
        ("progress", 2), ("progress", 3), ("progress", 4), ("completed", 5)
    ]
    assert received[0]["progress"] == step_progress(1, 3)
    await expect_close(comm, 1000)
    await expect_silence(comm)
    await comm.disconnect()


async def test_the_layers_reconnect_message_makes_the_socket_catch_up(new_execution, token, drop_publish):
    """What was published while Redis was away is lost: the hub's ``layer.reconnected``
    message makes the socket read it from the database."""
    execution = await database_sync_to_async(new_execution)(steps=1)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)
    drop_publish.update({1, 2})
    await record_started(execution.id, 1)
    await record_steps(execution.id, [1], 1)
    await expect_silence(comm)
    await get_channel_layer().group_send(execution_group(execution.id), layer_reconnected_message())
    assert [f["seq"] for f in await frames(comm, 2)] == [1, 2]
    await comm.disconnect()


async def test_many_dropped_messages_never_cause_a_gap_or_a_repeat(new_execution, token, drop_publish):
    total = 30
    execution = await database_sync_to_async(new_execution)(steps=total)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    drop_publish.update(seq for seq in range(2, total + 2) if seq % 3 == 0 or seq % 7 == 0)
    await record_started(execution.id, total)
    await record_steps(execution.id, range(1, total + 1), total)
    await record_completed(execution.id, total)

    received = await frames(comm, total + 2)
    assert_sequence(received, 1)
    assert received[-1]["type"] == "completed"
    await expect_close(comm, 1000)
    await expect_silence(comm)
    await comm.disconnect()


async def test_a_dropped_terminal_frame_arrives_through_the_recheck(new_execution, token, drop_publish, fast_recheck):
    execution = await database_sync_to_async(new_execution)(steps=1)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    await record_started(execution.id, 1)
    assert (await next_frame(comm))["seq"] == 1
    drop_publish.update({2, 3})
    await record_steps(execution.id, [1], 1)
    await record_completed(execution.id, 1)  # nothing follows it to reveal the gap

    received = await frames(comm, 2)
    assert [(f["type"], f["seq"]) for f in received] == [("progress", 2), ("completed", 3)]
    await expect_close(comm, 1000)
    await comm.disconnect()


async def test_a_stale_group_message_older_than_the_status_frame_is_dropped(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=3)
    await record_started(execution.id, 3)
    await record_steps(execution.id, [1, 2], 3)
    comm = await open_socket(execution.id, token=token)
    status = await next_frame(comm)
    assert (status["status"], status["seq"], status["progress"]) == ("running", 3, step_progress(2, 3))

    # A late delivery of seq 2 (already included in the status snapshot), then seq 4.
    stale = await database_sync_to_async(event_frame_at)(execution_id=execution.id, seq=2)
    broadcast.publish_event(execution_id=execution.id, seq=2, event_type="progress", frame_text=stale)
    await record_steps(execution.id, [3], 3)

    frame = await next_frame(comm)
    assert (frame["type"], frame["seq"]) == ("progress", 4)
    await expect_silence(comm)
    await comm.disconnect()


# --- already terminal, replays with after_seq -----------------------------------------------------------


async def test_an_ended_execution_gets_status_then_its_stored_terminal_frame_then_1000(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_started(execution.id, 2)
    await record_steps(execution.id, [1, 2], 2)
    await record_completed(execution.id, 2)

    comm = await open_socket(execution.id, token=token)
    status, terminal = await frames(comm, 2)
    assert (status["type"], status["status"], status["seq"]) == ("status", "completed", 4)
    assert status["progress"] == final_progress(2)
    assert (terminal["type"], terminal["seq"]) == ("completed", 4)
    assert terminal["outputs"] == {"steps_completed": 2}
    await expect_close(comm, 1000)
    await expect_silence(comm)
    await comm.disconnect()


async def test_an_execution_cancelled_while_pending_replays_status_and_cancelled(new_execution, token):
    execution = await database_sync_to_async(new_execution)()
    await database_sync_to_async(execution_cancel)(execution_id=execution.id)

    comm = await open_socket(execution.id, token=token)
    status, terminal = await frames(comm, 2)
    assert (status["status"], status["seq"], status["progress"]) == ("cancelled", 1, None)
    assert (terminal["type"], terminal["seq"], terminal["progress"]) == ("cancelled", 1, None)
    await expect_close(comm, 1000)
    await comm.disconnect()


async def test_after_seq_replays_the_stored_events_after_n_without_status_then_live_ones(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=3)
    await record_started(execution.id, 3)
    await record_steps(execution.id, [1, 2, 3], 3)

    comm = await open_socket(execution.id, token=token, query="after_seq=2")
    replayed = await frames(comm, 2)
    assert [(f["type"], f["seq"]) for f in replayed] == [("progress", 3), ("progress", 4)]

    await record_completed(execution.id, 3)
    terminal = await next_frame(comm)
    assert (terminal["type"], terminal["seq"]) == ("completed", 5)
    await expect_close(comm, 1000)
    await comm.disconnect()


async def test_after_seq_0_replays_the_whole_history(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=1)
    await record_started(execution.id, 1)
    await record_steps(execution.id, [1], 1)
    await record_completed(execution.id, 1)

    comm = await open_socket(execution.id, token=token, query="after_seq=0")
    received = await frames(comm, 3)
    assert [f["type"] for f in received] == ["started", "progress", "completed"]
    assert_sequence(received, 1)
    await expect_close(comm, 1000)
    await comm.disconnect()


async def test_after_seq_on_an_ended_execution_replays_up_to_the_terminal_frame(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_started(execution.id, 2)
    await record_steps(execution.id, [1, 2], 2)
    await record_completed(execution.id, 2)

    comm = await open_socket(execution.id, token=token, query="after_seq=3")
    terminal = await next_frame(comm)
    assert (terminal["type"], terminal["seq"]) == ("completed", 4)
    await expect_close(comm, 1000)
    await expect_silence(comm)
    await comm.disconnect()


@pytest.mark.parametrize("after_seq", [3, 50])
async def test_after_seq_at_or_past_the_end_of_a_running_execution_starts_with_status(new_execution, token, after_seq):
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_started(execution.id, 2)
    await record_steps(execution.id, [1, 2], 2)

    comm = await open_socket(execution.id, token=token, query=f"after_seq={after_seq}")
    status = await next_frame(comm)
    assert (status["type"], status["status"], status["seq"]) == ("status", "running", 3)

    await record_completed(execution.id, 2)
    terminal = await next_frame(comm)
    assert (terminal["type"], terminal["seq"]) == ("completed", 4)
    await expect_close(comm, 1000)
    await comm.disconnect()


@pytest.mark.parametrize("after_seq", [4, 99])
async def test_after_seq_with_nothing_after_it_on_an_ended_execution_is_status_then_1000(
    new_execution, token, after_seq
):
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_started(execution.id, 2)
    await record_steps(execution.id, [1, 2], 2)
    await record_completed(execution.id, 2)

    comm = await open_socket(execution.id, token=token, query=f"after_seq={after_seq}")
    status = await next_frame(comm)
    assert (status["type"], status["status"], status["seq"]) == ("status", "completed", 4)
    await expect_close(comm, 1000)  # no terminal frame: the client already has it
    await expect_silence(comm)
    await comm.disconnect()


async def test_after_seq_0_on_a_pending_execution_starts_with_status(new_execution, token):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, token=token, query="after_seq=0")
    status = await next_frame(comm)
    assert (status["type"], status["status"], status["seq"]) == ("status", "pending", 0)
    await comm.disconnect()


# --- refusals: error frame + application close code, checked in the contract's order ------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Token 0000000000000000000000000000000000000000", "Token", "Bearer abc", "Token a b", "token"],
    ids=["none", "unknown-token", "no-key", "other-scheme", "two-keys", "lowercase-no-key"],
)
async def test_missing_or_bad_credentials_get_4401(new_execution, authorization):
    execution = await database_sync_to_async(new_execution)()
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    await expect_refusal(communicator(execution.id, headers=headers), "Authentication required", 4401)


async def test_a_bad_token_header_wins_over_a_valid_session(new_execution, session_cookie):
    execution = await database_sync_to_async(new_execution)()
    headers = [(b"cookie", session_cookie.encode()), (b"authorization", b"Token nope")]
    await expect_refusal(communicator(execution.id, headers=headers), "Authentication required", 4401)


async def test_an_inactive_users_token_gets_4401(user, token, new_execution):
    execution = await database_sync_to_async(new_execution)()
    await database_sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
    await expect_refusal(communicator(execution.id, token=token), "Authentication required", 4401)


@pytest.mark.parametrize("after_seq", ["abc", "-1", "1.5", "", "+1", "1e3", "0x10", "99999999999999999999"])
async def test_an_invalid_after_seq_gets_4400(new_execution, token, after_seq):
    execution = await database_sync_to_async(new_execution)()
    comm = communicator(execution.id, token=token, query=f"after_seq={after_seq}")
    await expect_refusal(comm, "Invalid after_seq", 4400)


async def test_an_unknown_execution_gets_4404(token):
    await expect_refusal(communicator(UNKNOWN_ID, token=token), f"Execution '{UNKNOWN_ID}' not found", 4404)


async def test_someone_elses_execution_is_indistinguishable_from_an_unknown_one(new_execution, other_user, token):
    execution = await database_sync_to_async(new_execution)(owner=other_user)
    await expect_refusal(communicator(execution.id, token=token), f"Execution '{execution.id}' not found", 4404)


async def test_credentials_are_checked_before_after_seq_and_after_seq_before_the_execution(token):
    comm = communicator(UNKNOWN_ID, query="after_seq=abc")
    await expect_refusal(comm, "Authentication required", 4401)
    comm = communicator(UNKNOWN_ID, token=token, query="after_seq=abc")
    await expect_refusal(comm, "Invalid after_seq", 4400)


async def test_staff_may_watch_anyones_execution(new_execution, staff_user, user):
    execution = await database_sync_to_async(new_execution)(owner=user)
    staff_token = await database_sync_to_async(user_token)(staff_user)
    comm = await open_socket(execution.id, token=staff_token)
    assert (await next_frame(comm))["status"] == "pending"
    await comm.disconnect()


# --- authentication and origins -------------------------------------------------------------------------


async def test_the_session_cookie_authenticates(new_execution, session_cookie):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, headers=[(b"cookie", session_cookie.encode())])
    frame = await next_frame(comm)
    assert (frame["type"], frame["execution_id"]) == ("status", execution.id)
    await comm.disconnect()


async def test_the_authorization_token_header_authenticates(new_execution, token):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, token=token)
    assert (await next_frame(comm))["type"] == "status"
    await comm.disconnect()


@pytest.mark.parametrize("origin", ["http://evil.example.com", "http://localhost.evil.com:8000", "null"])
async def test_a_foreign_origin_is_refused_before_the_handshake(new_execution, token, origin):
    execution = await database_sync_to_async(new_execution)()
    comm = communicator(execution.id, token=token, headers=[(b"origin", origin.encode())])
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert not connected
    await comm.disconnect()


@pytest.mark.parametrize("origin", [None, "http://localhost:8000", "http://127.0.0.1:8000"])
async def test_a_missing_or_allowed_origin_is_accepted(new_execution, token, origin):
    execution = await database_sync_to_async(new_execution)()
    headers = [] if origin is None else [(b"origin", origin.encode())]
    comm = await open_socket(execution.id, token=token, headers=headers)
    assert (await next_frame(comm))["type"] == "status"
    await comm.disconnect()


# --- client frames and lost access ------------------------------------------------------------------------


async def test_client_frames_get_an_unsupported_message_error_and_the_socket_stays_open(new_execution, token):
    execution = await database_sync_to_async(new_execution)(steps=1)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    await comm.send_to(text_data=json.dumps({"type": "subscribe"}))
    await comm.send_to(text_data="not json")
    await comm.send_to(bytes_data=b"\x00\x01")
    for _ in range(3):
        frame = await next_frame(comm)
        assert (frame["type"], frame["message"], frame["code"]) == ("error", "Unsupported message", None)

    await record_started(execution.id, 1)
    assert (await next_frame(comm))["type"] == "started"  # still streaming
    await comm.disconnect()


async def test_nothing_is_sent_after_the_close_even_when_the_client_speaks(new_execution, token):
    """A client frame racing the close gets no error frame after the terminal one."""
    execution = await database_sync_to_async(new_execution)(steps=1)
    await record_started(execution.id, 1)
    await record_steps(execution.id, [1], 1)
    await record_completed(execution.id, 1)
    comm = await open_socket(execution.id, token=token)
    assert [f["type"] for f in await frames(comm, 2)] == ["status", "completed"]
    await expect_close(comm, 1000)

    await comm.send_to(text_data="bye")
    await expect_silence(comm)
    await comm.disconnect()


@pytest.mark.parametrize("how", ["deactivate_user", "delete_token"])
async def test_losing_access_closes_the_socket_with_an_error_frame(new_execution, user, token, fast_recheck, how):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    if how == "deactivate_user":
        await database_sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
    else:
        await database_sync_to_async(Token.objects.filter(key=token).delete)()
    started = time.monotonic()
    frame = await next_frame(comm, timeout=5.0)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", "Authentication required", 4401)
    await expect_close(comm, 4401)
    assert time.monotonic() - started < 5.0
    await comm.disconnect()


async def test_deactivating_a_session_user_closes_the_socket(new_execution, user, session_cookie, fast_recheck):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, headers=[(b"cookie", session_cookie.encode())])
    await next_frame(comm)

    await database_sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
    frame = await next_frame(comm, timeout=5.0)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", "Authentication required", 4401)
    await expect_close(comm, 4401)
    await comm.disconnect()


async def test_an_execution_handed_to_someone_else_closes_the_socket_with_4404(
    new_execution, other_user, token, fast_recheck
):
    execution = await database_sync_to_async(new_execution)()
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)

    await database_sync_to_async(Execution.objects.filter(pk=execution.id).update)(owner=other_user)
    frame = await next_frame(comm, timeout=5.0)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", f"Execution '{execution.id}' not found", 4404)
    await expect_close(comm, 4404)
    await comm.disconnect()


async def test_no_terminal_frame_is_sent_twice_when_the_recheck_and_the_layer_race(new_execution, token, fast_recheck):
    """The re-check and the live message may both carry the terminal event."""
    execution = await database_sync_to_async(new_execution)(steps=1)
    comm = await open_socket(execution.id, token=token)
    await next_frame(comm)
    await record_started(execution.id, 1)
    await record_steps(execution.id, [1], 1)
    await record_completed(execution.id, 1)

    received = await frames(comm, 3)
    assert_sequence(received, 1)
    assert sum(f["type"] in TERMINAL_TYPES for f in received) == 1
    await expect_close(comm, 1000)
    await expect_silence(comm, timeout=0.6)  # longer than a re-check round
    await comm.disconnect()
