"""What the browser tests share besides their fixtures: where Chromium is, the
viewports, the accounts they log in with, logging in and screenshots.

Chromium is the system's (``/usr/bin/chromium``, or ``CHROMIUM_PATH``); nothing
is downloaded (``playwright install`` is never needed).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # browser_unavailable() says so: the tests skip, or fail under CI=true
    expect = sync_playwright = None

BROWSER_DIR = Path(__file__).resolve().parent
SCREENSHOTS = BROWSER_DIR.parents[1] / "screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: Default wait of Playwright's actions and expectations (a run's end, a restart).
TIMEOUT_MS = 30_000


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if sync_playwright is None:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    if chromium_path() is None:
        configured = os.environ.get("CHROMIUM_PATH")
        if configured:
            return f"CHROMIUM_PATH={configured} is not an executable"
        return "no Chromium at /usr/bin/chromium (apt-get install chromium, or set CHROMIUM_PATH)"
    return None


@dataclass
class Account:
    user: Any
    username: str
    password: str


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"


def log_in(page: Any, account: Account, path: str = "/") -> None:
    """Log in through the login form and land on ``path``."""
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
