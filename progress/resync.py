"""The periodic re-check of open streams, once per process instead of once per stream.

Every ``PROGRESS_WS_RESYNC_SECONDS`` each open stream (an execution's
WebSocket or Server-Sent Events response, ``progress.streams``; the socket for
many executions, ``progress.dashboard``) must (1) end if its user's access is
gone (token deleted, user deactivated, session ended, execution no longer
visible, staff rights gone for a feed of everyone's executions) and (2) get any
stored event the channel layer dropped, the terminal one above all (it has no
successor to reveal the gap). Done per stream, that was four queries per
stream per round: 1,000 watchers made 1,000 queries a second of background
load, each a thread hop.

Here one task per server process (per event loop) runs the round for all of
its streams: one query for the tokens, one for the users, one for the
executions, whatever the number of streams (sessions: two small queries per
distinct session, through Django's own verification). A revoked stream is
ended within one interval (plus the round's own time) of the change. Each
member gets a :class:`Verdict` and decides what to send: an execution's
stream reads the missing events only when it is still behind the ``seq``
that the previous round saw. Under load frames arrive late but do arrive,
and reading them again for every lagging stream made an overloaded process
slower (py-spy: 15 % of its time at 1,000 watchers). A dropped terminal frame
is therefore delivered within two intervals.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from rest_framework.authtoken.models import Token

from core.db import read_db
from executions.models import Execution

logger = logging.getLogger(__name__)

# The close codes of a lost access (an SSE response sends the message as an ``error`` event instead).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
#: Why a watch that needs staff rights (the feed of everyone's executions, ``?scope=all``) is refused.
STAFF_ONLY = "scope=all is for staff only"
#: IN lists are split into chunks of this size (SQLite's variable limit, long queries).
CHUNK = 500


@dataclass(frozen=True)
class Watch:
    """What one open stream shows, and on whose behalf."""

    user_pk: Any
    #: The token the stream authenticated with; None when it was the session (``session_key``).
    token_key: str | None
    session_key: str | None
    #: The execution streamed; None for a stream of many executions (only the credentials are checked).
    execution_id: str | None
    #: The stream needs staff rights (``scope=all`` of ``progress.dashboard``).
    staff_only: bool = False


@dataclass(frozen=True)
class Verdict:
    """A round's answer for one stream: why access is lost (message, close code), or the
    execution's stored seq (0 for a watch of no one execution)."""

    lost: tuple[str, int] | None = None
    stored_seq: int = 0


class Watcher(Protocol):
    """A member of the re-check: ``watch()`` is None once it has ended (it is then skipped)."""

    def watch(self) -> Watch | None: ...

    async def apply_resync(self, verdict: Verdict) -> None: ...


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


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def verdicts(watches: Sequence[Watch]) -> list[Verdict]:
    """One round's answers, from a few queries for all the watches."""
    token_keys = {w.token_key for w in watches if w.token_key is not None}
    valid_tokens: set[str] = set()
    for chunk in _chunks(token_keys):
        valid_tokens.update(Token.objects.filter(key__in=chunk, user__is_active=True).values_list("key", flat=True))
    sessions = {key: session_user_pk(key) for key in {w.session_key for w in watches if w.token_key is None}}
    active_staff: dict[Any, bool] = {}
    for chunk in _chunks({w.user_pk for w in watches}):
        users = get_user_model().objects.filter(pk__in=chunk, is_active=True)
        active_staff.update(users.values_list("pk", "is_staff"))
    executions: dict[str, tuple[Any, int]] = {}
    for chunk in _chunks({w.execution_id for w in watches if w.execution_id is not None}):
        rows = Execution.objects.filter(pk__in=chunk).values_list("pk", "owner_id", "seq")
        executions.update((pk, (owner, seq)) for pk, owner, seq in rows)
    answers = []
    for w in watches:
        if w.token_key is not None:
            authenticated = w.token_key in valid_tokens
        else:
            authenticated = w.session_key is not None and sessions.get(w.session_key) == w.user_pk
        if not authenticated or w.user_pk not in active_staff:
            answers.append(Verdict(lost=("Authentication required", CLOSE_UNAUTHENTICATED)))
            continue
        if w.staff_only and not active_staff[w.user_pk]:
            answers.append(Verdict(lost=(STAFF_ONLY, CLOSE_FORBIDDEN)))
            continue
        if w.execution_id is None:
            answers.append(Verdict())
            continue
        execution = executions.get(w.execution_id)
        if execution is None or not (active_staff[w.user_pk] or execution[0] == w.user_pk):
            answers.append(Verdict(lost=(f"Execution '{w.execution_id}' not found", CLOSE_NOT_FOUND)))
            continue
        answers.append(Verdict(stored_seq=execution[1]))
    return answers


class Resyncer:
    """The streams of one event loop, and the task that re-checks them every interval."""

    def __init__(self) -> None:
        self.members: set[Watcher] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, member: Watcher) -> None:
        self.members.add(member)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run(), name="progress-resync")

    def discard(self, member: Watcher) -> None:
        self.members.discard(member)

    async def run(self) -> None:
        while self.members:
            await asyncio.sleep(settings.PROGRESS_WS_RESYNC_SECONDS)
            await self.round()

    async def round(self) -> None:
        """One round for every member; a failing round is logged and the next one tried."""
        members, watches = [], []
        for member in list(self.members):
            watch = member.watch()
            if watch is not None:
                members.append(member)
                watches.append(watch)
        if not watches:
            return
        try:
            answers = await read_db(verdicts)(watches)
        except Exception:
            # The database briefly away: logged, and the next round tried.
            interval = settings.PROGRESS_WS_RESYNC_SECONDS
            logger.exception("resync of %d streams failed; retrying in %g s", len(watches), interval)
            return
        applied = (member.apply_resync(verdict) for member, verdict in zip(members, answers, strict=True))
        for result in await asyncio.gather(*applied, return_exceptions=True):
            if isinstance(result, Exception):
                logger.error("resync of a stream failed: %r", result, exc_info=result)


_resyncers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Resyncer] = weakref.WeakKeyDictionary()


def resyncer() -> Resyncer:
    """The running event loop's resyncer (a server process has one loop; tests may have several)."""
    loop = asyncio.get_running_loop()
    found = _resyncers.get(loop)
    if found is None:
        found = _resyncers[loop] = Resyncer()
    return found
