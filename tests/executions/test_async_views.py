"""The async GETs of one execution (executions/api/async_views.py) answer as the DRF views do.

Each case is asked twice: once with the token cache empty (the DRF view
answers, and fills the cache) and once with it filled (the async path
answers). Status, body and headers must be the same. The async path reads
in a pooled thread, so the data is committed (``transactional_db``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from core import authentication
from executions.api import async_views
from tests.helpers import PASSWORD

pytestmark = pytest.mark.usefixtures("transactional_db")

#: Headers that differ between any two answers, or that only one middleware run sets.
VOLATILE = {"date"}


@pytest.fixture(autouse=True)
def empty_token_cache() -> None:
    authentication._tokens.clear()


@pytest.fixture
def fast_answers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every answer the async path built itself."""
    answers: list[Any] = []
    build = async_views.json_response

    def spy(data: Any) -> Any:
        answers.append(data)
        return build(data)

    monkeypatch.setattr(async_views, "json_response", spy)
    return answers


def user_with_token(username: str, **extra: Any) -> tuple[Any, str]:
    user = get_user_model().objects.create_user(username, password=PASSWORD, **extra)
    return user, Token.objects.create(user=user).key


def get(path: str, key: str | None, **headers: str) -> Any:
    if key is not None:
        headers["Authorization"] = f"Token {key}"
    return Client(headers=headers).get(path)


def same_answer(first: Any, second: Any) -> None:
    assert first.status_code == second.status_code
    assert first.content == second.content
    assert {k.lower(): v for k, v in first.headers.items() if k.lower() not in VOLATILE} == {
        k.lower(): v for k, v in second.headers.items() if k.lower() not in VOLATILE
    }


@pytest.mark.parametrize("suffix", ["", "/progress", "/", "/progress/"])
@pytest.mark.parametrize("status", ["pending", "running", "completed", "failed", "cancelled"])
def test_the_async_answer_is_the_drf_answer(
    make_execution: Any, fast_answers: list[Any], status: str, suffix: str
) -> None:
    owner, key = user_with_token("alice")
    execution = make_execution(owner, status)
    path = f"/api/v1/executions/{execution.id}{suffix}"

    by_drf = get(path, key)
    assert fast_answers == []
    by_async_path = get(path, key)
    assert len(fast_answers) == 1

    same_answer(by_drf, by_async_path)
    expected = 204 if suffix.startswith("/progress") and status == "pending" else 200
    assert by_async_path.status_code == expected


@pytest.mark.parametrize("staff", [False, True])
def test_someone_elses_execution_is_left_to_drf(make_execution: Any, fast_answers: list[Any], staff: bool) -> None:
    owner, _ = user_with_token("alice")
    _, key = user_with_token("mallory", is_staff=staff)
    execution = make_execution(owner, "running")
    path = f"/api/v1/executions/{execution.id}/progress"

    first, second = get(path, key), get(path, key)
    same_answer(first, second)
    if staff:
        assert second.status_code == 200 and len(fast_answers) == 1
    else:
        assert second.status_code == 404 and fast_answers == []
        assert second.json() == {"detail": f"Execution '{execution.id}' not found"}


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("?format=json", {}, 200),
        ("?x=1", {}, 200),
        ("", {"Accept": "image/png"}, 406),
        ("", {"Accept": "application/json; indent=4"}, 200),
    ],
)
def test_unusual_requests_are_left_to_drf(
    make_execution: Any, fast_answers: list[Any], query: str, headers: dict[str, str], status: int
) -> None:
    owner, key = user_with_token("alice")
    execution = make_execution(owner, "running")
    get(f"/api/v1/executions/{execution.id}", key)  # fills the token cache
    answer = get(f"/api/v1/executions/{execution.id}{query}", key, **headers)
    assert answer.status_code == status
    assert fast_answers == []


def test_a_deleted_token_loses_access_at_once(make_execution: Any, fast_answers: list[Any]) -> None:
    owner, key = user_with_token("alice")
    execution = make_execution(owner, "running")
    path = f"/api/v1/executions/{execution.id}/progress"
    assert get(path, key).status_code == 200
    assert get(path, key).status_code == 200 and len(fast_answers) == 1

    Token.objects.filter(key=key).delete()
    answer = get(path, key)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Invalid token."}


def test_a_deactivated_user_loses_access_at_once_when_saved(make_execution: Any) -> None:
    owner, key = user_with_token("alice")
    execution = make_execution(owner, "running")
    path = f"/api/v1/executions/{execution.id}"
    assert get(path, key).status_code == 200
    owner.is_active = False
    owner.save()
    assert get(path, key).status_code == 401


def test_without_a_signal_the_cache_forgets_within_auth_cache_seconds(
    make_execution: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """A change made elsewhere (another process, or ``update()``) is seen once the entry expires."""
    settings.AUTH_CACHE_SECONDS = 2
    owner, key = user_with_token("alice")
    execution = make_execution(owner, "running")
    path = f"/api/v1/executions/{execution.id}"
    assert get(path, key).status_code == 200
    get_user_model().objects.filter(pk=owner.pk).update(is_active=False)
    assert get(path, key).status_code == 200  # cached, at most AUTH_CACHE_SECONDS old

    now = authentication.time.monotonic()
    monkeypatch.setattr(authentication.time, "monotonic", lambda: now + 2.01)
    assert get(path, key).status_code == 401


def test_the_cache_never_outlives_the_recheck_interval(settings: Any) -> None:
    settings.AUTH_CACHE_SECONDS = 60
    settings.PROGRESS_RECHECK_SECONDS = 4
    assert authentication.cache_seconds() == 4
