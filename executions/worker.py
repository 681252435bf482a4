"""What every Celery worker runs besides tasks, so that there is no extra process to deploy.

* :class:`MaintenanceStep`, a bootstep (``config/celery.py``): a thread that beats and
  sweeps (``executions.maintenance``) at start, then every ``WORKER_SWEEP_SECONDS``.
* A warm shutdown gives running executions ``WORKER_SHUTDOWN_GRACE_SECONDS``, then fails them
  (hands durable ones over to another worker).
* A fork of the main process waits while these threads use the database (:func:`install_fork_guard`).
* A pool child stopped by SIGTERM records ``WorkerShutdown`` for its run, or hands it over (``executions.runner``).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any

from celery import bootsteps
from celery.signals import worker_process_shutdown, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from core import metrics

from .maintenance import (
    executions_fail_lost,
    executions_fail_on_shutdown,
    executions_prune,
    executions_requeue_lost,
    worker_beat,
)

logger = logging.getLogger(__name__)

#: Held by this process's own threads (the sweep, the shutdown grace) while they
#: use the database, and by a fork of this process. SQLite keeps the
#: bookkeeping of its locks in process memory: a pool process forked while
#: another thread holds a write transaction inherits that state and can never
#: write ("database is locked" on every claim it tries).
database_in_use = threading.Lock()


@functools.cache
def install_fork_guard() -> None:
    """Make every later fork of this process wait for :data:`database_in_use` (once per process)."""
    os.register_at_fork(
        before=database_in_use.acquire,
        after_in_parent=database_in_use.release,
        after_in_child=database_in_use.release,
    )


class Maintenance:
    """The sweeper loop of one worker (see the module docstring)."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.started_at = timezone.now()
        self.stopped = threading.Event()
        self.last_prune = float("-inf")
        self.thread = threading.Thread(target=self.run, name="executions-maintenance", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while True:
            self.tick()
            if self.stopped.wait(settings.WORKER_SWEEP_SECONDS):
                return

    def tick(self) -> None:
        """One sweep; a failure (database or broker briefly down) is logged and retried next time."""
        with database_in_use:
            try:
                worker_beat(hostname=self.hostname, pid=os.getpid(), started_at=self.started_at)
                executions_fail_lost(swept_by=self.hostname)
                executions_requeue_lost()
                if time.monotonic() - self.last_prune >= settings.EXECUTION_PRUNE_INTERVAL_SECONDS:
                    self.last_prune = time.monotonic()
                    pruned = executions_prune()
                    if pruned:
                        days = settings.EXECUTION_RETENTION_DAYS
                        logger.info("pruned %d executions older than %g days", pruned, days)
            except Exception:  # the loop must outlive a database or broker outage
                logger.exception(
                    "maintenance sweep of %s failed; retrying in %g s", self.hostname, settings.WORKER_SWEEP_SECONDS
                )
            finally:
                close_old_connections()


class MaintenanceStep(bootsteps.StartStopStep):
    """Runs :class:`Maintenance` in every worker's main process."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.maintenance: Maintenance | None = None

    def start(self, worker: Any) -> None:
        install_fork_guard()
        self.maintenance = Maintenance(worker.hostname)
        self.maintenance.start()

    def stop(self, worker: Any) -> None:
        if self.maintenance is not None:
            self.maintenance.stop()


def _fail_running_after_grace(hostname: str, grace: float) -> None:
    time.sleep(grace)
    with database_in_use:
        try:
            ended = executions_fail_on_shutdown(worker=hostname, grace_seconds=grace)
            if ended:
                logger.warning("shutdown grace of %g s ended: failed or handed over %s", grace, ", ".join(ended))
        finally:
            connection.close()


@worker_shutting_down.connect(dispatch_uid="executions.shutdown_grace")
def start_shutdown_grace(sender: str, sig: str, how: str, exitcode: int, **kwargs: Any) -> None:
    """Main process, warm shutdown: the grace clock starts (runs in a signal handler: only start a thread)."""
    if how != "Warm":
        return
    grace = settings.WORKER_SHUTDOWN_GRACE_SECONDS
    logger.warning("%s received %s: running executions get %g s to finish", sender, sig, grace)
    threading.Thread(target=_fail_running_after_grace, args=(sender, grace), name="shutdown-grace", daemon=True).start()


@worker_process_shutdown.connect(dispatch_uid="executions.metrics_child_exit")
def forget_child_metrics(pid: int, exitcode: int, **kwargs: Any) -> None:
    """Pool child exiting: drop its live gauges from the shared metrics files.

    Children leave through ``os._exit``, so the interpreter-exit hook of
    ``core.metrics`` never runs in them (prometheus-client's multiprocess mode
    asks for ``mark_process_dead`` here).
    """
    metrics.process_exited(pid)
