"""Page tests run through Django's test client, logged in through the login backend."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.helpers import logged_in


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
