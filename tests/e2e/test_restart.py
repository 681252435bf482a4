"""Reconnecting without loss across a server restart (guarantee 4).

The worker goes on recording while the server is down; the client, told to
come back (close 1012, the drain), resumes with the last ``seq`` it saw and
gets everything after it exactly once.
"""

from __future__ import annotations

from typing import Any

from .streams import (
    Api,
    Stream,
    in_step,
    open_ws,
    read_frame,
    read_to_close,
    read_until,
)


def test_a_client_resumes_after_a_daphne_restart_without_gaps_or_repeats(live_stack: Any, api_user: Any) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    steps = 20
    execution_id = api.submit("demo_steps", inputs={"steps": steps, "step_seconds": 0.25})["execution_id"]

    before = Stream()
    with open_ws(live_stack.ws_url, execution_id, token) as ws:
        read_until(ws, before, in_step(3))
        live_stack.restart_daphne()  # SIGTERM, as in a deploy
        while read_frame(ws, before) is not None:
            pass
    assert before.close_code == 1012  # "service restart": the stream did not end, come back
    last_seen = before.frames[-1]["seq"]

    with open_ws(live_stack.ws_url, execution_id, token, query=f"after_seq={last_seen}") as ws:
        after = read_to_close(ws, timeout=15)

    assert after.close_code == 1000
    assert after.frames[-1]["type"] == "completed"
    if after.frames[0]["type"] == "status":  # nothing had been recorded after last_seen yet
        assert after.frames[0]["seq"] == last_seen
        after.frames.pop(0)
    seqs = [f["seq"] for f in before.frames] + [f["seq"] for f in after.frames]
    assert seqs == list(range(before.frames[0]["seq"], steps + 3)), seqs
