"""The limits of an execution (``executions.limits``): its timeout and the worker's backstops."""

from __future__ import annotations

from django.test import override_settings

from executions.limits import HARD_LIMIT_GRACE_SECONDS, execution_timeout, run_time_limits


def test_the_timeout_is_config_timeout_in_seconds() -> None:
    assert execution_timeout({}) is None
    assert execution_timeout({"timeout": None}) is None
    assert execution_timeout({"timeout": 5}) == 5.0


def test_run_time_limits_are_backstops_behind_the_timeout() -> None:
    with override_settings(EXECUTION_MAX_SECONDS=3600):
        assert run_time_limits({}) == (3600, 3600 + HARD_LIMIT_GRACE_SECONDS)
        assert run_time_limits({"timeout": None}) == (3600, 3600 + HARD_LIMIT_GRACE_SECONDS)
        assert run_time_limits({"timeout": 10}) == (12, 12 + HARD_LIMIT_GRACE_SECONDS)
        assert run_time_limits({"timeout": 99_999}) == (3600, 3600 + HARD_LIMIT_GRACE_SECONDS)


def test_a_later_attempt_gets_what_remains_of_the_time() -> None:
    with override_settings(EXECUTION_MAX_SECONDS=3600):
        assert run_time_limits({"timeout": 10}, elapsed_seconds=4) == (8, 8 + HARD_LIMIT_GRACE_SECONDS)
        assert run_time_limits({}, elapsed_seconds=600) == (3000, 3000 + HARD_LIMIT_GRACE_SECONDS)
        # Past its time: the attempt's own check fails it at once; the backstop stays above zero.
        assert run_time_limits({"timeout": 10}, elapsed_seconds=60) == (2, 2 + HARD_LIMIT_GRACE_SECONDS)
