"""One process of ``manage.py serve``: the application served on an inherited socket, drained on SIGTERM.

``python -m core.serving.child --fd N [--ready-fd M] config.asgi:application``
serves on the listening socket ``N`` that ``serve`` keeps open
(:class:`core.serving.server.DrainingServer`), and writes one byte to the pipe
``M`` once it accepts: ``serve``'s proof that this process, not an older one on
the same socket, answers. Loading the application (:func:`load_application`)
and serving it (:func:`serve_application`) are apart, so that one loaded
process could fork the others.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from asgiref.compatibility import guarantee_single_callable
from daphne.access import AccessLogGenerator
from daphne.utils import import_by_path
from django.conf import settings

from .server import DrainingServer

#: daphne's own log format (its command line's default).
LOG_FORMAT = "%(asctime)-15s %(levelname)-8s %(message)s"
#: The byte a child writes to its readiness pipe.
READY = b"R"


def load_application(path: str) -> Any:
    """The ASGI application at ``path`` (``module:attribute``), Django set up by importing it."""
    sys.path.insert(0, ".")
    return guarantee_single_callable(import_by_path(path))


def signal_ready(ready_fd: int | None) -> None:
    """Tell ``serve`` this process accepts now: one byte on its pipe, then close it."""
    if ready_fd is not None:
        os.write(ready_fd, READY)
        os.close(ready_fd)


def serve_application(application: Any, fd: int, *, ready_fd: int | None = None) -> None:
    """Serve ``application`` on the listening socket ``fd`` until drained."""
    server = DrainingServer(
        application,
        [f"fd:fileno={fd}"],
        spread=settings.SERVE_DRAIN_SPREAD_SECONDS,
        grace=settings.SERVE_GRACE_SECONDS,
        ready=lambda: signal_ready(ready_fd),
        # daphne's command line logs each request to stdout at its default verbosity.
        action_logger=AccessLogGenerator(sys.stdout),
    )
    server.run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.serving.child", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--ready-fd", type=int, default=None, help="a pipe to write one byte to once accepting")
    parser.add_argument("application", help="the ASGI application, module:attribute")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    serve_application(load_application(args.application), args.fd, ready_fd=args.ready_fd)


if __name__ == "__main__":
    main()
