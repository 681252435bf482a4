"""Celery tasks: each fetches by id and calls one service; the logic lives in ``runner`` and ``webhooks``.

The run task's name is the broker's ``RUN_TASK``: the domain queues it by
name and never imports this module. :class:`ExecutionRequest` runs in the
worker's main process, so it can mark a run failed whose pool process died.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import Task, shared_task
from celery.worker.request import Request
from django.dispatch import receiver

from .broker import RUN_TASK
from .events import RecordedEvent
from .runner import execution_fail, execution_run
from .signals import event_recorded
from .webhooks import backoff_seconds, webhook_deliver

logger = logging.getLogger(__name__)


class ExecutionRequest(Request):
    """Runs in the main worker process: marks the execution failed when its
    child process was killed (hard time limit, out of memory), so a row never
    stays ``running`` after its process is gone."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft:
            self._fail("TimeoutError", f"Execution exceeded its hard time limit of {timeout:g} s")

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> None:
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        # billiard hands the exception over wrapped (ExceptionWithTraceback);
        # Celery itself unwraps it with ``.exc``.
        exception = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exception, WorkerLostError):
            self._fail("WorkerLostError", f"The worker process running this execution died: {exception}")

    def _fail(self, error_type: str, message: str) -> None:
        execution_id = (self.args or [None])[0]
        if execution_id:
            try:
                execution_fail(
                    execution_id=execution_id,
                    error={"type": error_type, "message": message, "details": {"worker": self.hostname}},
                )
            except Exception:  # the sweeper fails it later if this write cannot be made
                logger.exception("could not mark %s failed", execution_id)


class ExecutionTask(Task):
    """The run task's class: its requests are :class:`ExecutionRequest`."""

    Request = ExecutionRequest


@shared_task(bind=True, base=ExecutionTask, name=RUN_TASK, ignore_result=True)
def run_execution(self: Task, execution_id: str) -> str | None:
    """Run one execution (the broker's ``RUN_TASK``); returns the status it recorded, or None."""
    return execution_run(execution_id=execution_id, worker=self.request.hostname or "")


@shared_task(bind=True, name="executions.deliver_webhook", ignore_result=True, max_retries=5)
def deliver_webhook(self: Task, execution_id: str) -> None:
    """POST the terminal event; retried with exponential backoff (2, 4, 8, 16, 32 s)."""
    done = webhook_deliver(execution_id=execution_id, attempt=self.request.retries + 1)
    if not done and self.request.retries < self.max_retries:
        raise self.retry(countdown=backoff_seconds(self.request.retries + 1))


@receiver(event_recorded, dispatch_uid="executions.queue_webhook")
def queue_webhook(sender: type[RecordedEvent], *, event: RecordedEvent, **kwargs: Any) -> None:
    """A terminal event of an execution with a ``callback_url`` queues its delivery."""
    if event.is_terminal and event.callback_url:
        deliver_webhook.delay(event.execution_id)
