"""The client's SSE parser, on chunks cut anywhere (no server needed)."""

from __future__ import annotations

from progress_client.sse import ServerSentEvent, SseParser

STREAM = (
    'id: 0\nevent: status\ndata: {"type":"status","seq":0,"note":"a\u2028b"}\n\n'
    ": keep-alive\n\n"
    'id: 1\r\nevent: started\r\ndata: {"type":"started","seq":1}\r\n\r\n'
    'event: error\rdata: {"type":"error"}\r\r'
    "data: first\ndata:second\n\n"
)
EXPECTED = [
    ServerSentEvent("status", '{"type":"status","seq":0,"note":"a\u2028b"}', "0"),
    ServerSentEvent("started", '{"type":"started","seq":1}', "1"),
    ServerSentEvent("error", '{"type":"error"}', None),
    ServerSentEvent("message", "first\nsecond", None),
]


def test_every_cut_of_the_stream_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        parser = SseParser()
        events = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert events == EXPECTED, cut
        assert parser.comments == 1


def test_character_by_character() -> None:
    parser = SseParser()
    events = [event for char in STREAM for event in parser.feed(char)]
    assert events == EXPECTED
