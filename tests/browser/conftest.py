"""Browser tests: headless Chromium, driven by Playwright, against the real stack.

The stack is the end-to-end tests' ``live_stack`` (daphne + a Celery worker +
Redis, sharing the file SQLite test database; see ``tests/stack.py``): one for
the whole session, so two never run side by side.

Without Chromium (see ``tests/browser/helpers.py``) the tests skip with the
reason, except under ``CI=true``, where they must run and fail instead.

Playwright's sync API runs an asyncio loop in the test thread, which makes
Django refuse ORM calls ("cannot call this from an async context"). The tests
only touch the ORM from this thread while nothing else is running in it, so
``DJANGO_ALLOW_ASYNC_UNSAFE`` is set while the browser is up -- after the
servers have started, so they never inherit it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PASSWORD, make_user, settle_executions
from tests.stack import LiveStack

from .helpers import (
    CHROMIUM_ARGS,
    DESKTOP,
    TIMEOUT_MS,
    Account,
    browser_unavailable,
    chromium_path,
    expect,
    in_ci,
    log_in,
    screenshot_path,
    sync_playwright,
)

BROWSER_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests where they cannot run (markers: tests/conftest.py)."""
    problem = browser_unavailable()
    if not problem or in_ci():
        return
    reason = f"browser tests skipped: {problem}; with CI=true they run and fail instead"
    for item in items:
        if BROWSER_DIR in Path(item.path).resolve().parents:
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


def _account(**extra: Any) -> Account:
    user = make_user(**extra)
    return Account(user, user.get_username(), PASSWORD)


@pytest.fixture
def account(transactional_db: None, chromium: Any) -> Iterator[Account]:
    """A committed user with a known password (the servers check it at login)."""
    yield _account()
    settle_executions()


@pytest.fixture
def admin_account(transactional_db: None, chromium: Any) -> Iterator[Account]:
    yield _account(superuser=True, email="admin@example.com")
    settle_executions()


@pytest.fixture
def new_page(chromium: Any, live_stack: LiveStack, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``new_page(viewport=DESKTOP, javascript=True, **options)``: a page in a fresh context
    (``options`` go to Playwright's ``new_context``, e.g. ``color_scheme="dark"``).

    Each page is screenshotted (full page) when the test ends, pass or fail,
    into ``screenshots/<test>[-<n>].png``.
    """
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP, javascript: bool = True, **options: Any) -> Any:
        context = chromium.new_context(
            base_url=live_stack.http_url, viewport=viewport, java_script_enabled=javascript, **options
        )
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


@pytest.fixture
def user_page(new_page: Callable[..., Any], account: Account) -> Any:
    """A desktop page logged in as ``account``, on the list page."""
    page = new_page()
    log_in(page, account)
    return page
