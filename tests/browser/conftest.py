"""Browser tests: headless Chromium, driven by Playwright, against the real stack.

The stack is the end-to-end tests' ``live_stack`` (daphne + a Celery worker +
Redis, sharing the file SQLite test database; see ``tests/stack.py``): one for
the whole session, so two never run side by side.

Chromium is the system's (``/usr/bin/chromium``, or ``CHROMIUM_PATH``); nothing
is downloaded (``playwright install`` is never needed). Without it the tests
skip with the reason, except under ``CI=true``, where they must run and fail
instead.

Playwright's sync API runs an asyncio loop in the test thread, which makes
Django refuse ORM calls ("cannot call this from an async context"). The tests
only touch the ORM from this thread while nothing else is running in it, so
``DJANGO_ALLOW_ASYNC_UNSAFE`` is set while the browser is up -- after the
servers have started, so they never inherit it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stack import LiveStack

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = browser_unavailable()
    for item in items:
        if BROWSER_DIR not in Path(item.path).resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.e2e)
        if problem and not in_ci():
            reason = f"browser tests skipped: {problem}; with CI=true they run and fail instead"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="package")
def chromium(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The browser, launched once for the package (the servers are started first)."""
    problem = browser_unavailable()
    if problem:  # only reached under CI=true: locally these tests are skipped
        pytest.fail(f"CI=true but the browser tests cannot run: {problem}")
    request.getfixturevalue("live_stack")
    expect.set_options(timeout=TIMEOUT_MS)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Account:
    user: Any
    username: str
    password: str


def _account(django_user_model: Any, **extra: Any) -> Account:
    username, password = f"web-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    manager = django_user_model.objects
    creator = manager.create_superuser if extra.pop("superuser", False) else manager.create_user
    user = creator(username=username, password=password, **extra)
    return Account(user, username, password)


@pytest.fixture
def account(transactional_db: None, django_user_model: Any, chromium: Any) -> Account:
    """A committed user with a known password (the servers check it at login)."""
    return _account(django_user_model)


@pytest.fixture
def admin_account(transactional_db: None, django_user_model: Any, chromium: Any) -> Account:
    return _account(django_user_model, superuser=True, email="admin@example.com")


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"


@pytest.fixture
def new_page(chromium: Any, live_stack: LiveStack, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``new_page(viewport=DESKTOP, javascript=True)``: a page in a fresh context.

    Each page is screenshotted (full page) when the test ends, pass or fail,
    into ``screenshots/<test>[-<n>].png``.
    """
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP, javascript: bool = True) -> Any:
        context = chromium.new_context(base_url=live_stack.http_url, viewport=viewport, java_script_enabled=javascript)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield make
    for number, page in enumerate(pages):
        suffix = "" if number == 0 else f"-{number + 1}"
        with contextlib.suppress(Exception):  # a screenshot must not hide the test's own outcome
            page.screenshot(path=screenshot_path(request.node.name + suffix), full_page=True)
    for context in contexts:
        context.close()


def log_in(page: Any, account: Account, path: str = "/") -> None:
    """Log in through the login form and land on ``path``."""
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


@pytest.fixture
def user_page(new_page: Callable[..., Any], account: Account) -> Any:
    """A desktop page logged in as ``account``, on the list page."""
    page = new_page()
    log_in(page, account)
    return page
