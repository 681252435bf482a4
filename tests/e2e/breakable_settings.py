"""The test settings, failing to load while ``BREAK_SETTINGS_FILE`` names a file that exists.

A ``serve`` started with them (tests/e2e/test_deploy.py) reloads into processes
that cannot start, as after a deploy of broken code: the reload must fail and
leave the old processes serving.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.settings import *  # noqa: F403 - the test settings, unchanged while the file is absent

_BREAK = os.environ.get("BREAK_SETTINGS_FILE")
if _BREAK and Path(_BREAK).exists():
    raise RuntimeError(f"settings broken on purpose: {_BREAK} exists")
