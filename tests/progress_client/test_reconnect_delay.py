"""How long ``watch`` waits before it connects again (no server needed)."""

from __future__ import annotations

from progress_client.client import FIRST_RECONNECT_MAX_SECONDS, backoff_delay, reconnect_delay


def test_after_a_stream_that_delivered_the_first_attempt_comes_at_a_random_moment_within_a_second() -> None:
    delays = [reconnect_delay(0) for _ in range(2000)]
    assert all(0.0 <= delay <= FIRST_RECONNECT_MAX_SECONDS for delay in delays)
    # Spread over the whole second, so that a restarting server's clients do not come back at once.
    tenths = {int(delay * 10) for delay in delays}
    assert tenths == set(range(10))


def test_after_failed_attempts_it_backs_off() -> None:
    for failures in (1, 3, 8):
        low, high = 0.5 * min(5.0, 0.25 * 2**failures), min(5.0, 0.25 * 2**failures)
        assert all(low <= reconnect_delay(failures) <= high for _ in range(200))
        assert all(low <= backoff_delay(failures) <= high for _ in range(200))
