"""Running an example as its docstring tells a user to (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_example(
    *command: str, url: str, token: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """From the repository root, with PROGRESS_URL and PROGRESS_TOKEN set; ``command``
    starts with ``-m`` (a module of ``examples``), a ``.py`` file (run by this Python,
    the virtualenv's) or a shell script (run by bash)."""
    python = command[0] == "-m" or command[0].endswith(".py")
    argv = [sys.executable, *command] if python else ["bash", *command]
    environment = {**os.environ, "PROGRESS_URL": url, "PROGRESS_TOKEN": token, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run(
        argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams and the exit code, for an assertion's message."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
