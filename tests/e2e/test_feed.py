"""The execution feed end to end: daphne, a Celery worker, Redis.

Several users submit over HTTP while each follows ``WS /api/v1/executions/ws``
(staff also with ``?scope=all``); every frame is checked against the published
``ExecutionFeedFrame``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.frames import TERMINAL_TYPES, assert_feed_frame_shape

from .streams import API, TIMEOUT, Api

pytestmark = pytest.mark.e2e


@dataclass
class Feed:
    """What one client of the execution feed received."""

    ws: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    close_code: int | None = None

    def read(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        try:
            text = self.ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
            return None
        frame = json.loads(text)
        assert_feed_frame_shape(frame)
        self.frames.append(frame)
        self.texts.append(text)
        self.arrived.append(time.monotonic())
        return frame

    def read_until_ended(self, execution_ids: set[str], timeout: float = 60.0) -> None:
        """Read until each of ``execution_ids`` has had its terminal frame.

        ``execution_ids`` may still be filled in while this reads (from another thread):
        until it is not empty, there is nothing to wait for but the first frames.
        """
        deadline = time.monotonic() + timeout
        while not (execution_ids and execution_ids <= self.ended()):
            seen = [(f["type"], f.get("execution_id")) for f in self.frames]
            assert time.monotonic() < deadline, f"not all ended within {timeout}s: {seen}"
            try:
                frame = self.read(timeout=min(0.2, max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                continue
            assert frame is not None, f"closed: {self.close_code}"

    def ended(self) -> set[str]:
        return {f["execution_id"] for f in self.frames if f["type"] in TERMINAL_TYPES}

    def of(self, execution_id: str) -> list[tuple[dict[str, Any], float]]:
        arrivals = zip(self.frames, self.arrived, strict=True)
        return [(f, at) for f, at in arrivals if f.get("execution_id") == execution_id]


def open_feed(live_stack: Any, token: str | None, query: str = "") -> Feed:
    url = f"{live_stack.ws_url}{API}/executions/ws" + (f"?{query}" if query else "")
    headers = {"Authorization": f"Token {token}"} if token else {}
    return Feed(connect(url, additional_headers=headers, open_timeout=TIMEOUT))


def new_token(django_user_model: Any, **extra: Any) -> str:
    user = django_user_model.objects.create_user(username=f"e2e-{uuid.uuid4().hex[:12]}", password=None, **extra)
    return Token.objects.create(user=user).key


@pytest.fixture
def tokens(api_user: tuple[Any, str], django_user_model: Any) -> dict[str, str]:
    return {
        "alice": api_user[1],
        "bob": new_token(django_user_model),
        "staff": new_token(django_user_model, is_staff=True),
    }


def submit(api: Api, steps: int, step_seconds: float) -> str:
    return api.submit("demo_steps", inputs={"steps": steps, "step_seconds": step_seconds})["execution_id"]


def test_each_user_follows_their_executions_on_one_socket_and_staff_everyones(
    live_stack: Any, tokens: dict[str, str]
) -> None:
    alice, bob = Api(live_stack.http_url, tokens["alice"]), Api(live_stack.http_url, tokens["bob"])
    feeds = {
        "alice": open_feed(live_stack, tokens["alice"]),
        "bob": open_feed(live_stack, tokens["bob"]),
        "staff own": open_feed(live_stack, tokens["staff"]),
        "staff all": open_feed(live_stack, tokens["staff"], "scope=all"),
    }
    try:
        for name, feed in feeds.items():
            first = feed.read()
            assert first is not None and first["type"] == "snapshot", name

        steps = 40
        # Alice's socket is read while the submits go on: arrival times are taken when a
        # frame is read, and the rate check below must not see frames that waited unread.
        alice_ids: set[str] = set()
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(feeds["alice"].read_until_ended, alice_ids)
            alices = [submit(alice, steps, 0.02), submit(alice, steps, 0.02)]
            alice_ids.update(alices)
            bobs = [submit(bob, 3, 0.05)]
            reading.result(timeout=70)
        feeds["bob"].read_until_ended(set(bobs))
        feeds["staff all"].read_until_ended(set(alices + bobs))

        for name, feed in (("alice", feeds["alice"]), ("bob", feeds["bob"]), ("staff all", feeds["staff all"])):
            followed = {f["execution_id"] for f in feed.frames if f["type"] != "snapshot"}
            expected = {"alice": set(alices), "bob": set(bobs), "staff all": set(alices + bobs)}[name]
            assert followed == expected, (name, followed)
        with pytest.raises(TimeoutError):  # staff follow only their own by default: nothing arrives
            feeds["staff own"].read(timeout=0.5)
    finally:
        for feed in feeds.values():
            feed.ws.close()

    feed = feeds["alice"]
    for execution_id in alices:
        frames = [f for f, _ in feed.of(execution_id)]
        types = [f["type"] for f in frames]
        assert types[0] == "created" and types[-1] == "completed", types
        announced = frames[0]["execution"]
        if announced["status"] == "pending":
            assert types[1] == "started", types
        else:
            # The worker's started message overtook the submit's created one (two publishers):
            # the socket announced the execution in the state it read, started included
            # (docs/protocol/feed.md: "an execution appears in the snapshot or a `created` frame
            # before any other frame of it").
            assert announced["status"] == "running" and "started" not in types, (announced, types)
        assert types.count("completed") == 1 and set(types[1:-1]) <= {"started", "progress"}, types
        seqs = [f["seq"] for f in frames[1:]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        assert seqs[0] > announced["seq"], "each frame is newer than the state announced"
        # The terminal frame is the stored event, text for text.
        stored = alice.events(execution_id)
        text = json.dumps(stored[-1], separators=(",", ":"), ensure_ascii=False)
        assert feed.texts[feed.frames.index(frames[-1])] == text
        assert frames[-1]["progress"]["eta_seconds"] == 0
        # At most about 4 progress frames per second per execution, on this socket.
        arrivals = [at for f, at in feed.of(execution_id) if f["type"] == "progress"]
        span = max(arrivals[-1] - arrivals[0], 0.0) if arrivals else 0.0
        assert len(arrivals) <= span / 0.25 + 2, (len(arrivals), span)
        assert len(arrivals) < steps, "every progress event came through: nothing was throttled"


def test_the_snapshot_shows_what_runs_and_a_cancel_settles_it(live_stack: Any, tokens: dict[str, str]) -> None:
    api = Api(live_stack.http_url, tokens["alice"])
    execution_id = submit(api, 30, 0.5)
    api.wait_for(execution_id, lambda e: e["status"] == "running" and e["seq"] >= 2)
    feed = open_feed(live_stack, tokens["alice"], "status=running")
    try:
        snapshot = feed.read()
        assert snapshot is not None and snapshot["type"] == "snapshot"
        (shown,) = [e for e in snapshot["executions"] if e["execution_id"] == execution_id]
        assert shown["status"] == "running" and shown["progress"]["current_step_name"].startswith("step_")
        assert api.cancel(execution_id).status_code == 200
        feed.read_until_ended({execution_id}, timeout=10)
        (cancelled,) = [f for f, _ in feed.of(execution_id) if f["type"] == "cancelled"]
        assert cancelled["progress"]["eta_seconds"] is None
    finally:
        feed.ws.close()


@pytest.mark.parametrize(
    ("who", "query", "message", "code"),
    [
        (None, "", "Authentication required", 4401),
        ("alice", "status=done", "Invalid status", 4400),
        ("alice", "scope=all", "scope=all is for staff only", 4403),
    ],
)
def test_refusals_are_an_error_frame_then_a_close_code(
    live_stack: Any, tokens: dict[str, str], who: str | None, query: str, message: str, code: int
) -> None:
    feed = open_feed(live_stack, tokens[who] if who else None, query)
    frame = feed.read()
    assert frame is not None and (frame["type"], frame["message"], frame["code"]) == ("error", message, code)
    assert feed.read() is None and feed.close_code == code


def test_frames_per_execution_are_counted_apart(live_stack: Any, tokens: dict[str, str]) -> None:
    """Two executions reporting at once: each keeps its own rate, neither starves the other."""
    api = Api(live_stack.http_url, tokens["alice"])
    feed = open_feed(live_stack, tokens["alice"])
    try:
        assert feed.read()["type"] == "snapshot"  # type: ignore[index]  # None only once closed
        ids = [submit(api, 25, 0.04), submit(api, 25, 0.04)]
        feed.read_until_ended(set(ids))
    finally:
        feed.ws.close()
    counts: dict[str, int] = defaultdict(int)
    for frame in feed.frames:
        if frame["type"] == "progress":
            counts[frame["execution_id"]] += 1
    assert all(counts[execution_id] >= 1 for execution_id in ids), counts
