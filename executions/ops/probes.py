"""What ``/readyz`` checks: can this process serve executions right now?

Each probe answers True or False and never raises: a load balancer calls
``/readyz`` every few seconds, so each check is one cheap round trip with a
short timeout (``READINESS_TIMEOUT_SECONDS``), and a failure is logged here
(the reason stays in the server's log; the response says only pass or fail).
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import connection

from executions.maintenance import workers_alive

logger = logging.getLogger(__name__)

#: One client (and connection pool) per Redis URL: a probe every few seconds
#: should not open a new TCP connection each time.
_redis_clients: dict[tuple[str, float], redis.Redis] = {}
_redis_clients_guard = threading.Lock()


def _redis_client(url: str, timeout: float) -> redis.Redis:
    with _redis_clients_guard:
        client = _redis_clients.get((url, timeout))
        if client is None:
            client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            _redis_clients[(url, timeout)] = client
        return client


def database_ready() -> bool:
    """The database answers a trivial query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready", never a 500
        logger.warning("readiness: database check failed: %r", exc)
        return False
    return True


def redis_ready() -> bool:
    """Redis (channel layer, cache) and a Redis broker, if it is another server, answer PING."""
    urls = [settings.REDIS_URL]
    broker = settings.CELERY_BROKER_URL or ""
    if broker.startswith(("redis://", "rediss://")) and broker != settings.REDIS_URL:
        urls.append(broker)
    timeout = settings.READINESS_TIMEOUT_SECONDS
    for url in urls:
        try:
            if not _redis_client(url, timeout).ping():
                return False
        except Exception as exc:  # noqa: BLE001 - as above
            logger.warning("readiness: Redis check failed: %r", exc)
            return False
    return True


def workers_ready() -> bool:
    """At least one Celery worker beat within the heartbeat window (``WorkerBeat``)."""
    try:
        return workers_alive() > 0
    except Exception as exc:  # noqa: BLE001 - as above
        logger.warning("readiness: worker check failed: %r", exc)
        return False


#: The checks by the name the response gives them, in that order.
READINESS_CHECKS = {"database": database_ready, "redis": redis_ready, "workers": workers_ready}


def readiness() -> dict[str, bool]:
    """Every check's result by name (all run, so the body names each failing one)."""
    return {name: check() for name, check in READINESS_CHECKS.items()}
