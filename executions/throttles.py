"""Throttles: per user on the writes that cost work (submit, cancel), per
client address on password checks (the token endpoint, the login pages).

The rate is read from settings on every request (DRF's own throttles freeze it
at import), so ``THROTTLE_SUBMIT_RATE`` / ``THROTTLE_CANCEL_RATE`` and test
overrides take effect. Counters live in the shared cache (Redis), so every
daphne process counts the same requests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import UserRateThrottle


class _WriteThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        return settings.EXECUTION_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return super().allow_request(request, view)


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

    Only failures count (``record_failure``), so people behind one address
    who type their password right are never held up; once the limit is
    reached every attempt is refused, the right password included, until
    the window has passed.
    """

    scope = "login"

    def prepare(self, request: Any) -> bool:
        """Load the history; False when this address may not try now."""
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, None)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) < self.num_requests

    def record_failure(self) -> None:
        if self.rate is not None:
            self.throttle_success()  # DRF's name for "count this one"
