"""``POST /auth/token`` is throttled per client address: each request checks a password."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.test import APIClient

from core.throttles import TokenThrottle
from tests.helpers import PASSWORD

TOKEN_URL = "/api/v1/auth/token"


@pytest.fixture
def token_rate(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A private counter store per test (locmem caches of one name share their data).
    monkeypatch.setattr(TokenThrottle, "cache", LocMemCache(f"test-token-throttle-{uuid.uuid4()}", {}))
    settings.EXECUTION_THROTTLE_RATES = {"submit": None, "cancel": None, "token": "3/min"}


def test_password_guessing_is_throttled_per_address(alice: Any, token_rate: None) -> None:
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    guesses = [client.post(TOKEN_URL, {"username": "alice", "password": f"guess-{n}"}, format="json") for n in range(3)]
    assert [r.status_code for r in guesses] == [400, 400, 400]
    # Rotating usernames does not help, and neither does the right password now.
    for username, password in (("bob", "x"), ("alice", PASSWORD)):
        response = client.post(TOKEN_URL, {"username": username, "password": password}, format="json")
        assert response.status_code == 429
        assert int(response["Retry-After"]) > 0
        assert "throttled" in response.json()["detail"].lower()


def test_another_address_is_not_affected(alice: Any, token_rate: None) -> None:
    guesser = APIClient(REMOTE_ADDR="203.0.113.7")
    for n in range(4):
        guesser.post(TOKEN_URL, {"username": "alice", "password": f"guess-{n}"}, format="json")
    honest = APIClient(REMOTE_ADDR="198.51.100.20")
    response = honest.post(TOKEN_URL, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert len(response.json()["token"]) == 40
