"""Page tests run through Django's test client; nothing reaches the Celery broker."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.conftest import PASSWORD
from tests.offline import offline  # noqa: F401 - an autouse fixture


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
def admin_page(superuser: Any) -> Client:
    return logged_in(superuser)
