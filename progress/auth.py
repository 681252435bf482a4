"""WebSocket authentication: ``Authorization: Token <key>`` or the session.

A token header, when present, decides (as in DRF, where TokenAuthentication
comes first): a bad token is anonymous even if a session cookie is also sent.

A handshake for a path that no route serves is refused (HTTP 403, daphne's
only refusal) before any credentials are looked up; Channels' router would
raise ``ValueError`` instead, which daphne logs as a traceback and answers with
a 500 (``/api/v1/executions/a%2Fb/progress/ws`` decodes to a path with one
segment too many).
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


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


@database_sync_to_async
def user_for_token(key: str) -> Any:
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenHeaderMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = token_from_headers(scope.get("headers", []))
        if key is not None:
            scope = dict(scope)
            scope["user"] = await user_for_token(key) if key else AnonymousUser()
            scope["auth_token"] = key or None
        return await super().__call__(scope, receive, send)


class RefuseUnroutedPaths:
    """Refuse the handshake of a path that none of ``router``'s routes match."""

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
    return RefuseUnroutedPaths(AuthMiddlewareStack(TokenHeaderMiddleware(inner)), router=inner)
