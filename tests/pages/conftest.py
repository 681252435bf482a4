"""Page tests run through Django's test client; nothing reaches the Celery broker."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def _no_broker(task_queue: Any) -> Any:
    return task_queue


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Every test here creates users and logs in: a deliberately slow hasher would dominate."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def logged_in(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


@pytest.fixture
def alice_page(alice: Any) -> Client:
    return logged_in(alice)


@pytest.fixture
def bob_page(bob: Any) -> Client:
    return logged_in(bob)


@pytest.fixture
def staff_page(staff: Any) -> Client:
    return logged_in(staff)


@pytest.fixture
def superuser(db: None, django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", email="root@example.com", password=PASSWORD)


@pytest.fixture
def admin_page(superuser: Any) -> Client:
    return logged_in(superuser)
