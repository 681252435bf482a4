"""WebSocket authentication: ``Authorization: Token <key>`` or the session, and unrouted paths refused.

A token header, when present, decides (as in DRF, where TokenAuthentication
comes first): a bad token is anonymous even if a session cookie is also sent,
and a token socket's session is never read. Lookups run in a pooled thread
(``core.db.read_db``), a token's through the per-process cache
(``core.authentication``); open streams are re-checked against the database
every ``PROGRESS_RECHECK_SECONDS`` (``progress.recheck``). A handshake for a
path no route serves is refused (HTTP 403) before any credentials are read.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser

from core.authentication import cached_token
from core.db import read_db


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of an ``Authorization: Token <key>`` header, '' if malformed, None if absent."""
    for name, value in headers:
        if name.lower() == b"authorization":
            try:
                scheme, _, key = value.decode("latin-1").strip().partition(" ")
            except UnicodeDecodeError:
                return ""
            if scheme.lower() != "token" or not key.strip() or " " in key.strip():
                return ""
            return key.strip()
    return None


def session_key_of(scope: dict[str, Any]) -> str | None:
    """The key of the session a socket authenticated with (None for a token socket):
    the periodic re-check (progress/recheck.py) verifies it is still logged in."""
    session = scope.get("session")
    return getattr(session, "session_key", None) if session is not None else None


def user_for_token(key: str) -> Any:
    """The active user of the token ``key``, or an anonymous one."""
    token = cached_token(key)
    return token.user if token is not None else AnonymousUser()


def user_for_session(session: Any) -> Any:
    """The session's user, verified as Django verifies it for an HTTP request (``get_user``)."""
    return get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]  # get_user reads only .session


class TokenOrSessionMiddleware(BaseMiddleware):
    """``scope["user"]``: from the token header if there is one, else from the session."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        key = token_from_headers(scope.get("headers", []))
        if key is not None:
            scope["user"] = await read_db(user_for_token)(key) if key else AnonymousUser()
            scope["auth_token"] = key or None
        elif session_key := scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME):
            # The session is only read (never saved from a socket): no need for
            # Channels' SessionMiddleware, which wraps every frame's send.
            scope["session"] = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
            scope["user"] = await read_db(user_for_session)(scope["session"])
        else:
            scope["user"] = AnonymousUser()
        return await super().__call__(scope, receive, send)


class RefuseUnroutedPaths:
    """Refuse the handshake of a path that none of ``router``'s routes match.

    Channels' router would raise ``ValueError`` instead, which daphne logs as a
    traceback and answers with a 500 (``/api/v1/executions/a%2Fb/progress/ws``
    decodes to a path with one segment too many).
    """

    def __init__(self, application: Any, router: Any) -> None:
        self.application = application
        self.routes = list(getattr(router, "routes", None) or [])

    def routable(self, scope: dict[str, Any]) -> bool:
        if not self.routes:  # not a URLRouter: let it decide
            return True
        # The same normalisation as channels.routing.URLRouter.
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path:
            if not path.startswith(root_path):
                return False
            path = path[len(root_path):]
        path = path.lstrip("/")
        return any(route.pattern.match(path) for route in self.routes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not self.routable(scope):
            message = await receive()
            if message.get("type") == "websocket.connect":
                await send({"type": "websocket.close"})  # before accepting: HTTP 403
            return None
        return await self.application(scope, receive, send)


def TokenOrSessionAuthMiddleware(inner: Any) -> Any:  # noqa: N802 - reads like the stacks it wraps
    return RefuseUnroutedPaths(CookieMiddleware(TokenOrSessionMiddleware(inner)), router=inner)
