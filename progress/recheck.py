"""The periodic re-check of open streams: one round per process for all of them.

Every ``PROGRESS_RECHECK_SECONDS`` each open stream (an execution's WebSocket
or SSE response, ``progress.streams``; a feed socket, ``progress.feed``) gets a
:class:`Verdict`: access lost (the refusal to send, then close or end), or the
stored ``seq`` of its execution, from which it sends what the channel layer
dropped (the terminal frame above all: nothing follows it to reveal the gap).
A round costs a few queries whatever the number of streams, and a revoked
stream ends within one interval (plus the round's own time).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from rest_framework.authtoken.models import Token

from core.db import chunks, read_db
from executions.models import Execution

from .protocol import STAFF_ONLY, UNAUTHENTICATED, Refusal, not_found

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamAccess:
    """What one open stream shows, and on whose behalf: what every round verifies."""

    user_pk: Any
    #: The token the stream authenticated with; None when it was the session (``session_key``).
    token_key: str | None
    session_key: str | None
    #: The execution streamed; None for a feed socket (only the credentials are checked).
    execution_id: str | None
    #: The stream needs staff rights (a feed of everyone's executions, ``?scope=all``).
    staff_only: bool = False


@dataclass(frozen=True)
class Verdict:
    """A round's answer for one stream: the refusal if access is lost, else the
    execution's stored seq (0 for a feed socket)."""

    lost: Refusal | None = None
    stored_seq: int = 0


class RecheckedStream(Protocol):
    """A member of the re-check: its ``access`` is None once it has ended (it is then skipped)."""

    @property
    def access(self) -> StreamAccess | None: ...

    async def apply_verdict(self, verdict: Verdict) -> None: ...


def session_user_pk(session_key: str | None) -> Any:
    """The pk of the user the session is still logged in as, or None.

    Through ``django.contrib.auth.get_user``, as for an HTTP request: a logout
    (session deleted) or a password change (session hash no longer matches)
    ends the session's access.
    """
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    return get_user(SimpleNamespace(session=store)).pk  # type: ignore[arg-type]  # get_user reads only .session


def verdicts(accesses: Sequence[StreamAccess]) -> list[Verdict]:
    """One round's answers, from a few queries for all the streams."""
    token_keys = {a.token_key for a in accesses if a.token_key is not None}
    valid_tokens: set[str] = set()
    for chunk in chunks(token_keys):
        valid_tokens.update(Token.objects.filter(key__in=chunk, user__is_active=True).values_list("key", flat=True))
    sessions = {key: session_user_pk(key) for key in {a.session_key for a in accesses if a.token_key is None}}
    active_staff: dict[Any, bool] = {}
    for chunk in chunks({a.user_pk for a in accesses}):
        users = get_user_model().objects.filter(pk__in=chunk, is_active=True)
        active_staff.update(users.values_list("pk", "is_staff"))
    executions: dict[str, tuple[Any, int]] = {}
    for chunk in chunks({a.execution_id for a in accesses if a.execution_id is not None}):
        rows = Execution.objects.filter(pk__in=chunk).values_list("pk", "owner_id", "seq")
        executions.update((pk, (owner, seq)) for pk, owner, seq in rows)
    answers = []
    for a in accesses:
        if a.token_key is not None:
            authenticated = a.token_key in valid_tokens
        else:
            authenticated = a.session_key is not None and sessions.get(a.session_key) == a.user_pk
        if not authenticated or a.user_pk not in active_staff:
            answers.append(Verdict(lost=UNAUTHENTICATED))
            continue
        if a.staff_only and not active_staff[a.user_pk]:
            answers.append(Verdict(lost=STAFF_ONLY))
            continue
        if a.execution_id is None:
            answers.append(Verdict())
            continue
        execution = executions.get(a.execution_id)
        if execution is None or not (active_staff[a.user_pk] or execution[0] == a.user_pk):
            answers.append(Verdict(lost=not_found(a.execution_id)))
            continue
        answers.append(Verdict(stored_seq=execution[1]))
    return answers


class Rechecker:
    """The streams of one event loop, and the task that re-checks them every interval."""

    def __init__(self) -> None:
        self.members: set[RecheckedStream] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, member: RecheckedStream) -> None:
        self.members.add(member)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="progress-recheck")

    def discard(self, member: RecheckedStream) -> None:
        self.members.discard(member)

    async def run(self) -> None:
        while self.members:
            await asyncio.sleep(settings.PROGRESS_RECHECK_SECONDS)
            await self.round()

    async def round(self) -> None:
        """One round for every member; a failing round is logged and the next one tried."""
        members, accesses = [], []
        for member in list(self.members):
            access = member.access
            if access is not None:
                members.append(member)
                accesses.append(access)
        if not accesses:
            return
        try:
            answers = await read_db(verdicts)(accesses)
        except Exception:
            # The database briefly away: logged, and the next round tried.
            interval = settings.PROGRESS_RECHECK_SECONDS
            logger.exception("re-check of %d streams failed; retrying in %g s", len(accesses), interval)
            return
        applied = (member.apply_verdict(verdict) for member, verdict in zip(members, answers, strict=True))
        for result in await asyncio.gather(*applied, return_exceptions=True):
            if isinstance(result, Exception):
                logger.error("re-check of a stream failed: %r", result, exc_info=result)


_recheckers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Rechecker] = weakref.WeakKeyDictionary()


def rechecker() -> Rechecker:
    """The running event loop's re-check (a server process has one loop; tests may have several)."""
    loop = asyncio.get_running_loop()
    found = _recheckers.get(loop)
    if found is None:
        found = _recheckers[loop] = Rechecker()
    return found
