"""The per-process re-check of open streams (progress/recheck.py): its answers, and its cost."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from executions.models import Execution
from progress.protocol import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, Refusal
from progress.recheck import StreamAccess, Verdict, verdicts

pytestmark = pytest.mark.django_db


def streamer(username: str, execution_seq: int = 3, **extra: Any) -> tuple[Any, str, Execution]:
    user = get_user_model().objects.create_user(username, password=None, **extra)
    key = Token.objects.create(user=user).key
    execution = Execution.objects.create(owner=user, type="pipeline", target_id="demo_steps", seq=execution_seq)
    return user, key, execution


def test_one_round_costs_the_same_few_queries_for_any_number_of_streams(django_assert_max_num_queries: Any) -> None:
    accesses = []
    for i in range(60):
        user, key, execution = streamer(f"u{i}")
        accesses += [StreamAccess(user_pk=user.pk, token_key=key, session_key=None, execution_id=execution.id)] * 5
    with django_assert_max_num_queries(3):
        answers = verdicts(accesses)
    assert answers == [Verdict(stored_seq=3)] * 300


def test_each_stream_gets_its_own_verdict() -> None:
    alice, alice_key, alices = streamer("alice", execution_seq=7)
    _, _, bobs = streamer("bob")
    staff, staff_key, _ = streamer("staff", is_staff=True)
    gone, gone_key, gones = streamer("gone")
    Token.objects.filter(key=gone_key).delete()
    inactive, inactive_key, inactives = streamer("inactive")
    get_user_model().objects.filter(pk=inactive.pk).update(is_active=False)

    answers = verdicts(
        [
            StreamAccess(alice.pk, alice_key, None, alices.id),
            StreamAccess(alice.pk, alice_key, None, bobs.id),  # someone else's
            StreamAccess(staff.pk, staff_key, None, bobs.id),  # staff see all
            StreamAccess(gone.pk, gone_key, None, gones.id),
            StreamAccess(inactive.pk, inactive_key, None, inactives.id),
            StreamAccess(alice.pk, alice_key, None, "exec_000000000000"),
            StreamAccess(alice.pk, None, "no-such-session", alices.id),
        ]
    )
    lost = Refusal("Authentication required", CLOSE_UNAUTHENTICATED)
    assert answers == [
        Verdict(stored_seq=7),
        Verdict(lost=Refusal(f"Execution '{bobs.id}' not found", CLOSE_NOT_FOUND)),
        Verdict(stored_seq=3),
        Verdict(lost=lost),
        Verdict(lost=lost),
        Verdict(lost=Refusal("Execution 'exec_000000000000' not found", CLOSE_NOT_FOUND)),
        Verdict(lost=lost),
    ]
