"""The per-process re-check of open sockets (progress/resync.py): its answers, and its cost."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from executions.models import Execution
from progress.resync import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, Verdict, Watch, verdicts

pytestmark = pytest.mark.django_db


def watcher(username: str, execution_seq: int = 3, **extra: Any) -> tuple[Any, str, Execution]:
    user = get_user_model().objects.create_user(username, password=None, **extra)
    key = Token.objects.create(user=user).key
    execution = Execution.objects.create(owner=user, type="pipeline", target_id="demo_steps", seq=execution_seq)
    return user, key, execution


def test_one_round_costs_the_same_few_queries_for_any_number_of_sockets(django_assert_max_num_queries: Any) -> None:
    watches = []
    for i in range(60):
        user, key, execution = watcher(f"u{i}")
        watches += [Watch(user_pk=user.pk, token_key=key, session_key=None, execution_id=execution.id)] * 5
    with django_assert_max_num_queries(3):
        answers = verdicts(watches)
    assert answers == [Verdict(stored_seq=3)] * 300


def test_each_socket_gets_its_own_verdict() -> None:
    alice, alice_key, alices = watcher("alice", execution_seq=7)
    _, _, bobs = watcher("bob")
    staff, staff_key, _ = watcher("staff", is_staff=True)
    gone, gone_key, gones = watcher("gone")
    Token.objects.filter(key=gone_key).delete()
    inactive, inactive_key, inactives = watcher("inactive")
    get_user_model().objects.filter(pk=inactive.pk).update(is_active=False)

    answers = verdicts(
        [
            Watch(alice.pk, alice_key, None, alices.id),
            Watch(alice.pk, alice_key, None, bobs.id),  # someone else's
            Watch(staff.pk, staff_key, None, bobs.id),  # staff see all
            Watch(gone.pk, gone_key, None, gones.id),
            Watch(inactive.pk, inactive_key, None, inactives.id),
            Watch(alice.pk, alice_key, None, "exec_000000000000"),
            Watch(alice.pk, None, "no-such-session", alices.id),
        ]
    )
    lost = ("Authentication required", CLOSE_UNAUTHENTICATED)
    assert answers == [
        Verdict(stored_seq=7),
        Verdict(lost=(f"Execution '{bobs.id}' not found", CLOSE_NOT_FOUND)),
        Verdict(stored_seq=3),
        Verdict(lost=lost),
        Verdict(lost=lost),
        Verdict(lost=("Execution 'exec_000000000000' not found", CLOSE_NOT_FOUND)),
        Verdict(lost=lost),
    ]
