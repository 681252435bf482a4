"""Schemathesis against the live server, driven by the schema the server publishes.

One run of Schemathesis' engine (what ``st run`` does: examples, coverage,
fuzzing and stateful phases, positive and negative data) against daphne, with a
valid token. The run must send at least ``MIN_REQUESTS`` requests, get no 5xx,
and every response must conform to the schema (status code, content type,
headers, body). The numbers are printed (``-s`` or the failure report shows them).

Run only this: ``python3 dev.py test tests/fuzz``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import schemathesis
from schemathesis.engine import Status, events, from_schema

MIN_REQUESTS = 1000
# Upper bound on the engine's run; it normally ends well before.
MAX_SECONDS = 120

# Every response check of Schemathesis 4 runs (all are on by default), with
# these exceptions, each a dependency the schema cannot express:
# - positive_data_acceptance ("schema-valid data gets 2xx") is off where a valid
#   request is refused by design: the accepted inputs depend on the target named
#   in the same body (plus fail_at_step <= steps), credentials must be real, a
#   finished execution cannot be cancelled, and only a failed durable execution
#   can be resumed from its failed step (400, as the contract says).
# - error feedback (learning constraints from 400 answers) is off: it reads our
#   {"errors": {"inputs": {"customer_query": [...]}}} as a constraint on a body
#   property "errors", then reports a body without it as invalid data accepted.
FUZZ_CONFIG: dict[str, Any] = {
    "max-time": MAX_SECONDS,
    "workers": 2,
    "cache": {"enabled": False},
    "generation": {"max-examples": 150, "database": "none"},
    "phases": {"fuzzing": {"error-feedback": {"enabled": False}}},
    "operations": [
        {
            "include-operation-id": ["auth_token", "executions_create", "executions_cancel", "executions_rerun"],
            "checks": {"positive_data_acceptance": {"enabled": False}},
        },
    ],
}


class Tally:
    """Every response Schemathesis received (its calls run on worker threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.operations: Counter[str] = Counter()
        self.server_errors: list[str] = []

    def after_call(self, context: Any, case: schemathesis.Case, response: schemathesis.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            self.operations[f"{case.method} {case.path}"] += 1
            if response.status_code >= 500:
                self.server_errors.append(f"{response.status_code} {case.as_curl_command()}")

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def never_leave_the_machine(context: Any, body: Any) -> Any:
    """Point generated callback URLs at a name that cannot resolve (RFC 6761 ``.invalid``).

    A random public host or address would pass the SSRF checks, and the worker
    would then POST webhooks to it.
    """
    if isinstance(body, dict) and isinstance(body.get("callback_url"), str):
        try:
            parts = urlsplit(body["callback_url"])
        except ValueError:
            return body
        if parts.netloc:
            body = {**body, "callback_url": parts._replace(netloc="fuzz.invalid").geturl()}
    return body


def check_results(event: events.EngineEvent, checks_run: Counter[str]) -> list[str]:
    """Count the checks a finished scenario ran; return its failures."""
    recorder = getattr(event, "recorder", None)
    if recorder is None:
        return []
    failures = []
    for nodes in recorder.checks.values():
        for node in nodes:
            checks_run[node.name] += 1
            if node.status == Status.FAILURE and node.failure_info is not None:
                info = node.failure_info
                failures.append(f"{recorder.label}: {node.name}: {info.failure.title}\n{info.code_sample}")
    return failures


def test_schemathesis_finds_nothing(fuzz_stack: Any, api_user: tuple[Any, str]) -> None:
    headers = {"Authorization": f"Token {api_user[1]}"}
    config = schemathesis.Config.from_dict({**FUZZ_CONFIG, "headers": headers})
    schema = schemathesis.openapi.from_url(
        f"{fuzz_stack.http_url}/api/v1/schema?format=json", config=config, headers=headers, timeout=30
    )
    tally = Tally()
    schema.hooks.register_hook_with_name(tally.after_call, "after_call")
    schema.hooks.register_hook_with_name(never_leave_the_machine, "map_body")

    failures: dict[str, None] = {}  # ordered and deduplicated
    errors: list[str] = []
    checks_run: Counter[str] = Counter()
    started = time.monotonic()
    finished: events.EngineFinished | None = None
    for event in from_schema(schema).execute():
        for failure in check_results(event, checks_run):
            failures.setdefault(failure)
        if isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(getattr(event, "value", None) or getattr(event, "exception", None)))
        if isinstance(event, events.EngineFinished):
            finished = event
    elapsed = time.monotonic() - started
    assert finished is not None
    failures.update(dict.fromkeys(str(failure) for failure in finished.failures))

    print(
        f"\nschemathesis {schemathesis.__version__}: {tally.total} requests in {elapsed:.1f}s "
        f"(stop: {finished.stop_reason}, seed {schema.config.seed})"
        f"\n  statuses: {dict(sorted(tally.statuses.items()))}"
        f"\n  operations: {dict(sorted((k, n) for k, n in tally.operations.items() if n > 1))}"
        f" + {sum(n for n in tally.operations.values() if n == 1)} single probes (mostly unsupported methods)"
        f"\n  checks run: {dict(sorted(checks_run.items()))}"
    )
    assert not errors, errors
    assert not tally.server_errors, tally.server_errors[:20]
    assert not failures, "\n\n".join(failures)
    assert tally.total >= MIN_REQUESTS, tally.statuses
