"""The streaming edge's protocol: close codes, refusals, group names and channel-layer messages.

Everything two modules of the edge must agree on is named here once: the
close code that follows each ``error`` frame (docs/protocol/frames.md,
"Close codes"), the groups a socket joins, and the messages that travel
through the channel layer, as ``TypedDict``s with a ``Literal`` type that
names the handler receiving them (``progress.event`` -> ``progress_event``).
Messages hold primitives only (msgpack): the frame travels as ready JSON text.
"""

from __future__ import annotations

import re
from typing import Any, Literal, NamedTuple, TypedDict

# WebSocket close codes. daphne's WebSocket library sends only 1000 and 3000-4999,
# so the refusals use application codes (4000 + the HTTP status they stand for).
# CLOSE_SERVICE_RESTART (1012, a draining server: come back) is the server's own,
# sent beneath the consumers (core.serving.drain).
CLOSE_NORMAL = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class Refusal(NamedTuple):
    """An ``error`` frame's message and the close code that follows it."""

    message: str
    code: int


UNAUTHENTICATED = Refusal("Authentication required", CLOSE_UNAUTHENTICATED)
INVALID_AFTER_SEQ = Refusal("Invalid after_seq", CLOSE_BAD_REQUEST)
#: A feed of everyone's executions (``?scope=all``) asked for, or kept, without staff rights.
STAFF_ONLY = Refusal("scope=all is for staff only", CLOSE_FORBIDDEN)
#: The one ``error`` frame after which the socket stays open (its ``code`` is null).
UNSUPPORTED_MESSAGE = "Unsupported message"


def not_found(execution_id: str) -> Refusal:
    """Unknown, or someone else's: the two look the same."""
    return Refusal(f"Execution '{execution_id}' not found", CLOSE_NOT_FOUND)


# --- groups ------------------------------------------------------------------------------

#: What a group name may hold (Channels' rule), within an execution id's length.
GROUPABLE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The group of the staff feed sockets that follow every execution (``?scope=all``).
FEED_GROUP_EVERYONE = "feed.everyone"


def execution_group(execution_id: str) -> str:
    """The group of the streams of one execution (WebSocket and SSE)."""
    return f"execution.{execution_id}"


def feed_group_of_user(user_id: Any) -> str:
    """The group of the feed sockets that follow the executions of one user."""
    return f"feed.user.{user_id}"


# --- channel-layer messages --------------------------------------------------------------


class EventMessage(TypedDict):
    """A recorded event, to the streams of its execution (handler ``progress_event``)."""

    type: Literal["progress.event"]
    seq: int
    #: The event's type (``started``, ``progress``, a terminal one).
    event: str
    #: The frame, as the JSON text stored with the event.
    frame: str
    #: The event's own timestamp (ISO 8601), for the event-to-frame latency metric.
    timestamp: str | None


class FeedMessage(TypedDict):
    """A recorded event or a submit, to the feed sockets (handler ``feed_frame``)."""

    type: Literal["feed.frame"]
    execution_id: str
    #: 0 for a submit.
    seq: int
    #: The frame's type: ``created`` for a submit, else the event's.
    event: str
    #: The execution's status once the event is recorded.
    status: str
    frame: str
    timestamp: str | None


class LayerReconnectedMessage(TypedDict):
    """The channel layer is subscribed again after losing Redis: what was published
    meanwhile is lost, so every member catches up from the database (handler
    ``layer_reconnected``)."""

    type: Literal["layer.reconnected"]


EVENT_MESSAGE_TYPE: Literal["progress.event"] = "progress.event"
FEED_MESSAGE_TYPE: Literal["feed.frame"] = "feed.frame"
LAYER_RECONNECTED_TYPE: Literal["layer.reconnected"] = "layer.reconnected"


def event_message(*, seq: int, event_type: str, frame_text: str, timestamp: str | None = None) -> EventMessage:
    """The message of one recorded event to its execution's group."""
    return {"type": EVENT_MESSAGE_TYPE, "seq": seq, "event": event_type, "frame": frame_text, "timestamp": timestamp}


def feed_message(
    *, execution_id: str, seq: int, event_type: str, status: str, frame_text: str, timestamp: str | None = None
) -> FeedMessage:
    """The message of one event (or a submit: ``created``, seq 0) to the feed groups."""
    return {
        "type": FEED_MESSAGE_TYPE,
        "execution_id": execution_id,
        "seq": seq,
        "event": event_type,
        "status": status,
        "frame": frame_text,
        "timestamp": timestamp,
    }


def layer_reconnected_message() -> LayerReconnectedMessage:
    """The message the layer puts on every member's queue after a reconnect."""
    return {"type": LAYER_RECONNECTED_TYPE}
