"""examples/api_progress_query_demo.py without a server: its report and its probe.

The whole demo against the live stack: test_live.py.
"""

from __future__ import annotations

from examples.api_progress_query_demo import Watcher, latency_report

from .helpers import output_of, run_example


def test_the_report_counts_what_each_watcher_saw_and_how_late() -> None:
    events = {1: 100.0, 2: 101.0, 3: 102.0, 4: 103.0}  # seq -> recorded at
    poll = Watcher("REST poll every 1 s", requests=2, known_at={1: 101.5, 2: 101.5, 3: 103.2, 4: 103.2}, seen={2, 4})
    push = Watcher("WebSocket push", requests=1, known_at={s: t + 0.002 for s, t in events.items()}, seen={1, 2, 3, 4})
    assert latency_report(push, events, since=0) == (
        "WebSocket push           1 request(s)  saw   4 of 4 events  latency p50     2.0 ms, max     2.0 ms"
    )
    # Events recorded before ``since`` (the watchers started) are not measured: delays 0.5, 1.2, 0.2 s.
    assert latency_report(poll, events, since=101.0) == (
        "REST poll every 1 s      2 request(s)  saw   2 of 4 events  latency p50   500.0 ms, max  1200.0 ms"
    )


def test_the_demo_says_when_the_service_is_away() -> None:
    result = run_example("examples/api_progress_query_demo.py", "--url", "http://127.0.0.1:9", url="", token="t")
    assert result.returncode == 3, output_of(result)
    assert "error: no answer from http://127.0.0.1:9" in result.stderr and "python3 dev.py run" in result.stderr
