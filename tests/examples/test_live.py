"""Every example, run as its docstring says, against a live stack (``examples_stack``).

Each is a subprocess with PROGRESS_URL and PROGRESS_TOKEN set, as a user would run it
against ``python3 dev.py run``; what it prints and its exit code are checked.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from examples.substep_pipeline import TARGET_ID as PIPELINE
from executions.models import Execution
from tests.progress_client.proxy import HostileProxy, Refusal, is_submit

from .helpers import output_of, run_example

#: Lines the watchers print for an event: ``#<seq> <type> ...``.
EVENT_LINE = re.compile(r"^#(\d+)\s+(\w+)", re.M)


@pytest.fixture
def url(examples_stack: Any) -> str:
    return str(examples_stack.http_url)


def submit(url: str, token: str, **inputs: Any) -> str:
    response = httpx.post(
        f"{url}/api/v1/executions",
        json={"type": "pipeline", "target_id": "demo_steps", "inputs": inputs},
        headers={"Authorization": f"Token {token}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def events_printed(stdout: str) -> list[tuple[int, str]]:
    return [(int(seq), kind) for seq, kind in EVENT_LINE.findall(stdout)]


def test_the_api_progress_query_demo(url: str, example_token: str) -> None:
    result = run_example(
        "examples/api_progress_query_demo.py", "--steps", "12", "--step-seconds", "0.2", url=url, token=example_token
    )
    out = result.stdout
    assert result.returncode == 0, output_of(result)
    assert out.startswith("GET /health -> 200")
    for header in ("1. Basic progress querying", "2. WebSocket streaming", "3. Concurrent monitoring",
                   "4. Performance: 1 s polling against push"):
        assert f"== {header}" in out
    assert "outputs: {\"steps_completed\": 3}" in out
    assert out.count("closed by the server: 1000") == 4  # part 2's socket and part 3's three
    summary = out.split("summary:")[1].split("==")[0]
    assert re.findall(r"(completed|failed)\n", summary) == ["completed", "completed", "failed"]
    push = re.search(r"WebSocket push\s+1 request\(s\)\s+saw\s+(\d+) of (\d+) events", out)
    poll = re.search(r"REST poll every 1 s\s+(\d+) request\(s\)\s+saw\s+(\d+) of (\d+) events", out)
    assert push and poll, out
    assert push[1] == push[2] == poll[3] == "14"  # started, 12 steps, completed: the socket saw every one
    assert int(poll[2]) < 14 and "1 s polling never saw" in out


def test_the_rest_integration_waits_as_retry_after_says(examples_stack: Any, example_token: str) -> None:
    """Behind a proxy that throttles: the submit gets a 503, the first two polls a 429, each
    with Retry-After: 1. The retried submit keeps its Idempotency-Key; the waits are a second."""

    def is_poll(method: str, target: str, headers: dict[str, str]) -> bool:
        return method == "GET" and re.search(r"/api/v1/executions/exec_\w+$", target) is not None

    retry = {"Retry-After": "1"}
    refusals = [
        Refusal(is_submit, 503, b'{"detail": "Broker unavailable"}', "application/json", retry, times=1),
        Refusal(is_poll, 429, b'{"detail": "Request was throttled."}', "application/json", retry, times=2),
    ]
    with HostileProxy(examples_stack.port, refusals) as proxy:
        result = run_example(
            "examples/rest_polling.py", "--input", "steps=3", "--input", "step_seconds=0.3",
            url=proxy.url, token=example_token,
        )
        submits, polls = proxy.seen(is_submit), proxy.seen(is_poll)
    assert result.returncode == 0, output_of(result)
    assert "503 Broker unavailable; waiting 1 s (Retry-After)" in result.stdout
    assert result.stdout.count("429 Request was throttled.; waiting 1 s (Retry-After)") == 2
    assert "completed 100.0%" in result.stdout and 'outputs: {"steps_completed": 3}' in result.stdout
    assert [s.answered for s in submits] == [503, None]
    assert submits[0].headers["idempotency-key"] == submits[1].headers["idempotency-key"]
    assert submits[1].at - submits[0].at >= 0.9
    assert [p.answered for p in polls[:3]] == [429, 429, None]
    assert polls[1].at - polls[0].at >= 0.9 and polls[2].at - polls[1].at >= 0.9
    assert Execution.objects.count() == 1


def test_the_rest_integration_exits_1_when_the_run_fails(url: str, example_token: str) -> None:
    result = run_example(
        "examples/rest_polling.py", "--input", "steps=3", "--input", "step_seconds=0.1", "--input", "fail_at_step=2",
        url=url, token=example_token,
    )
    assert result.returncode == 1, output_of(result)
    assert "error: ValueError: Simulated failure at step 2" in result.stderr


def test_the_websocket_watcher_resumes_without_loss_or_repeat(url: str, example_token: str) -> None:
    result = run_example(
        "examples/ws_watch.py", "--input", "steps=6", "--input", "step_seconds=0.4", "--drop-after", "3",
        url=url, token=example_token,
    )
    assert result.returncode == 0, output_of(result)
    resumed = re.search(r"reconnecting in [\d.]+ s, resuming after seq (\d+)", result.stdout)
    assert resumed, result.stdout
    seqs = [seq for seq, _ in events_printed(result.stdout)]
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "every event after the first state once, in order"
    assert int(resumed[1]) in seqs[:-1] and events_printed(result.stdout)[-1] == (8, "completed")


def test_the_sse_watcher_script(url: str, example_token: str) -> None:
    execution_id = submit(url, example_token, steps=4, step_seconds=0.3)
    result = run_example("examples/sse_watch.sh", execution_id, url=url, token=example_token)
    assert result.returncode == 0, output_of(result)
    events = events_printed(result.stdout)
    assert [seq for seq, _ in events] == list(range(events[0][0], 7)) and events[-1] == (6, "completed")
    assert re.search(r"^#6\s+completed\s+100% $", result.stdout, re.M)
    # Resumed from a known position: the events after id 3, then the end.
    again = run_example("examples/sse_watch.sh", execution_id, url=url, token=example_token, SSE_LAST_EVENT_ID="3")
    assert again.returncode == 0, output_of(again)
    assert events_printed(again.stdout) == [(4, "progress"), (5, "progress"), (6, "completed")]
    missing = run_example("examples/sse_watch.sh", "exec_000000000000", url=url, token=example_token)
    assert missing.returncode == 3 and "Execution 'exec_000000000000' not found" in missing.stderr


def test_the_pipeline_with_sub_step_progress(url: str, example_token: str) -> None:
    result = run_example(
        "-m", "examples.substep_pipeline", "--images", "20", "--seconds-per-image", "0.05",
        url=url, token=example_token,
    )
    assert result.returncode == 0, output_of(result)
    assert result.stdout.startswith("started exec_")
    resize = [float(p) for p in re.findall(r"progress\s+([\d.]+)%\s+resize$", result.stdout, re.M)]
    within = [p for p in resize if 100 / 3 < p < 200 / 3]
    assert len(within) >= 3, f"the bar moved within the resize step: {resize}"
    assert resize == sorted(resize)
    assert re.search(r"completed\s+100\.00%", result.stdout)
    execution = Execution.objects.get(target_id=PIPELINE)
    assert execution.outputs == {"resized": 20}


def test_the_agent_that_streams_its_work(url: str, example_token: str) -> None:
    result = run_example(
        "-m", "examples.streaming_agent", "--question", "Why is the sky blue?", "--sources", "2", "--seconds", "0.3",
        url=url, token=example_token,
    )
    assert result.returncode == 0, output_of(result)
    assert re.findall(r"^  \[(\d)/4\] (.+)…$", result.stdout, re.M) == [
        ("1", "plan"), ("2", "read source 1 of 2"), ("3", "read source 2 of 2"), ("4", "write the answer"),
    ]
    assert "answer:\n  An answer to 'Why is the sky blue?', from 2 sources:" in result.stdout
