"""The broker: the one module of the domain that knows Celery and kombu.

It queues the run of an execution by the task's name (the task itself lives
in ``executions.tasks``, running code the domain never imports), and it tells
which runs still have a message in the broker, for the sweeper that queues
lost ones again (``executions.maintenance``). A broker that cannot be reached
is the domain's :class:`~executions.errors.BrokerUnavailableError`, never
kombu's own exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import current_app
from kombu.exceptions import OperationalError

from .errors import BrokerUnavailableError

logger = logging.getLogger(__name__)

#: The name of the Celery task that runs one execution (``executions.tasks.run_execution``).
RUN_TASK = "executions.run_execution"


def run_enqueue(*, execution_id: str, attempt: int, soft_time_limit: float, time_limit: float) -> None:
    """Hand the run's task message to the broker; raise :class:`BrokerUnavailableError` if it is unreachable.

    The message names the ``attempt`` it is for, so that the worker whose
    process dies under it can tell that attempt's run from a later one.
    """
    # A signature by name calls the registered task's apply_async when this
    # process knows the task (so task_always_eager applies, which send_task
    # ignores), and send_task when it does not.
    signature = current_app.signature(
        RUN_TASK, args=(execution_id,), kwargs={"attempt": attempt}, soft_time_limit=soft_time_limit,
        time_limit=time_limit,
    )
    try:
        signature.apply_async()
    except (OperationalError, OSError) as exc:
        logger.warning("could not queue %s: %r", execution_id, exc)
        raise BrokerUnavailableError(exc) from exc


def runs_held(execution_ids: Iterable[str]) -> set[str] | None:
    """Which of ``execution_ids`` the broker still holds a run message for; None when it cannot tell.

    Only a Redis broker can be read. Its ready messages are lists (one per
    priority step) named after the queue; messages fetched by a worker but
    not yet acknowledged sit in the ``unacked`` hash. Execution ids are 12
    random hex digits, so a substring test against the raw messages cannot
    confuse two of them. Raises kombu's or redis-py's error when Redis is down.
    """
    held = _redis_messages()
    if held is None:
        return None
    return {execution_id for execution_id in execution_ids if execution_id.encode() in held}


def _redis_messages() -> bytes | None:
    """Every message the Redis broker holds for the run queue, as one blob; None for another broker."""
    app = current_app
    queue = app.conf.task_default_queue
    with app.connection_for_read() as connection:
        if connection.transport.driver_type != "redis":
            return None
        channel = connection.default_channel
        client = channel.client
        keys = [queue] + [f"{queue}{channel.sep}{step}" for step in channel.priority_steps if step]
        pipe = client.pipeline()
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(channel.unacked_key)
        replies = pipe.execute()
    return b"\n".join(item for reply in replies for item in reply)
