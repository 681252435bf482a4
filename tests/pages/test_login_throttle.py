"""Failed logins on both login pages are throttled per client address."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.test import Client

from core.throttles import FailedLoginThrottle
from tests.helpers import PASSWORD

LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def login_rate(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A private counter store per test (locmem caches of one name share their data).
    monkeypatch.setattr(FailedLoginThrottle, "cache", LocMemCache(f"test-login-throttle-{uuid.uuid4()}", {}))
    settings.EXECUTION_THROTTLE_RATES = {"submit": None, "cancel": None, "token": None, "login": "3/min"}


def attempt(client: Client, path: str, username: str, password: str) -> Any:
    return client.post(path, {"username": username, "password": password})


@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_after_three_failures_even_the_right_password_waits(path: str, staff: Any, login_rate: None) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert [attempt(client, path, "staff", f"guess-{n}").status_code for n in range(3)] == [200, 200, 200]
    response = attempt(client, path, "staff", PASSWORD)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get(path).status_code == 200, "the form itself stays reachable"


def test_successful_logins_do_not_count(alice: Any, login_rate: None) -> None:
    for _ in range(5):
        client = Client(REMOTE_ADDR="203.0.113.7")
        assert attempt(client, "/accounts/login/", "alice", PASSWORD).status_code == 302


def test_failures_count_per_address_across_both_pages(alice: Any, login_rate: None) -> None:
    guesser = Client(REMOTE_ADDR="203.0.113.7")
    attempt(guesser, "/accounts/login/", "alice", "a")
    attempt(guesser, "/admin/login/", "alice", "b")
    attempt(guesser, "/accounts/login/", "bob", "c")
    assert attempt(guesser, "/admin/login/", "anyone", "d").status_code == 429
    honest = Client(REMOTE_ADDR="198.51.100.20")
    assert attempt(honest, "/accounts/login/", "alice", PASSWORD).status_code == 302


def test_without_a_rate_nothing_is_throttled(alice: Any) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert {attempt(client, "/accounts/login/", "alice", f"guess-{n}").status_code for n in range(15)} == {200}
