"""Fixtures for the client's tests: a ``Client`` of the live stack, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from progress_client import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def token(api_user: tuple[Any, str]) -> str:
    return api_user[1]


@pytest.fixture
def client(live_stack: Any, token: str) -> Iterator[Client]:
    with Client(live_stack.http_url, token, poll_interval=0.2) as client:
        yield client


@dataclass
class Cli:
    """``python -m progress_client`` with PROGRESS_URL and PROGRESS_TOKEN set, from the repository root."""

    url: str
    token: str

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PROGRESS_URL": self.url, "PROGRESS_TOKEN": self.token, "NO_COLOR": "1", **extra}

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "progress_client", *args],
            cwd=ROOT, env=self.env(**env), capture_output=True, text=True, timeout=timeout, check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "progress_client", *args],
            cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )

    def shell(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``script`` in bash, with ``pc`` standing for the CLI (as a CI job would write it)."""
        prelude = f'pc() {{ "{sys.executable}" -m progress_client "$@"; }}\n'
        return subprocess.run(
            ["bash", "-c", prelude + script], cwd=ROOT, env=self.env(), capture_output=True, text=True,
            timeout=timeout, check=False,
        )


@pytest.fixture
def cli(live_stack: Any, token: str) -> Cli:
    return Cli(live_stack.http_url, token)
