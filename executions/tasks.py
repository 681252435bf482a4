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
from .frames import ErrorInfo
from .handover import execution_lost
from .models import Execution
from .runner import execution_fail, execution_run
from .signals import event_recorded
from .webhooks import backoff_seconds, webhook_deliver

logger = logging.getLogger(__name__)


class ExecutionRequest(Request):
    """Runs in the main worker process: when its child process was killed (hard
    time limit, out of memory), marks the execution failed, or hands a durable
    one over (``executions.handover``), so a row never stays ``running`` after
    its process is gone. Only the attempt the message was for is touched."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft:
            return
        error: ErrorInfo = {
            "type": "TimeoutError",
            "message": f"Execution exceeded its hard time limit of {timeout:g} s",
            "details": {"worker": self.hostname},
        }
        try:
            run = self._run()
            if run is not None:
                execution_fail(execution_id=run[0], error=error, attempt=run[1])
        except Exception:  # the sweeper fails it later if this write cannot be made
            logger.exception("could not mark %s failed", self.args)

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> None:
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        # billiard hands the exception over wrapped (ExceptionWithTraceback);
        # Celery itself unwraps it with ``.exc``.
        exception = getattr(exc_info.exception, "exc", exc_info.exception)
        if not isinstance(exception, WorkerLostError):
            return
        error: ErrorInfo = {
            "type": "WorkerLostError",
            "message": f"The worker process running this execution died: {exception}",
            "details": {"worker": self.hostname},
        }
        try:
            run = self._run()
            if run is not None:
                execution_lost(execution_id=run[0], attempt=run[1], worker=self.hostname or "", error=error)
        except Exception:  # the sweeper acts later if this write cannot be made
            logger.exception("could not mark %s failed", self.args)

    def _run(self) -> tuple[str, int] | None:
        """The execution and attempt the message was queued for (a message that names none: the current one)."""
        execution_id = (self.args or [None])[0]
        if not execution_id:
            return None
        attempt = (self.kwargs or {}).get("attempt")
        if attempt is None:
            attempt = Execution.objects.filter(pk=execution_id).values_list("attempt", flat=True).first()
        return None if attempt is None else (execution_id, attempt)


class ExecutionTask(Task):
    """The run task's class: its requests are :class:`ExecutionRequest`."""

    Request = ExecutionRequest


@shared_task(bind=True, base=ExecutionTask, name=RUN_TASK, ignore_result=True)
def run_execution(self: Task, execution_id: str, attempt: int | None = None) -> str | None:
    """Run one execution (the broker's ``RUN_TASK``); returns the status it recorded, or None.

    ``attempt`` is the one the message was queued for (the request's business,
    when the process dies): the run claims whatever the execution needs.
    """
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
