"""``manage.py serve --host HOST --port PORT [--workers N]``: the production server.

HTTP and WebSocket on one port from N processes (default: one per CPU),
supervised by this one (:mod:`core.serving.supervisor`): SIGTERM drains them
and exits, SIGHUP replaces them by a new generation without refusing a
connection. ``daphne config.asgi:application`` stays the one-process
development server.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.serving.supervisor import default_workers, serve


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSocket on one port from N daphne processes (default: one per CPU). "
        "SIGTERM drains and exits; SIGHUP reloads them without dropping a connection."
    )
    requires_system_checks: list[str] = []  # each daphne child runs Django's start-up checks itself

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000).")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help=f"daphne processes (default: the CPU count, here {default_workers()}).",
        )

    def handle(self, *args: Any, host: str, port: int, workers: int | None, **options: Any) -> None:
        if workers is not None and workers < 1:
            raise CommandError("--workers must be at least 1")
        if not 0 <= port <= 65535:
            raise CommandError("--port must be 0..65535")
        try:
            code = serve(host=host, port=port, workers=workers, grace=settings.SERVE_GRACE_SECONDS)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        if code:
            sys.exit(code)
