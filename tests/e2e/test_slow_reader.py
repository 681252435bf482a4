"""A client that lags behind must still get every frame, the terminal one included.

When the server closes, daphne's WebSocket library waits for the client's
close reply, by default only 1 s, then aborts the connection and throws away
whatever was still queued for the client (``core/serving/websocket.py`` raises
that timeout). A lagging client replies only once it has read up to the close
frame, so with the default it loses the end of its stream.

The client here opens the socket with a small receive buffer (so the kernel
cannot absorb the whole stream on its behalf, whatever the machine's TCP
autotuning), does not read at all until the execution has ended and the
server's close is well past 1 s old, and then reads slowly.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from .streams import Api, all_workers_busy, open_ws, read_to_close

STEPS = 600
#: started + one progress per step + completed
EVENTS = STEPS + 2
RECEIVE_BUFFER_BYTES = 32 * 1024
#: How long the reader stays away after the run has ended: well past daphne's
#: default 1 s close-handshake timeout.
LAG_SECONDS = 3.0
#: The slow reader's pause per frame.
READ_DELAY_SECONDS = 0.002


@pytest.fixture
def api(live_stack: Any, api_user: tuple[Any, str]) -> Api:
    return Api(live_stack.http_url, api_user[1])


def small_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect(): the window scale is fixed during the TCP handshake.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_slow_reader_receives_every_frame_and_the_close(live_stack: Any, api: Api, api_user: Any) -> None:
    token = api_user[1]
    with all_workers_busy(api, live_stack.worker.read_log()):
        # Pending while the socket opens: the whole run is streamed to it.
        execution_id = api.submit(
            "demo_steps", inputs={"steps": STEPS, "step_seconds": 0, "fail_at_step": None}
        )["execution_id"]
        ws = open_ws(live_stack.ws_url, execution_id, token, sock=small_buffer_socket(live_stack.port))
    with ws:
        ended = api.wait_until_ended(execution_id, timeout=120)
        time.sleep(LAG_SECONDS)  # the lag under test, not a synchronisation
        stream = read_to_close(ws, delay=READ_DELAY_SECONDS)

    assert ended["status"] == "completed"
    expected = 1 + EVENTS  # status + every event
    print(
        f"\nslow reader: {len(stream.frames)} of {expected} frames, "
        f"last {stream.types[-1] if stream.frames else None}, close code {stream.close_code}"
    )
    assert len(stream.frames) == expected
    assert (stream.frames[0]["type"], stream.frames[0]["seq"]) == ("status", 0)
    assert stream.seqs[1:] == list(range(1, EVENTS + 1))
    assert stream.frames[-1]["type"] == "completed"
    assert stream.close_code == 1000
