"""Health and metrics on the real stack: daphne and a prefork Celery worker as processes.

The worker's pool child records the events; daphne answers the scrape. That
the numbers move in daphne's ``/metrics`` is what proves prometheus-client's
multiprocess mode (``running_stack`` gives both processes one directory).
"""

from __future__ import annotations

import time
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.streams import Api, Stream, in_step, open_ws, read_to_close, read_until
from tests.helpers import wait_for
from tests.stack import METRICS_TOKEN

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> Samples:
    response = requests.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def events(samples: Samples, event_type: str) -> float:
    return value(samples, "executions_events_recorded_total", type=event_type)


def test_health_and_readiness_of_the_running_stack(live_stack: Any) -> None:
    assert requests.get(f"{live_stack.http_url}/healthz", timeout=10).json() == {"status": "pass"}
    # The worker records its first beat as soon as it starts.
    deadline = time.monotonic() + 20
    while True:
        response = requests.get(f"{live_stack.http_url}/readyz", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "pass", "checks": {"database": "pass", "redis": "pass", "workers": "pass"}}


def test_scrapes_of_daphne_count_what_the_worker_records_while_it_streams(
    live_stack: Any, api_user: tuple[Any, str]
) -> None:
    api = Api(live_stack.http_url, api_user[1])
    assert requests.get(f"{live_stack.http_url}/metrics", timeout=10).status_code == 401
    before = scrape(live_stack.http_url)

    execution_id = api.submit("demo_steps", inputs={"steps": 10, "step_seconds": 0.5})["execution_id"]
    stream = Stream()
    with open_ws(live_stack.ws_url, execution_id, api_user[1]) as ws:
        read_until(ws, stream, in_step(3))
        during = scrape(live_stack.http_url)
        assert api.get(execution_id)["status"] == "running"
        read_to_close(ws, stream)
    assert stream.types[-1] == "completed" and stream.close_code == 1000

    # daphne's own numbers: this socket was open mid-run, and its frames were counted.
    assert value(during, "executions_websockets_open") >= 1
    assert value(during, "executions_frames_sent_total") >= value(before, "executions_frames_sent_total") + 3
    latencies = "executions_event_to_frame_seconds_count"
    assert value(during, latencies) > value(before, latencies)

    # Mid-run: events recorded by the worker's pool child, seen through daphne.
    assert events(during, "started") >= events(before, "started") + 1
    assert events(during, "progress") >= events(before, "progress") + 3
    assert value(during, "executions_stored", status="running") >= 1

    after = scrape(live_stack.http_url)
    progress_frames = stream.types.count("progress")
    print(
        f"\nevents_recorded progress: before {events(before, 'progress'):g}, mid-run {events(during, 'progress'):g}, "
        f"after {events(after, 'progress'):g} ({progress_frames} progress frames streamed); "
        f"completed: {events(before, 'completed'):g} -> {events(after, 'completed'):g}"
    )
    assert events(after, "progress") >= events(during, "progress") + 1
    assert events(after, "progress") - events(before, "progress") >= progress_frames
    assert events(after, "completed") >= events(before, "completed") + 1
    assert value(after, "executions_stored", status="completed") >= 1
    sent = "executions_frames_sent_total"
    assert value(after, sent) >= value(before, sent) + len(stream.types)
    # The server handles the close after the client has seen it: wait for the gauge.
    wait_for(
        lambda: value(scrape(live_stack.http_url), "executions_websockets_open")
        == value(before, "executions_websockets_open"),
        what="the closed socket to leave the open-sockets gauge",
    )
