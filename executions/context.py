"""The run context: what a running target reports through (steps, progress, sleeps and waits).

A target never touches the database or the channel layer: everything it
reports goes through ``executions.events.event_record``, and a durable run's
steps through ``executions.steps``, fenced on its attempt. Cancellation is
cooperative: a monitor thread polls the status and watches the deadline,
every report checks the flag, and :meth:`RunContext.sleep` and
:meth:`RunContext.wait` wake at once when it is set. The same thread flushes a
coalesced report at most one interval late, and beats the run's heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.db import connection
from django.utils import timezone

from .events import event_record
from .frames import Progress
from .models import TERMINAL_STATUSES, EventType, Execution, ExecutionStatus
from .steps import (
    StepEntry,
    StepOrderError,
    StepsBegun,
    step_checkpoint,
    step_complete,
    step_enter,
    step_fail,
    step_output_checked,
    step_result,
    steps_begin,
    steps_resume_point,
)

logger = logging.getLogger(__name__)


class ExecutionInterrupted(Exception):
    """Raised inside a target to stop it; the target should let it propagate."""


class ExecutionCancelled(ExecutionInterrupted):
    """The execution was cancelled (through the API or the admin)."""


class ExecutionHandedOver(ExecutionInterrupted):
    """This attempt of a durable run is superseded: the run was handed over to another worker."""

    def __init__(self, attempt: int):
        super().__init__(f"Attempt {attempt} of this execution was handed over to another worker")
        self.attempt = attempt


class ExecutionTimeout(ExecutionInterrupted):
    """``config.timeout`` has passed since the execution started."""

    def __init__(self, timeout: float):
        super().__init__(f"Execution exceeded its timeout of {timeout:g} s")
        self.timeout = timeout


class StepError(RuntimeError):
    """A target entered a step that is not the next one it declared."""


class RunContext:
    """What a running target sees. One instance per attempt of a run; not shared across threads.

    ``durable`` (the execution's flag), ``attempt`` and ``from_failed_step``
    come from the execution; ``elapsed_seconds`` is the time the execution
    already ran in earlier attempts (``config.timeout`` counts all of them).
    """

    def __init__(
        self,
        *,
        execution_id: str,
        inputs: Mapping[str, Any],
        config: Mapping[str, Any],
        steps: list[str],
        timeout: float | None,
        coalesce_seconds: float,
        poll_seconds: float,
        heartbeat_seconds: float = 5.0,
        durable: bool = False,
        attempt: int = 1,
        from_failed_step: bool = False,
        elapsed_seconds: float = 0.0,
    ):
        self.execution_id = execution_id
        self.inputs = dict(inputs)
        self.config = dict(config)
        self.steps = steps
        self.timeout = timeout
        self.durable = durable
        #: 1, 2, ...: which attempt of the execution this is (each hand-over adds one).
        self.attempt = attempt
        #: True in an execution made by "resume from the failed step".
        self.from_failed_step = from_failed_step
        self._started = time.monotonic()
        self._deadline = None if timeout is None else self._started + timeout - elapsed_seconds
        self._coalesce = coalesce_seconds
        self._poll = poll_seconds
        self._heartbeat = heartbeat_seconds
        self._finished_steps = 0
        self._step_index = -1  # 0-based index of the step running now; -1 before the first
        self._percentage = 0.0
        self._last_recorded = float("-inf")
        self._pending: Progress | None = None
        self._record_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason: ExecutionInterrupted | None = None
        self._monitor: threading.Thread | None = None
        self._monitor_done = threading.Event()
        # The step whose work runs now (entered, or inside ctx.step), for the idempotency key and checkpoints.
        self._current_step: int | None = None
        self._resume_state: Any = None
        self._in_step_call = False
        self._begun: StepsBegun | None = None

    # --- what a target calls -----------------------------------------------------
    @property
    def total_steps(self) -> int:
        return len(self.steps)

    @property
    def cancelled(self) -> bool:
        """True once the run should stop (cancelled or timed out)."""
        return self._stop.is_set() or self._deadline_passed()

    def check(self) -> None:
        """Raise :class:`ExecutionInterrupted` if the run should stop."""
        if self._deadline_passed():
            self._set_stop(ExecutionTimeout(self.timeout or 0))
        if self._stop.is_set():
            assert self._stop_reason is not None
            raise self._stop_reason

    def enter_step(self, name: str | None = None) -> None:
        """Start the next declared step; always recorded (never coalesced).

        A durable target enters its steps with :meth:`step` instead: a step
        entered here would store nothing, and run again after a hand-over.
        """
        self.check()
        if self.durable:
            raise StepError("A durable target enters its steps with ctx.step(name, fn), which stores their results")
        if self._in_step_call:
            raise StepError(f"Step {name!r} entered inside step {self.steps[self._step_index]!r}: steps do not nest")
        index = self._step_index + 1
        if index >= self.total_steps:
            raise StepError(f"No step left to enter: the {self.total_steps} declared steps are done")
        expected = self.steps[index]
        if name is not None and name != expected:
            raise StepError(f"Entered step {name!r}, but the next declared step is {expected!r}")
        self._enter(index)
        self._current_step = index
        self._resume_state = None

    def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Enter the next declared step, ``name``, and return ``fn(*args, **kwargs)``'s JSON result.

        In a durable run the result is stored, and a step completed in an
        earlier attempt (or reused by a resume from the failed step) returns
        its stored result without calling ``fn`` and without a progress event.
        A step runs at least once; once its result is stored it never runs
        again. Code outside steps runs again at every attempt.

        In a target that is not durable, the step is entered and ``fn`` called,
        and nothing is stored: the same code becomes durable by its flag alone.
        Either way the result must be JSON of at most
        ``EXECUTION_STEP_OUTPUT_MAX_BYTES`` (``steps.StepOutputTooLarge``), and
        it is returned as read back from JSON. A name other than the next
        declared step's raises ``steps.StepOrderError``.
        """
        self.check()
        if self._in_step_call:
            running = self.steps[self._step_index]
            raise StepOrderError(f"step {name!r} entered inside step {running!r}: steps do not nest")
        index = self._step_index + 1
        expected = self.steps[index] if index < self.total_steps else None
        if expected is None:
            done = f"the {self.total_steps} declared steps are done"
            raise StepOrderError(f"step {name!r} recorded where no step expected ({done})")
        if name != expected:
            raise StepOrderError(f"step {name!r} recorded where {expected!r} expected")
        if not self.durable:
            self._enter(index)
            return self._call_step(index, fn, args, kwargs)
        begun = self._begun or self.begin_steps()
        if index in begun.completed:
            self._pass_completed(index)
            return step_result(execution_id=self.execution_id, index=index)
        entry = step_enter(execution_id=self.execution_id, index=index, attempt=self.attempt)
        if entry is StepEntry.FENCED:
            self._stop_superseded()
        if entry is StepEntry.COMPLETED:  # not so at begin_steps(), which the fence rules out: the store wins
            self._pass_completed(index)
            return step_result(execution_id=self.execution_id, index=index)
        self._enter(index)
        return self._call_step(index, fn, args, kwargs, resume_state=begun.checkpoints.get(index))

    @property
    def idempotency_key(self) -> str:
        """``"<execution_id>:<step name>"`` of the current step: the same in every attempt, for outside APIs."""
        return f"{self.execution_id}:{self.steps[self._step_now('ctx.idempotency_key')]}"

    @property
    def resume_state(self) -> Any:
        """The current step's last checkpoint from an earlier attempt, or None (read when the step was entered)."""
        self._step_now("ctx.resume_state")
        return self._resume_state

    def checkpoint(self, value: Any) -> None:
        """Store JSON progress of the current step; an attempt that runs the step again reads it as ``resume_state``.

        The same limit as a step's result applies. Nothing is stored in a
        target that is not durable.
        """
        self.check()
        index = self._step_now("ctx.checkpoint()")
        value = step_output_checked(value, step=self.steps[index], what="checkpoint")
        if self.durable and not step_checkpoint(
            execution_id=self.execution_id, index=index, attempt=self.attempt, value=value
        ):
            self._stop_superseded()

    def report(self, fraction: float) -> None:
        """Report how far the current step is, from 0.0 to 1.0; cheap to call often."""
        self.check()
        if self._step_index < 0 or self.total_steps == 0:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        pct = (self._step_index + fraction) / self.total_steps * 100
        if pct <= self._percentage:
            return
        self._percentage = min(pct, self._base_percentage(self._step_index + 1))
        self._record_progress(self.current_progress(), force=False)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once (raising) on cancel or timeout."""
        self.wait(None, seconds)

    def wait(self, event: threading.Event | None, timeout: float | None = None) -> bool:
        """Wait for ``event`` (or just ``timeout``); raise on cancel or timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self.check()
            now = time.monotonic()
            slices = [self._poll]
            if end is not None:
                if now >= end:
                    return bool(event and event.is_set())
                slices.append(end - now)
            if self._deadline is not None:
                slices.append(max(self._deadline - now, 0.0))
            slice_ = max(min(slices), 0.0)
            if event is not None:
                if event.wait(slice_):
                    self.check()
                    return True
            elif self._stop.wait(slice_):
                self.check()

    # --- used by the runner --------------------------------------------------------
    @property
    def fence(self) -> int | None:
        """The ``attempt`` guard of this run's events (``event_record``): its attempt if durable, else None."""
        return self.attempt if self.durable else None

    def begin_steps(self) -> StepsBegun:
        """Begin a durable run's attempt: its step rows at the first start, else their check.

        Raises ``steps.StepOrderError`` when the declared steps differ from the
        recorded ones, and :class:`ExecutionHandedOver` (or
        :class:`ExecutionCancelled`) when the attempt no longer holds the run.
        ``ctx.step`` calls it if the runner did not.
        """
        if not self.durable:
            self._begun = StepsBegun(completed=frozenset())
            return self._begun
        begun = steps_begin(execution_id=self.execution_id, names=self.steps, attempt=self.attempt)
        if begun is None:
            self._stop_superseded()
        assert begun is not None
        self._begun = begun
        return begun

    def resume_progress(self) -> Progress:
        """The progress at this run's resume point, for its ``resumed`` event: the steps completed, none running."""
        completed = steps_resume_point(execution_id=self.execution_id)
        return {
            "current_step": completed,
            "total_steps": self.total_steps,
            "percentage": self._base_percentage(completed),
            "current_step_name": None,
        }

    def start_monitor(self) -> None:
        self._monitor = threading.Thread(target=self._watch, name=f"monitor-{self.execution_id}", daemon=True)
        self._monitor.start()

    def stop_monitor(self) -> None:
        self._monitor_done.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)

    def final_progress(self) -> Progress:
        return {
            "current_step": self.total_steps,
            "total_steps": self.total_steps,
            "percentage": 100.0,
            "current_step_name": None,
        }

    def discard_pending(self) -> None:
        """A terminal event supersedes a coalesced report: fold it in by dropping it."""
        with self._record_lock:
            self._pending = None

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _set_stop(self, reason: ExecutionInterrupted) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    def _base_percentage(self, finished: int) -> float:
        return 0.0 if self.total_steps == 0 else finished / self.total_steps * 100

    def current_progress(self) -> Progress:
        # After a step passed over as completed, none runs until the next is entered.
        running = self._step_index >= 0 and self._finished_steps == self._step_index
        return {
            "current_step": self._finished_steps,
            "total_steps": self.total_steps,
            "percentage": self._percentage,
            "current_step_name": self.steps[self._step_index] if running else None,
        }

    def _enter(self, index: int) -> None:
        """Make ``index`` the running step and record its progress event."""
        self._step_index = index
        self._finished_steps = index
        self._percentage = max(self._percentage, self._base_percentage(index))
        self._record_progress(self.current_progress(), force=True)

    def _pass_completed(self, index: int) -> None:
        """Move past a step completed before (no event: ``resumed`` already said how far the run is)."""
        self._step_index = index
        self._finished_steps = index + 1
        self._percentage = max(self._percentage, self._base_percentage(index + 1))

    def _call_step(
        self, index: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        resume_state: Any = None,
    ) -> Any:
        name = self.steps[index]
        self._current_step, self._resume_state, self._in_step_call = index, resume_state, True
        try:
            try:
                result = step_output_checked(fn(*args, **kwargs), step=name, what="result")
            except ExecutionInterrupted:
                raise  # the run stops: a later attempt (if any) runs the step again
            except Exception as exc:
                if self.durable and not step_fail(execution_id=self.execution_id, index=index, attempt=self.attempt):
                    self._stop_superseded(exc)
                raise
            if self.durable and not step_complete(
                execution_id=self.execution_id, index=index, attempt=self.attempt, result=result
            ):
                self._stop_superseded()
            return result
        finally:
            self._current_step, self._resume_state, self._in_step_call = None, None, False

    def _step_now(self, what: str) -> int:
        if self._current_step is None:
            raise StepError(f"{what} belongs to a step: use it inside one (ctx.step or after ctx.enter_step)")
        return self._current_step

    def _stop_superseded(self, cause: BaseException | None = None) -> None:
        """A fenced write was refused: stop the target, as handed over or as cancelled."""
        row = Execution.objects.filter(pk=self.execution_id).values_list("status", "attempt").first()
        if row is not None and row[0] == ExecutionStatus.RUNNING and row[1] != self.attempt:
            self._set_stop(ExecutionHandedOver(self.attempt))
        else:
            self._set_stop(ExecutionCancelled("Execution was cancelled"))
        assert self._stop_reason is not None
        raise self._stop_reason from cause

    def _record_progress(self, progress: Progress, *, force: bool) -> None:
        with self._record_lock:
            now = time.monotonic()
            if not force and now - self._last_recorded < self._coalesce:
                self._pending = progress
                return
            self._pending = None
            self._write(progress, now)

    def _write(self, progress: Progress, now: float) -> None:
        recorded = event_record(
            execution_id=self.execution_id, event_type=EventType.PROGRESS, progress=progress, attempt=self.fence
        )
        if recorded is None:
            # Someone else ended it (a cancel through the API), or handed it over: stop the target.
            if self.durable:
                self._stop_superseded()
            self._set_stop(ExecutionCancelled("Execution was cancelled"))
            assert self._stop_reason is not None
            raise self._stop_reason
        self._last_recorded = now

    def _flush_due(self) -> None:
        with self._record_lock:
            if self._pending is None:
                return
            now = time.monotonic()
            if now - self._last_recorded >= self._coalesce:
                pending, self._pending = self._pending, None
                with contextlib.suppress(ExecutionInterrupted):
                    self._write(pending, now)

    def _watch(self) -> None:
        """Poll for a cancel, watch the deadline, flush coalesced reports, and beat.

        The heartbeat (``heartbeat_at``, no event) tells the sweepers that this
        run is alive; a run whose heartbeat stops is failed as lost. A failing
        iteration (the database briefly unreachable) is logged and retried: if
        the monitor itself died, the run would be declared lost while alive.
        """
        tick = max(min(self._poll, self._coalesce or self._poll) / 2, 0.01)
        next_poll = next_beat = time.monotonic()
        try:
            while not self._monitor_done.wait(tick):
                try:
                    now = time.monotonic()
                    if self._deadline_passed():
                        self._set_stop(ExecutionTimeout(self.timeout or 0))
                    if now >= next_beat:
                        next_beat = now + self._heartbeat
                        # Fenced: a superseded attempt must not keep its successor's run looking alive.
                        Execution.objects.filter(
                            pk=self.execution_id, status=ExecutionStatus.RUNNING, attempt=self.attempt
                        ).update(heartbeat_at=timezone.now())
                    if now >= next_poll:
                        next_poll = now + self._poll
                        row = Execution.objects.filter(pk=self.execution_id).values_list("status", "attempt").first()
                        if row is None or row[0] in TERMINAL_STATUSES:
                            self._set_stop(ExecutionCancelled("Execution was cancelled"))
                        elif row[1] != self.attempt:
                            self._set_stop(ExecutionHandedOver(self.attempt))
                    if not self._stop.is_set():
                        self._flush_due()
                except Exception:  # a monitor failure must not kill the run
                    logger.exception("progress monitor of %s failed; retrying", self.execution_id)
                    self._monitor_done.wait(1.0)
        finally:
            connection.close()
