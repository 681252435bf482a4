"""``manage.py prune_executions [--dry-run]``: delete ended executions past the retention period.

Workers already do this every ``EXECUTION_PRUNE_INTERVAL_SECONDS``; the command
is for a first clean-up, a cron without workers, or a look with ``--dry-run``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from executions.maintenance import executions_prune


class Command(BaseCommand):
    """``manage.py prune_executions`` (the module docstring)."""

    help = "Delete ended executions older than EXECUTION_RETENTION_DAYS, with their events and webhook attempts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        days = settings.EXECUTION_RETENTION_DAYS
        if days <= 0:
            self.stdout.write("EXECUTION_RETENTION_DAYS is 0: executions are kept forever, nothing to prune.")
            return
        count = executions_prune(dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {count} execution{'s' if count != 1 else ''} ended more than {days:g} days ago.")
