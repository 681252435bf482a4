"""Deploys without drops (docs/operations/deployment.md): ``serve`` drains on SIGTERM and reloads on SIGHUP.

A reload under load on the live stack: 200 sockets, 20 event streams and REST
pollers follow a run at 10 events/s while ``serve`` replaces its processes;
every socket is told 1012 once and resumes, every stream is whole, no request
fails. A SIGTERM to a ``serve`` of its own: every socket gets 1012 before it
exits, within the grace. A reload whose new processes cannot start leaves the
old ones serving. The clients are ``devtools.followers`` (they resume as
``progress_client`` and the pages do).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from devtools import processes
from devtools.followers import through_a_reload
from tests.helpers import wait_for

from .streams import Api, Stream, in_step, open_ws, read_frame, read_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="finds the server's processes through /proc"),
]


def test_a_reload_under_load_drops_nothing(live_stack: Any, api_user: Any) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    # 10 events/s for about 15 s: the reload (new processes starting, then the drain) falls in the middle.
    execution_id = api.submit("demo_steps", inputs={"steps": 150, "step_seconds": 0.1})["execution_id"]
    serve_pid = live_stack.daphne.pid
    replaced: list[int] = []

    def reload() -> None:
        replaced.extend(live_stack.reload_web())

    run = asyncio.run(
        through_a_reload(
            http_url=live_stack.http_url, ws_url=live_stack.ws_url, token=token, execution_id=execution_id,
            sockets=200, streams=20, pollers=4, reload=reload, reload_after_seq=25,
        )
    )
    live_stack.wait_reloaded(replaced)
    print(
        f"\nreload under load: SIGHUP at {run.reloaded_at:.1f} s, all whole at {run.took:.1f} s; "
        f"REST {dict(run.polled.statuses)}; reconnects: sockets max "
        f"{max(r for f in run.sockets for r in f.reconnects):.2f} s, streams max "
        f"{max(r for f in run.streams for r in f.reconnects):.2f} s"
    )
    assert api.get(execution_id)["status"] == "completed"
    for follower in [*run.sockets, *run.streams]:
        assert follower.problems() == [], follower.seqs
        assert follower.failures == []
    # Every socket was told to come back exactly once, and came back.
    assert [f.endings for f in run.sockets] == [[1012, 1000]] * 200
    assert all(len(f.reconnects) == 1 for f in run.sockets)
    # Every event stream: it opens with retry:, ends after a whole event, resumes by Last-Event-ID,
    # and once it has the terminal event its next resume is answered 204.
    assert [f.endings for f in run.streams] == [["ended", "ended", "204"]] * 20
    assert all(f.retry_fields == ["1000", "1000"] for f in run.streams)
    assert run.polled.failures == []
    assert set(run.polled.statuses) == {200}
    # serve kept its pid and serves from its new processes.
    assert live_stack.daphne.pid == serve_pid and live_stack.daphne.alive()
    assert processes.http_answers(live_stack.port, "/healthz")
    log = live_stack.daphne.read_log()
    assert "draining generation" in log and "reload failed" not in log


@pytest.fixture
def own_serve(live_stack: Any, tmp_path: Path) -> Iterator[processes.Child]:
    """A ``serve`` of its own (two processes) on the live stack's database, Redis and worker.

    Its settings (``tests.e2e.breakable_settings``) fail to load while the file named by
    ``BREAK_SETTINGS_FILE`` exists: a deploy of broken code.
    """
    env = {
        **live_stack.env,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.breakable_settings",
        "BREAK_SETTINGS_FILE": str(tmp_path / "broken"),
    }
    child = processes.start_web(env, processes.free_port(), log_path=tmp_path / "serve.log",
                                command=processes.serve_command)
    try:
        yield child
    finally:
        child.stop()


def close_code(ws: ClientConnection, timeout: float = 15.0) -> int | None:
    """Read whatever comes until the server closes; the code of its close frame."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


def test_sigterm_closes_every_socket_with_1012_before_serve_exits(
    own_serve: processes.Child, live_stack: Any, api_user: Any
) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 1, "step_seconds": 30})["execution_id"]
    ws_base = (own_serve.url or "").replace("http://", "ws://")
    sockets = [open_ws(ws_base, execution_id, token) for _ in range(49)]
    # And one execution feed (the list page's socket).
    sockets.append(connect(f"{ws_base}/api/v1/executions/ws", additional_headers={"Authorization": f"Token {token}"}))
    try:
        for ws in sockets:
            assert json.loads(ws.recv(timeout=10.0))["type"] in ("status", "snapshot")
        sent = time.monotonic()
        own_serve.process.send_signal(signal.SIGTERM)
        codes = [close_code(ws) for ws in sockets]
        closed_in = time.monotonic() - sent
        assert own_serve.process.wait(timeout=15.0) == 0
        exited_in = time.monotonic() - sent
    finally:
        for ws in sockets:
            ws.close()
        api.cancel(execution_id)
    print(f"\nSIGTERM: 50 sockets closed with 1012 within {closed_in:.2f} s; serve exited after {exited_in:.2f} s")
    assert codes == [1012] * 50
    assert exited_in < 8.0  # within SERVE_GRACE_SECONDS (the test settings'): nothing was killed
    log = own_serve.read_log()
    assert "still draining" not in log and log.count("drained in") == 2


def test_a_reload_that_cannot_start_leaves_the_old_processes_serving(
    own_serve: processes.Child, live_stack: Any, api_user: Any, tmp_path: Path
) -> None:
    token = api_user[1]
    api = Api(live_stack.http_url, token)
    execution_id = api.submit("demo_steps", inputs={"steps": 40, "step_seconds": 0.1})["execution_id"]
    port = int((own_serve.url or "").rsplit(":", 1)[1])
    serving = processes.child_pids(own_serve.pid)
    (tmp_path / "broken").write_text("a deploy of code that cannot start\n")
    stream = Stream()
    with open_ws((own_serve.url or "").replace("http://", "ws://"), execution_id, token) as ws:
        read_until(ws, stream, in_step(2), timeout=30.0)
        own_serve.signal_leader(signal.SIGHUP)
        own_serve.wait_for(lambda: "reload failed" in own_serve.read_log(), "the reload to fail", 60.0)
        # The socket was never told to go: it follows the run to its end.
        while read_frame(ws, stream, timeout=30.0) is not None:
            pass
    assert stream.close_code == 1000 and stream.frames[-1]["type"] == "completed"
    assert processes.child_pids(own_serve.pid) == serving
    assert processes.http_answers(port, "/healthz")
    assert "goes on serving" in own_serve.read_log()

    (tmp_path / "broken").unlink()  # fixed: the next SIGHUP replaces them
    own_serve.signal_leader(signal.SIGHUP)
    wait_for(
        lambda: (now := processes.child_pids(own_serve.pid)) and len(now) == 2 and not set(now) & set(serving),
        timeout=60.0, what="a new generation",
    )
    assert processes.http_answers(port, "/healthz")
