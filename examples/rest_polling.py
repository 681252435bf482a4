#!/usr/bin/env python3
"""A REST integration: submit a run, then poll it with backoff, honouring Retry-After.

For scripts and services that only speak HTTP (a CI job, a cron task)::

    .venv/bin/python examples/rest_polling.py --url http://127.0.0.1:8000 --token <token> \\
        --target demo_steps --input steps=5 --input step_seconds=1
    .venv/bin/python examples/rest_polling.py --execution exec_1a2b3c4d5e6f   # follow one already started

(``PROGRESS_URL`` and ``PROGRESS_TOKEN`` work too.) What it does, and why:

- The submit carries an ``Idempotency-Key``: if the answer is lost, or the broker is down
  (``503`` with ``Retry-After``), sending the same request again cannot start a second run.
- It polls ``GET /executions/{id}`` quickly at first, then less often while nothing
  changes (x1.5 per unchanged answer, up to ``--max-interval``), and quickly again as soon
  as the progress moves.
- A ``429`` or ``503`` answer names in ``Retry-After`` how long to wait (seconds or an HTTP
  date): it waits that long, not its own guess. A connection error is retried with
  backoff, a few times.

Prints one line per change; exits 0 when the run completed, 1 when it failed, 2 when it
was cancelled, 3 on a usage, authentication or connection error (the CLI's codes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

TERMINAL = {"completed": 0, "failed": 1, "cancelled": 2}
USAGE_OR_CONNECTION = 3
#: Retries of a request that got no answer at all, before giving up.
CONNECTION_RETRIES = 5


class GiveUpError(Exception):
    """A refusal that waiting will not cure (401, 404, 400), or the server stayed away."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: a number of seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class Backoff:
    """The polling interval: ``first`` after a change, x``factor`` per unchanged answer, at most ``maximum``."""

    first: float = 0.5
    factor: float = 1.5
    maximum: float = 8.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.first

    def changed(self) -> float:
        self.current = self.first
        return self.current

    def unchanged(self) -> float:
        self.current = min(self.maximum, self.current * self.factor)
        return self.current


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
    **kwargs: Any,
) -> httpx.Response:
    """One API call, repeated after what ``429``/``503`` ask (Retry-After) and after connection errors."""
    failures = 0
    while True:
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            failures += 1
            if failures > CONNECTION_RETRIES:
                raise GiveUpError(f"no answer from the server after {CONNECTION_RETRIES} retries ({exc})") from exc
            wait = min(8.0, 0.5 * 2**failures)
            say(f"  no answer ({exc.__class__.__name__}); retrying in {wait:g} s")
            sleep(wait)
            continue
        if response.status_code in (429, 503):
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            detail = response.json().get("detail", "") if response.content else ""
            say(f"  {response.status_code} {detail}".rstrip() + f"; waiting {wait if wait is not None else 5:g} s"
                + (" (Retry-After)" if wait is not None else ""))
            sleep(wait if wait is not None else 5.0)
            continue
        if response.status_code >= 400:
            detail = response.json().get("detail", response.text) if response.content else ""
            raise GiveUpError(f"{method} {url} answered {response.status_code}: {detail}")
        return response


def submit(client: httpx.Client, target_id: str, inputs: dict[str, Any], **io: Any) -> str:
    """Start a run; the same Idempotency-Key on every retry of this one submit."""
    targets = request(client, "GET", "/api/v1/targets", **io).json()["targets"]
    kinds = [t["type"] for t in targets if t["target_id"] == target_id]
    if not kinds:
        raise GiveUpError(f"no target {target_id!r} (GET /api/v1/targets lists them)")
    key = f"rest-polling-{uuid.uuid4()}"
    body = {"type": kinds[0], "target_id": target_id, "inputs": inputs}
    answer = request(client, "POST", "/api/v1/executions", json=body, headers={"Idempotency-Key": key}, **io).json()
    return str(answer["execution_id"])


def describe(execution: dict[str, Any]) -> str:
    progress = execution.get("progress")
    text = f"{execution['status']:<9}"
    if progress:
        text += f" {progress['percentage']:5.1f}%"
        if progress.get("current_step_name"):
            text += f"  {progress['current_step_name']} ({progress['current_step']}/{progress['total_steps']})"
        if progress.get("eta_seconds") is not None and execution["status"] == "running":
            text += f"  eta {progress['eta_seconds']:g} s"
    return text


def poll_until_done(
    client: httpx.Client,
    execution_id: str,
    *,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Poll the execution until it ends; print each change; return its last REST state."""
    backoff = backoff or Backoff()
    last_seen = None
    while True:
        execution = request(client, "GET", f"/api/v1/executions/{execution_id}", sleep=sleep, say=say).json()
        if execution["seq"] != last_seen:
            say(f"{execution_id}  {describe(execution)}")
            wait = backoff.changed() if last_seen is not None else backoff.current
            last_seen = execution["seq"]
        else:
            wait = backoff.unchanged()
        if execution["status"] in TERMINAL:
            return dict(execution)
        sleep(wait)


def parse_input(text: str) -> tuple[str, Any]:
    """``key=value``, the value read as JSON when it parses (``steps=3`` is a number), else a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Submit a run and poll it with backoff, honouring Retry-After.")
    parser.add_argument("--url", default=os.environ.get("PROGRESS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PROGRESS_TOKEN", ""))
    parser.add_argument("--execution", help="follow this execution instead of starting one")
    parser.add_argument("--target", default="demo_steps")
    parser.add_argument("--input", type=parse_input, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-interval", type=float, default=8.0, help="longest wait between polls (s)")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Token {args.token}", "Accept": "application/json"}
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=10) as client:
        try:
            execution_id = args.execution or submit(client, args.target, dict(args.input))
            if not args.execution:
                print(f"submitted {execution_id}")
            end = poll_until_done(client, execution_id, backoff=Backoff(maximum=args.max_interval))
        except GiveUpError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_OR_CONNECTION
    if end["status"] == "completed":
        print(f"outputs: {json.dumps(end['outputs'])}")
    elif end["error"]:
        print(f"error: {end['error']['type']}: {end['error']['message']}", file=sys.stderr)
    return TERMINAL[end["status"]]


if __name__ == "__main__":
    sys.exit(main())
