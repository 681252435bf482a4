"""Throttles: per user on costly writes (submit, cancel), per address on password checks.

The rate is read from settings on every request (DRF's own throttles freeze it
at import), so ``THROTTLE_SUBMIT_RATE`` / ``THROTTLE_CANCEL_RATE`` and test
overrides take effect. Counters live in the shared cache (Redis), so every
server process counts the same requests. While Redis is unreachable they let
requests through (logged): a throttle must not turn an outage into 500s.
"""


from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class _WriteThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        return settings.EXECUTION_THROTTLE_RATES.get(self.scope or "")

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:
            logger.warning("%s throttle unavailable, letting the request through: %r", self.scope, exc)
            self.history = []
            return True


class SubmitThrottle(_WriteThrottle):
    scope = "submit"


class CancelThrottle(_WriteThrottle):
    scope = "cancel"


class TokenThrottle(_WriteThrottle):
    """``POST /auth/token`` per client address: each request checks a password.

    Keyed by address, not by user: the caller is anonymous, and a guesser
    would rotate usernames. Behind a proxy, DRF's ``NUM_PROXIES`` decides
    which ``X-Forwarded-For`` entry is the client.
    """

    scope = "token"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class FailedLoginThrottle(TokenThrottle):
    """Failed logins on the login pages, per client address.

    ``allow_request`` only checks; a failure is counted by ``record_failure``,
    so people behind one address who type their password right are never held
    up. Once the limit is reached every attempt is refused, the right password
    included, until the window has passed.
    """

    scope = "login"

    def throttle_success(self) -> bool:
        return True  # checking does not count

    def record_failure(self) -> None:
        """Count the attempt ``allow_request`` just let through."""
        if self.rate is not None and getattr(self, "key", None) is not None:
            try:
                SimpleRateThrottle.throttle_success(self)
            except (RedisError, OSError) as exc:
                logger.warning("login throttle unavailable, a failure went uncounted: %r", exc)


def retry_after(wait: float | None) -> int:
    """``Retry-After`` seconds for a throttle's ``wait()``: at least 1 (DRF may round to 0)."""
    return max(1, math.ceil(wait or 0))
