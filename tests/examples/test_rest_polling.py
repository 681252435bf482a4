"""examples/rest_polling.py's waiting rules, against a scripted server (httpx.MockTransport).

The whole example against the live stack, behind a throttling proxy: test_live.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from examples.rest_polling import (
    CONNECTION_RETRIES,
    Backoff,
    GiveUpError,
    poll_until_done,
    request,
    retry_after_seconds,
)


def scripted(*answers: Any) -> tuple[httpx.Client, list[str]]:
    """A client whose requests get ``answers`` in order (an httpx.Response, or an exception to raise)."""
    asked: list[str] = []
    queue = list(answers)

    def handler(req: httpx.Request) -> httpx.Response:
        asked.append(f"{req.method} {req.url.path}")
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(base_url="http://service", transport=httpx.MockTransport(handler)), asked


def execution(seq: int, status: str = "running") -> httpx.Response:
    progress = {"current_step": seq, "total_steps": 5, "percentage": seq * 20.0, "current_step_name": f"step_{seq}"}
    return httpx.Response(200, json={"execution_id": "exec_1", "status": status, "seq": seq, "progress": progress,
                                     "outputs": None, "error": None})


def recorder() -> tuple[list[float], Callable[[float], None]]:
    waits: list[float] = []
    return waits, waits.append


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("-4") == 0.0
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_seconds(date, now=now.timestamp()) == pytest.approx(7.0)
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_throttled_and_unavailable_answers_wait_what_they_ask() -> None:
    client, asked = scripted(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"detail": "Request was throttled."}),
        httpx.Response(503, json={"detail": "Broker unavailable"}),  # no Retry-After: 5 s
        httpx.Response(200, json={"ok": True}),
    )
    waits, sleep = recorder()
    said: list[str] = []
    assert request(client, "GET", "/x", sleep=sleep, say=said.append).json() == {"ok": True}
    assert waits == [2.0, 5.0] and len(asked) == 3
    assert said == ["  429 Request was throttled.; waiting 2 s (Retry-After)", "  503 Broker unavailable; waiting 5 s"]


def test_connection_errors_back_off_then_give_up() -> None:
    client, asked = scripted(*[httpx.ConnectError("refused")] * (CONNECTION_RETRIES + 1))
    waits, sleep = recorder()
    with pytest.raises(GiveUpError, match="no answer from the server"):
        request(client, "GET", "/x", sleep=sleep, say=lambda _: None)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0] and len(asked) == CONNECTION_RETRIES + 1


def test_a_refusal_is_not_retried() -> None:
    client, asked = scripted(httpx.Response(404, json={"detail": "Execution 'exec_1' not found"}))
    with pytest.raises(GiveUpError, match="404: Execution 'exec_1' not found"):
        request(client, "GET", "/api/v1/executions/exec_1", sleep=lambda _: None, say=lambda _: None)
    assert len(asked) == 1


def test_polling_slows_down_while_nothing_changes_and_speeds_up_when_it_does() -> None:
    client, _ = scripted(
        execution(1), execution(1), execution(1), execution(1), execution(2), execution(2), execution(5, "completed")
    )
    waits, sleep = recorder()
    said: list[str] = []
    backoff = Backoff(first=0.5, factor=2, maximum=3)
    end = poll_until_done(client, "exec_1", backoff=backoff, sleep=sleep, say=said.append)
    assert end["status"] == "completed"
    assert waits == [0.5, 1.0, 2.0, 3.0, 0.5, 1.0]
    assert [line.split()[1] for line in said] == ["running", "running", "completed"]  # one line per change
