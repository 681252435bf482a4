"""Every Prometheus metric of the service, and the small functions that move them.

Names, labels and buckets are decided here, and a call site reads as what
happened (``metrics.publish_failed()``), not as Prometheus plumbing. The
module knows no app: what only the database knows (executions by status) is
read at scrape time by a :class:`CountsCollector` that the view builds with a
selector. With ``PROMETHEUS_MULTIPROC_DIR`` set, a scrape of any process sums
the values of all of them (:func:`exposition`).
"""


from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Final, Literal

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.values import ValueClass

# daphne processes, the Celery worker and each of its pool children count in
# their own memory, and a scrape reaches one process. In prometheus-client's
# multiprocess mode every process keeps its values in small memory-mapped
# files in PROMETHEUS_MULTIPROC_DIR, and exposition() sums them. The library
# picks its value class when it is first imported (prometheus_client.values),
# so the variable is set by whoever starts the processes (dev.py run, the test
# stack, a deployment), never from Python here. The directory must be emptied
# when the stack starts: old processes' files would count too. The gauge of
# open sockets sums live processes only, so an exiting process forgets its
# share (process_exited: at interpreter exit, and from Celery's
# worker_process_shutdown for pool children, which leave through os._exit).
# Without the variable, the plain in-process registry is used (one process, or
# tests), with the library's process and platform collectors.

#: Whether values live in files shared by all processes (see above).
MULTIPROCESS: bool = bool(getattr(ValueClass, "_multiprocess", False))
MULTIPROCESS_DIR: str = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "") if MULTIPROCESS else ""
if MULTIPROCESS:
    # The first metric below writes its file at once: a missing directory would
    # stop the process from starting over a monitoring detail.
    os.makedirs(MULTIPROCESS_DIR, exist_ok=True)

NAMESPACE = "executions"

# --- Actions of the sweeper (``executions.maintenance``) -----------------------------
LOST_RUN_FAILED: Final = "lost_run_failed"
MESSAGE_REQUEUED: Final = "message_requeued"
EXECUTION_PRUNED: Final = "execution_pruned"
SHUTDOWN_FAILED: Final = "shutdown_failed"
#: A durable run handed over to another worker (lost, or its worker's grace ended) instead of failed.
RUN_HANDED_OVER: Final = "run_handed_over"
SweeperAction = Literal["lost_run_failed", "message_requeued", "execution_pruned", "shutdown_failed", "run_handed_over"]
SWEEPER_ACTIONS: tuple[SweeperAction, ...] = (
    LOST_RUN_FAILED, MESSAGE_REQUEUED, EXECUTION_PRUNED, SHUTDOWN_FAILED, RUN_HANDED_OVER,
)

WebhookOutcome = Literal["delivered", "failed", "refused"]
WEBHOOK_OUTCOMES: tuple[WebhookOutcome, ...] = ("delivered", "failed", "refused")

#: Event-to-frame latency buckets, seconds: a healthy stream is well under
#: 100 ms; a burst fanned out to many watchers reaches seconds (docs/benchmarks.md).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_RECORDED = Counter(
    "events_recorded", "Events recorded (committed), by event type.", ["type"], namespace=NAMESPACE
)
WEBSOCKETS_OPEN = Gauge(
    "websockets_open",
    "WebSocket connections open now, summed over the live web processes.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
FRAMES_SENT = Counter("frames_sent", "Frames sent to WebSocket clients.", namespace=NAMESPACE)
EVENT_TO_FRAME_SECONDS = Histogram(
    "event_to_frame_seconds",
    "Seconds from an event's recorded timestamp to its frame being sent to a socket.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
PUBLISH_FAILURES = Counter(
    "publish_failures",
    "Messages the channel layer refused (group_send raised; an event goes to up to three groups); "
    "watchers repair from the database.",
    namespace=NAMESPACE,
)
WEBHOOK_ATTEMPTS = Counter(
    "webhook_attempts",
    "Webhook delivery attempts by outcome: delivered (2xx), failed (retried), refused (unsafe address).",
    ["outcome"],
    namespace=NAMESPACE,
)
SWEEPER_ACTIONS_TOTAL = Counter(
    "sweeper_actions",
    "What the workers' maintenance did: lost runs failed, lost messages requeued, "
    "executions pruned, runs failed at a shutdown.",
    ["action"],
    namespace=NAMESPACE,
)
# Known label values start at 0, so a rate() sees the first increase.
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_ATTEMPTS.labels(_outcome)
for _action in SWEEPER_ACTIONS:
    SWEEPER_ACTIONS_TOTAL.labels(_action)


def event_recorded(event_type: str) -> None:
    """An event was committed (call once per event, after commit)."""
    EVENTS_RECORDED.labels(event_type).inc()


def socket_opened() -> None:
    """A WebSocket was accepted; pair every call with one :func:`socket_closed`."""
    WEBSOCKETS_OPEN.inc()


def socket_closed() -> None:
    """A WebSocket that :func:`socket_opened` counted has gone."""
    WEBSOCKETS_OPEN.dec()


def frame_sent(event_timestamp_iso: str | None = None) -> None:
    """A frame went to a socket; with the event's ISO timestamp, its latency is observed too.

    The timestamp is the one the event was recorded with (the channel-layer
    message carries it as ``timestamp``). Latency across machines includes
    their clock difference; a negative one (clock skew) counts as 0.
    """
    FRAMES_SENT.inc()
    if event_timestamp_iso:
        try:
            recorded = datetime.fromisoformat(event_timestamp_iso)
        except ValueError:
            return
        if recorded.tzinfo is not None:
            EVENT_TO_FRAME_SECONDS.observe(max(0.0, time.time() - recorded.timestamp()))


def publish_failed(messages: int = 1) -> None:
    """``group_send`` raised: the events are stored, only the live push was lost."""
    PUBLISH_FAILURES.inc(messages)


def webhook_attempted(outcome: WebhookOutcome) -> None:
    """One webhook delivery attempt ended this way."""
    WEBHOOK_ATTEMPTS.labels(outcome).inc()


def sweeper_acted(action: SweeperAction, count: int = 1) -> None:
    """The maintenance changed ``count`` executions this way (0 changes nothing)."""
    if count > 0:
        SWEEPER_ACTIONS_TOTAL.labels(action).inc(count)


def process_exited(pid: int) -> None:
    """Forget the live gauges of a process that is exiting (multiprocess mode only)."""
    if MULTIPROCESS:
        mark_process_dead(pid, MULTIPROCESS_DIR)


def _forget_this_process() -> None:
    process_exited(os.getpid())


atexit.register(_forget_this_process)


class CountsCollector:
    """A gauge family read at scrape time: ``read()`` gives the value per label value.

    For numbers only the database knows (executions by status): computing
    them per scrape is always right, whichever process answers, and costs
    one query per scrape rather than bookkeeping at every transition. A read
    that fails leaves the family out of that scrape instead of failing it.
    """

    def __init__(self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, float]]) -> None:
        self.name = f"{NAMESPACE}_{name}"
        self.documentation = documentation
        self.label = label
        self.read = read

    def collect(self) -> Iterator[Metric]:
        try:
            values = self.read()
        except Exception:  # noqa: BLE001 - the rest of the scrape is still worth having
            return
        family = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for label_value, value in sorted(values.items()):
            family.add_metric([label_value], value)
        yield family


class _Scrape:
    """The collectors of one scrape, in the shape ``generate_latest`` reads (``collect()``)."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def exposition(accept: str | None, *extra: Collector) -> tuple[bytes, str]:
    """The text a scraper gets and its content type, plus ``extra`` collectors.

    Content negotiation is the library's (Prometheus text, or OpenMetrics when
    the scraper asks for it). In multiprocess mode the values are the sums over
    every process's files; otherwise this process's registry.
    """
    base: Collector = MultiProcessCollector(None, MULTIPROCESS_DIR) if MULTIPROCESS else REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Scrape([base, *extra])), content_type
