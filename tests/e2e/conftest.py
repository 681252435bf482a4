"""End-to-end tests: the real stack (``live_stack`` in tests/conftest.py) over sockets.

Every test in this directory is marked ``e2e``, so ``-m "not e2e"`` skips them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)
