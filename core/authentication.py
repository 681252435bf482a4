"""Token authentication through a short per-process cache of successful lookups.

:class:`CachedTokenAuthentication` gives DRF's answers without a query for a
token seen within ``AUTH_CACHE_SECONDS`` (never more than
``PROGRESS_RECHECK_SECONDS``, the contract's bound for open sockets).
Deleting a token or saving a user drops its entries at once in this process;
other processes, and changes that send no signal (``QuerySet.update``), are
seen when the entry expires. Open streams are re-checked against the
database itself, never this cache. Each caller gets its own copies.
"""


from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

#: Past this many cached tokens the cache starts again empty (one process
#: rarely sees that many clients within a few seconds).
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    token: Token
    expires: float


_tokens: dict[str, _Entry] = {}


def cache_seconds() -> float:
    return min(settings.AUTH_CACHE_SECONDS, settings.PROGRESS_RECHECK_SECONDS)


def cached_token(key: str) -> Token | None:
    """The token ``key`` with its active user, from the cache or the database; None if unusable.

    Only a usable token is cached: one created a moment ago works at once, and
    a bad one costs a query every time. The returned token and its ``user``
    are the caller's own copies, so nothing one request does to them leaks
    into another.
    """
    entry = _tokens.get(key)
    now = time.monotonic()
    if entry is None or entry.expires <= now:
        token = Token.objects.select_related("user").filter(key=key).first()
        if token is None or not token.user.is_active:
            _tokens.pop(key, None)
            return None
        remember(token)
        return _copy(token)
    return _copy(entry.token)


def peek_token(key: str) -> Token | None:
    """The cached token ``key`` (a copy), or None when it is not cached or too old; never a query."""
    entry = _tokens.get(key)
    if entry is None or entry.expires <= time.monotonic():
        return None
    return _copy(entry.token)


def remember(token: Token) -> None:
    """Cache a token (with its user loaded) that was just read from the database."""
    ttl = cache_seconds()
    if ttl <= 0:
        return
    if len(_tokens) >= MAX_ENTRIES:
        _tokens.clear()
    _tokens[token.key] = _Entry(token=token, expires=time.monotonic() + ttl)


def _copy(token: Token) -> Token:
    own = copy.copy(token)
    own.user = copy.copy(token.user)
    return own


def forget_user(user_pk: Any) -> None:
    for key, entry in list(_tokens.items()):
        if entry.token.user_id == user_pk:
            _tokens.pop(key, None)


@receiver(post_delete, sender=Token, dispatch_uid="core.authentication.token_deleted")
def token_deleted(sender: type[Token], instance: Token, **kwargs: Any) -> None:
    _tokens.pop(instance.key, None)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="core.authentication.user_saved")
@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="core.authentication.user_deleted")
def user_changed(sender: type[Any], instance: Any, **kwargs: Any) -> None:
    forget_user(instance.pk)


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's token authentication (same answers, same messages) through the cache."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        cached = peek_token(key)
        if cached is not None:
            return cached.user, cached
        _, token = super().authenticate_credentials(key)  # raises for a bad token or an inactive user
        remember(token)
        token = _copy(token)
        return token.user, token

