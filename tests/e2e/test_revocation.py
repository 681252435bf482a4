"""Revoked access closes open sockets on the real daphne, with the default settings.

The consumer re-checks access every ``PROGRESS_RECHECK_SECONDS`` (4 s by
default), so a socket of a user who lost access closes within 5 s of the
change: an ``error`` frame, then the contract's close code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from rest_framework.authtoken.models import Token

from executions.models import Execution
from tests.helpers import create_execution, make_user, session_cookie

from .streams import Stream, open_ws, read_frame

#: The issue's bound: open sockets close within 5 s of losing access.
CLOSE_WITHIN = 5.0


@pytest.fixture
def pending_execution(task_queue: Any) -> Callable[[Any], Execution]:
    """Committed and never queued (``task_queue`` keeps it from the broker): it stays
    pending, so only the revocation can end the stream."""
    return lambda owner: create_execution(owner, inputs={"steps": 1, "step_seconds": 0})


def revoke(how: str, user: Any, token: str, cookie: str) -> None:
    if how == "token deleted":
        Token.objects.filter(key=token).delete()
    elif how == "user deactivated":
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    elif how == "session ended":
        Session.objects.filter(session_key=cookie.split("=", 1)[1]).delete()
    elif how == "password changed":
        fresh = get_user_model().objects.get(pk=user.pk)
        fresh.set_password("a brand new password 123")
        fresh.save()
    elif how == "execution handed to someone else":
        other = make_user(f"{user.username}-other")
        Execution.objects.filter(owner=user).update(owner=other)
    else:  # pragma: no cover
        raise AssertionError(how)


CASES = [
    ("token deleted", "token", "Authentication required", 4401),
    ("user deactivated", "token", "Authentication required", 4401),
    ("user deactivated", "session", "Authentication required", 4401),
    ("session ended", "session", "Authentication required", 4401),
    ("password changed", "session", "Authentication required", 4401),
    ("execution handed to someone else", "token", "Execution '{id}' not found", 4404),
]


@pytest.mark.parametrize(("how", "auth", "message", "code"), CASES, ids=[f"{c[0]} ({c[1]})" for c in CASES])
def test_losing_access_closes_the_socket_within_5_s(
    live_stack: Any,
    api_user: tuple[Any, str],
    pending_execution: Callable[[Any], Execution],
    how: str,
    auth: str,
    message: str,
    code: int,
) -> None:
    user, token = api_user
    execution = pending_execution(user)
    cookie = session_cookie(user)
    if auth == "token":
        ws = open_ws(live_stack.ws_url, execution.id, token)
    else:
        ws = open_ws(live_stack.ws_url, execution.id, headers={"Cookie": cookie})
    stream = Stream()
    with ws:
        assert read_frame(ws, stream)["type"] == "status"
        revoke(how, user, token, cookie)
        revoked_at = time.monotonic()
        frame = read_frame(ws, stream, timeout=CLOSE_WITHIN + 2)
        assert frame == {
            "type": "error", "message": message.format(id=execution.id), "code": code, "timestamp": frame["timestamp"]
        }
        assert read_frame(ws, stream, timeout=CLOSE_WITHIN) is None
        took = time.monotonic() - revoked_at
    assert stream.close_code == code
    assert took < CLOSE_WITHIN, f"closed {took:.2f} s after the revocation"


def test_a_socket_whose_access_is_intact_stays_open_across_rechecks(
    live_stack: Any, api_user: tuple[Any, str], pending_execution: Callable[[Any], Execution]
) -> None:
    """The control: without a revocation, two re-check rounds pass and nothing is sent."""
    user, token = api_user
    execution = pending_execution(user)
    stream = Stream()
    with open_ws(live_stack.ws_url, execution.id, token) as ws:
        assert read_frame(ws, stream)["type"] == "status"
        with pytest.raises(TimeoutError):
            read_frame(ws, stream, timeout=2 * CLOSE_WITHIN)
    assert stream.types == ["status"]
