"""Signals of the domain, for the edges that react to it.

``execution_created`` is sent once per submitted execution, after the
transaction that stored it has committed and its task was handed to the
broker (never for a submit refused with 503); receiver: the streaming edge
tells the sockets that follow many executions (``progress.broadcast``).

``event_recorded`` is sent once per event, after the transaction that stored it
has committed (never for an event that rolled back). Receivers: the streaming
edge publishes the frame to the execution's group (``progress.broadcast``), and
terminal events queue the webhook (``executions.tasks``). It is sent with
``send_robust``: a receiver that fails is logged and never undoes the event,
nor keeps the other receivers from running.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

#: ``sender`` is ``RecordedEvent``; the keyword argument ``event`` is the RecordedEvent.
event_recorded = Signal()

#: ``sender`` is ``CreatedExecution``; the keyword argument ``execution`` is the CreatedExecution.
execution_created = Signal()


def send_robust_logged(signal: Signal, about: str, *, sender: type, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; log each one that raised, naming it and ``about``."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "%s of %s failed: %r", getattr(receiver, "__qualname__", receiver), about, result, exc_info=result
            )
