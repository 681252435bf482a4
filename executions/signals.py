"""The domain's signals, for the edges that react to it; each is sent after its transaction commits.

``execution_created``: once per submitted execution whose task the broker
took (never for a refused submit); the streaming edge announces it
(``progress.broadcast``). ``event_recorded``: once per event, never for one
that rolled back; the streaming edge publishes its frame, and a terminal one
queues the webhook (``executions.tasks``). Both go through
:func:`send_robust_logged`: a failing receiver is logged, and neither undoes
the event nor keeps the other receivers from running.
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
