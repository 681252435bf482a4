"""``python -m progress_client``: start, watch, list and cancel executions from a shell.

``watch`` (and ``start --watch``) exit with the run's result, so a CI job can
write ``python -m progress_client start etl --watch && deploy``:

====  ==========================================================
0     completed
1     failed (the error is printed on stderr)
2     cancelled
3     usage, authentication or connection error (after retries)
====  ==========================================================

On a terminal ``watch`` draws a progress bar; otherwise it writes one line per
frame (``--json``: the raw frames, one per line), which is what logs want.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from .client import TERMINAL_TYPES, TRANSPORTS, Client, Frame
from .errors import ProgressClientError, ValidationFailed

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED, EXIT_ERROR = 0, 1, 2, 3
EXIT_BY_STATUS = {"completed": EXIT_COMPLETED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class UsageError(Exception):
    """A command line that cannot be run (exit code 3, like argparse's own errors here)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse exits with 2 on a usage error; 2 means "cancelled" here, so 3 instead."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


# --- parsing --------------------------------------------------------------------------------


def parse_value(raw: str) -> Any:
    """JSON when it parses (``3`` is a number, ``true`` a boolean), else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_inputs(pairs: Sequence[str], inputs_json: str | None) -> dict[str, Any]:
    """``--inputs-json`` first, then each ``--input key=value`` over it."""
    inputs: dict[str, Any] = {}
    if inputs_json:
        try:
            loaded = json.loads(inputs_json)
        except ValueError as exc:
            raise UsageError(f"--inputs-json is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("--inputs-json must be a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--input wants key=value, got {pair!r}")
        inputs[key] = parse_value(raw)
    return inputs


def parse_transports(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in TRANSPORTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TRANSPORTS)} (comma-separated), got {value!r}")
    return names


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m progress_client",
        description="Start, watch, list and cancel executions. "
        "Exit codes of watch and start --watch: 0 completed, 1 failed, 2 cancelled, 3 usage/auth/connection error.",
    )
    parser.add_argument("--url", default=os.environ.get("PROGRESS_URL") or DEFAULT_URL,
                        help=f"site root, without /api/v1 (default: $PROGRESS_URL or {DEFAULT_URL})")
    parser.add_argument(
        "--token", default=os.environ.get("PROGRESS_TOKEN"), help="API token (default: $PROGRESS_TOKEN)"
    )
    parser.add_argument("--transports", type=parse_transports, default=TRANSPORTS, metavar="LIST",
                        help="what watch may use, in order (default: websocket,sse,poll)")
    parser.add_argument("--retries", type=int, default=8, metavar="N",
                        help="failed attempts in a row before giving up (default: 8)")
    parser.add_argument("--poll-interval", type=float, default=1.0, metavar="S", help="polling period (default: 1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = commands.add_parser("start", help="start an execution; prints its id (or watches it)")
    start.add_argument("target", metavar="TARGET")
    start.add_argument("--type", choices=["pipeline", "agent"], help="looked up in /targets when not given")
    start.add_argument("--input", action="append", default=[], metavar="KEY=VALUE",
                       help="one input; VALUE is read as JSON when it parses, else as text")
    start.add_argument("--inputs-json", metavar="JSON", help="all inputs as a JSON object (--input adds to it)")
    start.add_argument("--config-json", metavar="JSON", help="config as a JSON object, e.g. '{\"timeout\": 60}'")
    start.add_argument("--idempotency-key", metavar="KEY", help="sent as the Idempotency-Key header")
    start.add_argument("--watch", action="store_true", help="watch it to the end; exit with its result")
    start.add_argument("--json", action="store_true", help="with --watch: raw frames, one JSON object per line")

    watch = commands.add_parser("watch", help="follow an execution to its end; exit with its result")
    watch.add_argument("execution_id", metavar="ID")
    watch.add_argument("--json", action="store_true", help="raw frames, one JSON object per line")

    listing = commands.add_parser("list", help="list executions (every page)")
    listing.add_argument("--status", choices=["pending", "running", "completed", "failed", "cancelled"])
    listing.add_argument("--type", choices=["pipeline", "agent"])
    listing.add_argument("--target", dest="target_id", metavar="TARGET")
    listing.add_argument("--limit", type=int, metavar="N", help="at most N executions")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    cancel = commands.add_parser("cancel", help="cancel an execution")
    cancel.add_argument("execution_id", metavar="ID")

    commands.add_parser("targets", help="what can be started")
    return parser


# --- showing a watch ------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = max(round(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def step_text(progress: dict[str, Any] | None) -> str:
    """``step k/N name`` while a step runs (k 1-based), else ``k/N steps done``."""
    if not progress:
        return ""
    done, total = progress.get("current_step", 0), progress.get("total_steps", 0)
    name = progress.get("current_step_name")
    if name is not None:
        return f"step {done + 1}/{total} {name}"
    return f"{done}/{total} steps done"


def resumed_text(frame: Frame) -> str:
    """``resumed at step k, attempt n``: the step the run goes on at (1-based), and who took it up."""
    progress = frame.get("progress") or {}
    return f"resumed at step {progress.get('current_step', 0) + 1}, attempt {frame.get('attempt')}"


def error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return "unknown error"
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


class Clock:
    """Elapsed running time and the remaining time, from what the frames say.

    The ETA is the server's ``eta_seconds`` when progress objects carry it
    (counted down since that frame arrived), else an estimate: the elapsed
    running time scaled by what is left of the percentage.
    """

    def __init__(self, started_at: datetime | None) -> None:
        self.started_at = started_at
        self.ended_at: datetime | None = None
        self.percentage = 0.0
        self.eta: float | None = None
        self.eta_at: datetime | None = None

    def update(self, frame: Frame) -> None:
        kind = frame["type"]
        stamp = parse_time(frame.get("timestamp"))
        if kind == "started" and self.started_at is None:
            self.started_at = stamp
        if kind in TERMINAL_TYPES:
            self.ended_at = stamp
        progress = frame.get("progress")
        if isinstance(progress, dict):
            self.percentage = float(progress.get("percentage") or 0.0)
            eta = progress.get("eta_seconds")
            self.eta = float(eta) if isinstance(eta, int | float) else None
            self.eta_at = datetime.now(UTC)

    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.ended_at or datetime.now(UTC)) - self.started_at).total_seconds()

    def remaining(self) -> float | None:
        if self.ended_at is not None:
            return 0.0
        if self.eta is not None and self.eta_at is not None:
            return max(self.eta - (datetime.now(UTC) - self.eta_at).total_seconds(), 0.0)
        elapsed = self.elapsed()
        if elapsed is None or self.percentage <= 0:
            return None
        return elapsed * (100.0 - self.percentage) / self.percentage


def frame_line(frame: Frame, clock: Clock) -> str:
    """One line per frame, for logs: ``seq=3 progress 40.00% step 3/5 step_3 eta 0:00:02``."""
    kind = frame["type"]
    parts = [f"seq={frame.get('seq')}", resumed_text(frame) if kind == "resumed" else kind]
    if kind == "status":
        parts.append(frame["status"])
    progress = frame.get("progress")
    if isinstance(progress, dict):
        parts.append(f"{progress['percentage']:.2f}%")
        if progress.get("current_step_name") is not None:
            parts.append(step_text(progress))
        remaining = clock.remaining()
        if kind not in TERMINAL_TYPES and remaining is not None:
            parts.append(f"eta {duration(remaining)}")
    if kind == "completed":
        parts.append(f"outputs {json.dumps(frame.get('outputs'), separators=(',', ':'))}")
    elif kind == "failed":
        parts.append(f"error {error_text(frame.get('error'))}")
    return " ".join(parts)


class ElapsedColumn(ProgressColumn):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def render(self, task: Task) -> Text:
        return Text(f"elapsed {duration(self.clock.elapsed())}", style="progress.elapsed")


class RemainingColumn(ProgressColumn):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def render(self, task: Task) -> Text:
        return Text(f"eta {duration(self.clock.remaining())}", style="progress.remaining")


def show_bar(console: Console, title: str, frames: Iterator[Frame], clock: Clock) -> Frame | None:
    """A rich progress bar: percentage, step name, step k of N, elapsed and ETA."""
    last: Frame | None = None
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>6.2f}%"),
        TextColumn("{task.fields[step]}"),
        ElapsedColumn(clock),
        RemainingColumn(clock),
    )
    with Progress(*columns, console=console, refresh_per_second=8) as bar:
        task = bar.add_task(title, total=100.0, step="")
        for frame in frames:  # the clock is updated as they come (``clocked``)
            last = frame
            progress = frame.get("progress")
            state = frame.get("status") or frame["type"]
            fields: dict[str, Any] = {"description": f"{title} {state}"}
            if isinstance(progress, dict):
                fields["completed"] = progress["percentage"]
                fields["step"] = resumed_text(frame) if frame["type"] == "resumed" else step_text(progress)
            bar.update(task, **fields)
    return last


def clocked(client: Client, execution_id: str, frames: Iterator[Frame], clock: Clock) -> Iterator[Frame]:
    """The frames, with ``clock`` told about each first; a status frame of a run that
    started after the first look gets its start time from the execution."""
    for frame in frames:
        if clock.started_at is None and frame["type"] == "status" and frame["status"] != "pending":
            clock.started_at = parse_time(client.get(execution_id).get("started_at"))
        clock.update(frame)
        yield frame


def watch_frames(client: Client, execution_id: str, *, as_json: bool, console: Console) -> int:
    """Show every frame to the end; the exit code of the result."""
    execution = client.get(execution_id)
    clock = Clock(parse_time(execution.get("started_at")))
    frames = clocked(client, execution_id, client.watch(execution_id), clock)
    last: Frame | None = None
    if as_json:
        for frame in frames:
            last = frame
            print(json.dumps(frame, ensure_ascii=False, separators=(",", ":")), flush=True)
    elif console.is_terminal:
        last = show_bar(console, f"{execution['target_id']} {execution_id}", frames, clock)
    else:
        for frame in frames:
            last = frame
            print(frame_line(frame, clock), flush=True)
    status = last.get("status") if last else None
    if status == "failed":
        error = last.get("error") if last else None
        print(f"failed: {error_text(error)}", file=sys.stderr)
    elif status not in EXIT_BY_STATUS:
        print(f"error: the stream of {execution_id} ended without a result", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_BY_STATUS[status]


# --- the commands ---------------------------------------------------------------------------


def run_start(client: Client, args: argparse.Namespace, console: Console) -> int:
    inputs = parse_inputs(args.input, args.inputs_json)
    config = parse_inputs([], args.config_json) if args.config_json else None
    submitted = client.start(args.target, inputs, type=args.type, config=config, idempotency_key=args.idempotency_key)
    execution_id = submitted["execution_id"]
    if not args.watch:
        print(execution_id)
        return 0
    print(execution_id, file=sys.stderr)
    return watch_frames(client, execution_id, as_json=args.json, console=console)


def run_list(client: Client, args: argparse.Namespace, console: Console) -> int:
    executions = client.list(status=args.status, type=args.type, target_id=args.target_id)
    rows: list[dict[str, Any]] = []
    for execution in executions:
        if args.limit is not None and len(rows) >= args.limit:
            break
        rows.append(execution)
    if args.json:
        for execution in rows:
            print(json.dumps(execution, ensure_ascii=False, separators=(",", ":")))
        return 0
    headers = ("execution_id", "status", "type", "target_id", "progress", "created_at")
    values = [
        (
            e["execution_id"],
            e["status"],
            e["type"],
            e["target_id"],
            f"{e['progress']['percentage']:.2f}%" if e.get("progress") else "-",
            e["created_at"],
        )
        for e in rows
    ]
    if console.is_terminal:
        table = Table(*headers)
        for row in values:
            table.add_row(*row)
        console.print(table)
    else:
        for row in values:
            print("\t".join(row))
    return 0


def run_cancel(client: Client, args: argparse.Namespace, console: Console) -> int:
    try:
        answer = client.cancel(args.execution_id)
    except ValidationFailed as exc:  # it has already ended
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    print(f"{answer['data']['execution_id']} cancelled at {answer['data']['cancelled_at']}")
    return 0


def run_targets(client: Client, args: argparse.Namespace, console: Console) -> int:
    for target in client.targets():
        steps = ", ".join(target["steps"]) if target.get("steps") else "(depends on the inputs)"
        print(f"{target['type']}\t{target['target_id']}\t{steps}")
    return 0


COMMANDS = {"start": run_start, "list": run_list, "cancel": run_cancel, "targets": run_targets}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("no token: give --token or set PROGRESS_TOKEN")
    console = Console(stderr=False)
    try:
        with Client(
            args.url, args.token, transports=args.transports, max_retries=args.retries, poll_interval=args.poll_interval
        ) as client:
            if args.command == "watch":
                return watch_frames(client, args.execution_id, as_json=args.json, console=console)
            return COMMANDS[args.command](client, args, console)
    except UsageError as exc:
        parser.error(str(exc))
    except ProgressClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
