"""The execution feed (``progress/feed.py``) against the real ASGI application.

As in test_consumer.py: everything goes through ``config.asgi.application`` and
the real channel layer; executions are submitted with ``execution_create`` (the
broker replaced by ``task_queue``) and their events recorded with
``event_record``, as a run records them. Every frame is checked against the
published ``ExecutionFeedFrame`` component.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from executions.events import event_record
from executions.handover import execution_hand_over
from executions.models import Execution
from executions.services import execution_cancel, execution_create
from progress import broadcast, feed
from progress.protocol import feed_group_of_user, layer_reconnected_message
from tests.frames import assert_feed_frame_shape, final_progress, step_progress

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5.0
FEED = "/api/v1/executions/ws"


# --- helpers ---------------------------------------------------------------------------


async def open_feed(token: str | None, query: str = "") -> WebsocketCommunicator:
    headers = [(b"authorization", f"Token {token}".encode())] if token else []
    comm = WebsocketCommunicator(application, f"{FEED}?{query}" if query else FEED, headers=headers)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected, "the handshake was refused"
    return comm


async def next_frame(comm: WebsocketCommunicator, timeout: float = TIMEOUT) -> dict[str, Any]:
    frame = await comm.receive_json_from(timeout=timeout)
    assert_feed_frame_shape(frame)
    return frame


async def snapshot(comm: WebsocketCommunicator) -> list[dict[str, Any]]:
    frame = await next_frame(comm)
    assert frame["type"] == "snapshot", frame
    return frame["executions"]


async def frames_until(comm: WebsocketCommunicator, done: Any, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Frames until ``done(frames)`` holds."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        received.append(await next_frame(comm, timeout=max(0.01, deadline - time.monotonic())))
    return received


async def expect_silence(comm: WebsocketCommunicator, timeout: float = 0.3) -> None:
    assert await comm.receive_nothing(timeout=timeout), "an unexpected message was sent"


async def expect_refusal(token: str | None, query: str, message: str, code: int) -> None:
    comm = await open_feed(token, query)
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert_feed_frame_shape(frame)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", message, code)
    closing = await comm.receive_output(timeout=TIMEOUT)
    assert (closing["type"], closing.get("code")) == ("websocket.close", code)
    await comm.disconnect()


@database_sync_to_async
def submit(owner: Any, steps: int = 3) -> Execution:
    return execution_create(
        owner=owner, type="pipeline", target_id="demo_steps", inputs={"steps": steps, "step_seconds": 0}, config={}
    )


@database_sync_to_async
def record(execution_id: str, event_type: str, **kwargs: Any) -> int:
    recorded = event_record(execution_id=execution_id, event_type=event_type, **kwargs)
    assert recorded is not None, f"{event_type} was refused"
    return recorded.seq


async def start(execution_id: str, total: int) -> None:
    await record(
        execution_id,
        "started",
        progress={"current_step": 0, "total_steps": total, "percentage": 0.0, "current_step_name": None},
    )


async def complete(execution_id: str, total: int) -> None:
    await record(execution_id, "completed", progress=final_progress(total), outputs={"steps_completed": total})


def brief(frames: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    return [(f["type"], f["execution_id"], f.get("seq")) for f in frames]


@pytest.fixture
def feed_user_token(user: Any) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def other_token(other_user: Any) -> str:
    return Token.objects.create(user=other_user).key


@pytest.fixture
def staff_token(staff_user: Any) -> str:
    return Token.objects.create(user=staff_user).key


@pytest.fixture
def fast_recheck(settings: Any) -> float:
    settings.PROGRESS_RECHECK_SECONDS = 0.2
    return 0.2


# --- refusals ----------------------------------------------------------------------------------


async def test_without_credentials_the_socket_is_refused_with_4401() -> None:
    await expect_refusal(None, "", "Authentication required", 4401)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=completed", "Invalid status"),
        ("status=running,bogus", "Invalid status"),
        ("status=", "Invalid status"),
        ("status=running&status=pending", "Invalid status"),
        ("scope=everyone", "Invalid scope"),
        ("scope=all&scope=own", "Invalid scope"),
    ],
)
async def test_a_bad_status_or_scope_is_refused_with_4400(feed_user_token: str, query: str, message: str) -> None:
    await expect_refusal(feed_user_token, query, message, 4400)


async def test_scope_all_is_refused_to_a_user_who_is_not_staff(feed_user_token: str) -> None:
    await expect_refusal(feed_user_token, "scope=all", "scope=all is for staff only", 4403)


async def test_a_message_from_the_client_gets_an_error_frame_and_the_socket_stays(feed_user_token: str) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    await comm.send_to(text_data="hello")
    frame = await next_frame(comm)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", "Unsupported message", None)
    await expect_silence(comm)
    await comm.disconnect()


# --- the snapshot ------------------------------------------------------------------------------


async def test_the_snapshot_holds_the_users_executions_not_ended_newest_first(
    user: Any, other_user: Any, feed_user_token: str, task_queue: Any
) -> None:
    pending = await submit(user)
    running = await submit(user)
    await start(running.id, 3)
    done = await submit(user)
    await start(done.id, 3)
    await complete(done.id, 3)
    cancelled = await submit(user)
    await database_sync_to_async(execution_cancel)(execution_id=cancelled.id)
    await submit(other_user)

    comm = await open_feed(feed_user_token)
    shown = await snapshot(comm)
    assert [e["execution_id"] for e in shown] == [running.id, pending.id]
    by_id = {e["execution_id"]: e for e in shown}
    assert by_id[running.id]["status"] == "running" and by_id[running.id]["seq"] == 1
    assert by_id[running.id]["progress"]["eta_seconds"] is None
    assert by_id[pending.id]["progress"] is None and by_id[pending.id]["owner"] == user.username
    await expect_silence(comm)
    await comm.disconnect()


async def test_the_snapshot_is_capped_at_the_newest(
    user: Any, feed_user_token: str, task_queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "SNAPSHOT_MAX", 3)
    made = [await submit(user) for _ in range(5)]
    comm = await open_feed(feed_user_token)
    assert [e["execution_id"] for e in await snapshot(comm)] == [e.id for e in reversed(made)][:3]
    await comm.disconnect()


async def test_status_narrows_the_snapshot(user: Any, feed_user_token: str, task_queue: Any) -> None:
    pending = await submit(user)
    running = await submit(user)
    await start(running.id, 3)
    for query, expected in (
        ("status=running", [running.id]),
        ("status=pending", [pending.id]),
        ("status=pending,running", [running.id, pending.id]),
        ("status=running&scope=own", [running.id]),
    ):
        comm = await open_feed(feed_user_token, query)
        assert [e["execution_id"] for e in await snapshot(comm)] == expected, query
        await comm.disconnect()


async def test_staff_follow_their_own_unless_they_ask_for_everyones(
    user: Any, staff_user: Any, staff_token: str, task_queue: Any
) -> None:
    theirs = await submit(user)
    own = await submit(staff_user)
    comm = await open_feed(staff_token)
    assert [e["execution_id"] for e in await snapshot(comm)] == [own.id]
    everyone = await open_feed(staff_token, "scope=all")
    assert [e["execution_id"] for e in await snapshot(everyone)] == [own.id, theirs.id]

    await start(theirs.id, 3)
    frame = await next_frame(everyone)
    assert (frame["type"], frame["execution_id"]) == ("started", theirs.id)
    await expect_silence(comm)
    await comm.disconnect()
    await everyone.disconnect()


# --- live frames -------------------------------------------------------------------------------


async def test_a_submit_then_its_run_arrive_as_created_started_progress_and_the_terminal_frame(
    user: Any, feed_user_token: str, task_queue: Any
) -> None:
    comm = await open_feed(feed_user_token)
    assert await snapshot(comm) == []

    execution = await submit(user, steps=2)
    created = await next_frame(comm)
    assert (created["type"], created["execution_id"]) == ("created", execution.id)
    shape = created["execution"]
    assert (shape["status"], shape["seq"], shape["progress"], shape["target_id"]) == ("pending", 0, None, "demo_steps")
    assert shape["inputs"] == {"steps": 2, "step_seconds": 0, "fail_at_step": None}

    await start(execution.id, 2)
    await record(execution.id, "progress", progress=step_progress(1, 2))
    await asyncio.sleep(0.3)  # beyond the feed's progress interval: both steps are sent
    await record(execution.id, "progress", progress=step_progress(2, 2))
    await complete(execution.id, 2)
    received = await frames_until(comm, lambda got: got and got[-1]["type"] == "completed")
    assert brief(received) == [
        ("started", execution.id, 1),
        ("progress", execution.id, 2),
        ("progress", execution.id, 3),
        ("completed", execution.id, 4),
    ]
    assert received[-1]["progress"] == final_progress(2)
    assert received[2]["progress"]["eta_seconds"] is not None
    await expect_silence(comm)  # the socket stays open for the next execution
    await comm.disconnect()


async def test_a_hand_over_reaches_the_feed_as_a_resumed_frame_at_once(
    user: Any, feed_user_token: str, task_queue: Any
) -> None:
    comm = await open_feed(feed_user_token)
    assert await snapshot(comm) == []
    execution = await database_sync_to_async(execution_create)(
        owner=user, type="pipeline", target_id="demo_durable", inputs={"steps": 2, "step_seconds": 0}, config={}
    )
    assert (await next_frame(comm))["type"] == "created"
    start_at = {"current_step": 0, "total_steps": 2, "percentage": 0.0, "current_step_name": None}
    await record(execution.id, "started", progress=start_at, worker="w1@host")
    assert await database_sync_to_async(execution_hand_over)(execution_id=execution.id, attempt=1, worker="w1@host")
    await record(execution.id, "resumed", progress=start_at, worker="w2@host", attempt=2)
    await record(execution.id, "completed", progress=final_progress(2), outputs={}, attempt=2)
    received = await frames_until(comm, lambda got: got and got[-1]["type"] == "completed")
    assert brief(received) == [
        ("started", execution.id, 1), ("resumed", execution.id, 2), ("completed", execution.id, 3),
    ]
    assert received[1]["attempt"] == 2
    await comm.disconnect()


async def test_another_users_executions_never_reach_the_socket(
    user: Any, other_user: Any, feed_user_token: str, task_queue: Any
) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    theirs = await submit(other_user, steps=1)
    await start(theirs.id, 1)
    await complete(theirs.id, 1)
    mine = await submit(user, steps=1)
    frame = await next_frame(comm)
    assert (frame["type"], frame["execution_id"]) == ("created", mine.id), "the other user's frames came first"
    await expect_silence(comm)
    await comm.disconnect()


async def test_progress_is_sent_at_most_about_four_times_a_second_and_the_latest_state_wins(
    user: Any, feed_user_token: str, task_queue: Any
) -> None:
    total = 40
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    execution = await submit(user, steps=total)
    assert (await next_frame(comm))["type"] == "created"

    began = time.monotonic()
    await start(execution.id, total)
    for step in range(1, total + 1):
        await record(execution.id, "progress", progress=step_progress(step, total))
    last_progress_seq = total + 1
    # The held-back latest state follows within one interval of the last report.
    received = await frames_until(
        comm, lambda got: any(f["type"] == "progress" and f["seq"] == last_progress_seq for f in got)
    )
    elapsed = time.monotonic() - began
    await complete(execution.id, total)
    received += await frames_until(comm, lambda got: got and got[-1]["type"] == "completed")

    types = [f["type"] for f in received]
    assert types[0] == "started" and types[-1] == "completed" and types.count("completed") == 1
    progress = [f for f in received if f["type"] == "progress"]
    assert len(progress) <= elapsed / 0.25 + 2, (len(progress), elapsed)
    assert len(progress) < total, "nothing was held back"
    assert progress[-1]["progress"] == step_progress(total, total), "the latest state was not delivered"
    seqs = [f["seq"] for f in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    await comm.disconnect()


async def test_a_terminal_frame_replaces_a_held_back_progress_frame(
    user: Any, feed_user_token: str, task_queue: Any
) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    execution = await submit(user, steps=3)
    await next_frame(comm)
    await start(execution.id, 3)
    for step in (1, 2, 3):
        await record(execution.id, "progress", progress=step_progress(step, 3))
    await complete(execution.id, 3)
    received = await frames_until(comm, lambda got: got and got[-1]["type"] == "completed")
    assert [f["type"] for f in received] == ["started", "progress", "completed"]
    await asyncio.sleep(0.4)
    await expect_silence(comm)  # the held-back progress frame never follows the terminal one
    await comm.disconnect()


async def test_an_event_of_an_execution_not_followed_is_preceded_by_its_created_frame(
    user: Any, new_execution: Any, feed_user_token: str
) -> None:
    """E.g. the created message arrives after the run started: the socket reads the state first."""
    comm = await open_feed(feed_user_token, "status=running")
    await snapshot(comm)
    execution = await database_sync_to_async(new_execution)(steps=2)  # stored, never announced
    await start(execution.id, 2)
    created = await next_frame(comm)
    assert (created["type"], created["execution_id"]) == ("created", execution.id)
    assert (created["execution"]["status"], created["execution"]["seq"]) == ("running", 1)
    await record(execution.id, "progress", progress=step_progress(1, 2))
    frame = await next_frame(comm)
    assert (frame["type"], frame["seq"]) == ("progress", 2)
    await comm.disconnect()


async def test_with_status_running_a_submit_is_announced_when_it_starts(
    user: Any, feed_user_token: str, task_queue: Any
) -> None:
    comm = await open_feed(feed_user_token, "status=running")
    await snapshot(comm)
    execution = await submit(user)
    await expect_silence(comm)
    await start(execution.id, 3)
    created = await next_frame(comm)
    assert (created["type"], created["execution"]["status"]) == ("created", "running")
    await comm.disconnect()


async def test_an_execution_that_ended_before_the_socket_heard_of_it_gets_created_then_its_terminal_frame(
    user: Any, new_execution: Any, feed_user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    publish = broadcast.publish_to_feeds
    # Its created message is lost (new_execution submits through the services, which announce it).
    monkeypatch.setattr(broadcast, "publish_to_feeds", lambda **kwargs: None)
    execution = await database_sync_to_async(new_execution)(steps=1)
    # Its started message is late: by the time the socket reads it, the run has ended.
    held: list[dict[str, Any]] = []
    monkeypatch.setattr(broadcast, "publish_to_feeds", lambda *, owner_id, message: held.append(message))
    await start(execution.id, 1)
    await complete(execution.id, 1)
    monkeypatch.setattr(broadcast, "publish_to_feeds", publish)
    for message in held:
        publish(owner_id=user.pk, message=message)
    received = await frames_until(comm, lambda got: len(got) == 2)
    assert brief(received) == [("created", execution.id, None), ("completed", execution.id, 2)]
    assert received[0]["execution"]["status"] == "completed"
    await expect_silence(comm)
    await comm.disconnect()


# --- the re-check -------------------------------------------------------------------------------


async def test_a_lost_terminal_frame_arrives_through_the_recheck(
    user: Any, feed_user_token: str, task_queue: Any, fast_recheck: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    execution = await submit(user, steps=1)
    assert (await next_frame(comm))["type"] == "created"
    await start(execution.id, 1)
    assert (await next_frame(comm))["type"] == "started"
    monkeypatch.setattr(broadcast, "publish_to_feeds", lambda **kwargs: None)  # the layer loses everything now
    await record(execution.id, "progress", progress=step_progress(1, 1))
    await complete(execution.id, 1)
    frame = await next_frame(comm)
    assert (frame["type"], frame["seq"]) == ("completed", 3), "the latest stored frame, nothing older"
    await asyncio.sleep(3 * fast_recheck)
    await expect_silence(comm)
    await comm.disconnect()


async def test_a_submit_whose_created_message_was_lost_is_announced_by_the_recheck(
    user: Any, feed_user_token: str, task_queue: Any, fast_recheck: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    monkeypatch.setattr(broadcast, "publish_to_feeds", lambda **kwargs: None)
    execution = await submit(user)
    frame = await next_frame(comm)
    assert (frame["type"], frame["execution_id"], frame["execution"]["status"]) == ("created", execution.id, "pending")
    await asyncio.sleep(3 * fast_recheck)
    await expect_silence(comm)
    await comm.disconnect()


async def test_the_layers_reconnect_message_repairs_at_once(
    user: Any, feed_user_token: str, task_queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without waiting for a re-check round (the default 4 s): the hub's ``layer.reconnected``
    message makes the socket send each followed execution's latest stored frame."""
    execution = await submit(user, steps=2)
    comm = await open_feed(feed_user_token)
    assert [e["execution_id"] for e in await snapshot(comm)] == [execution.id]
    monkeypatch.setattr(broadcast, "publish_to_feeds", lambda **kwargs: None)  # published while Redis was away
    await start(execution.id, 2)
    await record(execution.id, "progress", progress=step_progress(1, 2))
    await expect_silence(comm)
    await get_channel_layer().group_send(feed_group_of_user(user.pk), layer_reconnected_message())
    frame = await next_frame(comm)
    assert (frame["type"], frame["execution_id"], frame["seq"]) == ("progress", execution.id, 2)
    await comm.disconnect()


async def test_a_deleted_token_closes_the_socket_with_4401(
    user: Any, feed_user_token: str, fast_recheck: float
) -> None:
    comm = await open_feed(feed_user_token)
    await snapshot(comm)
    await database_sync_to_async(Token.objects.filter(key=feed_user_token).delete)()
    frame = await next_frame(comm, timeout=2.0)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", "Authentication required", 4401)
    closing = await comm.receive_output(timeout=TIMEOUT)
    assert (closing["type"], closing.get("code")) == ("websocket.close", 4401)
    await comm.disconnect()


async def test_staff_who_lose_staff_are_closed_with_4403_on_scope_all(
    staff_user: Any, staff_token: str, fast_recheck: float
) -> None:
    comm = await open_feed(staff_token, "scope=all")
    await snapshot(comm)
    staff_user.is_staff = False
    await database_sync_to_async(staff_user.save)(update_fields=["is_staff"])
    frame = await next_frame(comm, timeout=2.0)
    assert (frame["type"], frame["message"], frame["code"]) == ("error", "scope=all is for staff only", 4403)
    closing = await comm.receive_output(timeout=TIMEOUT)
    assert (closing["type"], closing.get("code")) == ("websocket.close", 4403)
    await comm.disconnect()


# --- the query parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", feed.FeedRequest(("pending", "running"), False)),
        (b"status=running,pending", feed.FeedRequest(("pending", "running"), False)),
        (b"status=running&scope=all", feed.FeedRequest(("running",), True)),
        (b"scope=own&other=1", feed.FeedRequest(("pending", "running"), False)),
        (b"status=failed", "Invalid status"),
        (b"scope=", "Invalid scope"),
    ],
)
async def test_parse_feed_query(query: bytes, expected: Any) -> None:
    assert feed.parse_feed_query(query) == expected
