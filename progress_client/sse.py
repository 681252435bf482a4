"""An incremental Server-Sent Events parser (the WHATWG "event stream interpretation").

Fed text as it arrives, in chunks cut anywhere; gives back complete events.
Lines end at CRLF, LF or CR, and only there: ``str.splitlines`` would also cut
at U+2028 and other characters a JSON string may hold raw.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    #: The ``id:`` field of this event, or None when it had none.
    id: str | None = None
    retry_ms: int | None = None


class SseParser:
    def __init__(self) -> None:
        self._pending = ""  # text of an unfinished line
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        #: How many comment lines (``: keep-alive``) were seen.
        self.comments = 0

    def feed(self, text: str) -> list[ServerSentEvent]:
        """The events completed by ``text``."""
        buffer = self._pending + text
        events: list[ServerSentEvent] = []
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            ends = [i for i in (cr, lf) if i != -1]
            if not ends:
                break
            end = min(ends)
            if buffer[end] == "\r":
                if end + 1 == length:
                    break  # a CR at the end of the chunk may be the first half of CRLF
                next_start = end + 2 if buffer[end + 1] == "\n" else end + 1
            else:
                next_start = end + 1
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = next_start
        self._pending = buffer[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, event_id, retry = self._data, self._event, self._id, self._retry
        self._data, self._event, self._retry = [], "", None
        self._id = None
        if not data:
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=event_id, retry_ms=retry)
