"""``progress.streams.ExecutionStream`` as a member of the per-process re-check (``progress.recheck``).

The transports (tests/progress/test_consumer.py, test_sse.py) show the
guarantees end to end; here the stream's own rules, with the verdicts a round
would hand it: a gap is read from the database only once it has outlived a
whole round (frames delivered late are not read twice), lost access ends the
stream through its transport, and the stream is a member of the running
loop's re-check exactly while it is open.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from executions.events import event_record
from progress.protocol import CLOSE_UNAUTHENTICATED, EventMessage, Refusal, event_message
from progress.recheck import StreamAccess, Verdict, rechecker
from progress.streams import ExecutionStream, Opening, StreamFrame
from tests.frames import final_progress, step_progress

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class Transport:
    """What a transport is told: the frames, the end, a lost access."""

    def __init__(self) -> None:
        self.frames: list[StreamFrame] = []
        self.ended = False
        self.lost: Refusal | None = None

    async def send(self, frame: StreamFrame) -> None:
        self.frames.append(frame)

    async def on_terminal(self) -> None:
        self.ended = True

    async def on_lost(self, refusal: Refusal) -> None:
        self.lost = refusal

    @property
    def seqs(self) -> list[int | None]:
        return [frame.seq for frame in self.frames]


def open_stream(execution_id: str, user: Any, transport: Transport) -> ExecutionStream:
    return ExecutionStream(
        execution_id,
        user_pk=user.pk,
        token_key="key",
        session_key=None,
        send=transport.send,
        on_terminal=transport.on_terminal,
        on_lost=transport.on_lost,
    )


@database_sync_to_async
def record_run(execution_id: str, total: int) -> None:
    """started, one progress event per step, completed: seq 1 .. total + 2."""
    start = {"current_step": 0, "total_steps": total, "percentage": 0.0, "current_step_name": None}
    assert event_record(execution_id=execution_id, event_type="started", progress=start)
    for step in range(1, total + 1):
        assert event_record(execution_id=execution_id, event_type="progress", progress=step_progress(step, total))
    completed = {"progress": final_progress(total), "outputs": {"steps_completed": total}}
    assert event_record(execution_id=execution_id, event_type="completed", **completed)


def live(seq: int, event: str = "progress") -> EventMessage:
    return event_message(seq=seq, event_type=event, frame_text=f'{{"seq": {seq}}}')


async def test_a_gap_is_read_only_once_it_has_outlived_a_round(user: Any, new_execution: Any) -> None:
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_run(execution.id, 2)  # seq 1..4 stored, none delivered
    transport = Transport()
    stream = open_stream(execution.id, user, transport)
    await stream.start(Opening(last_seq=1))

    await stream.apply_verdict(Verdict(stored_seq=4))
    assert transport.seqs == [], "behind the database for the first time: the frames may still be on their way"
    await stream.apply_verdict(Verdict(stored_seq=4))
    assert transport.seqs == [2, 3, 4], "still behind a round later: the layer dropped them"
    assert transport.ended and stream.access is None
    assert stream not in rechecker().members


async def test_frames_that_arrive_late_are_not_read_again(user: Any, new_execution: Any) -> None:
    execution = await database_sync_to_async(new_execution)(steps=2)
    await record_run(execution.id, 2)
    transport = Transport()
    stream = open_stream(execution.id, user, transport)
    await stream.start(Opening(last_seq=1))

    await stream.apply_verdict(Verdict(stored_seq=3))
    await stream.event(live(2))
    await stream.event(live(3))  # late, but delivered
    await stream.apply_verdict(Verdict(stored_seq=3))
    assert transport.seqs == [2, 3]
    assert all(frame.timestamp is None and frame.text == f'{{"seq": {frame.seq}}}' for frame in transport.frames)
    assert not transport.ended and stream in rechecker().members
    stream.stop()
    assert stream not in rechecker().members and stream.access is None


async def test_lost_access_ends_the_stream_through_its_transport(user: Any, new_execution: Any) -> None:
    execution = await database_sync_to_async(new_execution)()
    transport = Transport()
    stream = open_stream(execution.id, user, transport)
    await stream.start(Opening(last_seq=0))
    assert stream.access == StreamAccess(user_pk=user.pk, token_key="key", session_key=None, execution_id=execution.id)
    lost = Refusal("Authentication required", CLOSE_UNAUTHENTICATED)
    await stream.apply_verdict(Verdict(lost=lost))
    assert transport.lost == lost and not transport.ended and transport.frames == []
    assert stream.finished and stream not in rechecker().members
    await stream.event(live(1, "started"))
    await stream.catch_up()
    assert transport.frames == [], "nothing goes out once the stream is finished"


async def test_an_opening_that_ends_the_stream_never_joins_the_re_check(user: Any, new_execution: Any) -> None:
    execution = await database_sync_to_async(new_execution)()
    transport = Transport()
    stream = open_stream(execution.id, user, transport)
    terminal = StreamFrame("{}", 3, "completed")
    await stream.start(Opening(frames=[terminal], last_seq=3, finished=True))
    assert transport.frames == [terminal] and transport.ended
    assert stream not in rechecker().members
