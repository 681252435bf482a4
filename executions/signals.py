"""Signals of the domain, for the edges that react to it.

``execution_created`` is sent once per submitted execution, after the
transaction that stored it has committed and its task was handed to the
broker (never for a submit refused with 503); receiver: the streaming edge
tells the execution feed's sockets (``progress.broadcast``).

``event_recorded`` is sent once per event, after the transaction that stored it
has committed (never for an event that rolled back). Receivers: the streaming
edge publishes the frame to the execution's group (``progress.broadcast``), and
terminal events queue the webhook (``executions.tasks``). It is sent with
``send_robust``: a receiver that fails is logged and never undoes the event,
nor keeps the other receivers from running.
"""

from __future__ import annotations

from django.dispatch import Signal

#: ``sender`` is ``RecordedEvent``; the keyword argument ``event`` is the RecordedEvent.
event_recorded = Signal()

#: ``sender`` is ``CreatedExecution``; the keyword argument ``execution`` is the CreatedExecution.
execution_created = Signal()
