"""The SSE decoder against the WHATWG event-stream rules, with arbitrary network splits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyapi_async import ResponseTooLargeError, ServerSentEvent, SSEDecoder


def decode_all(chunks: list[bytes], **kwargs: int) -> list[bytes | ServerSentEvent]:
    decoder = SSEDecoder(**kwargs)
    out: list[bytes | ServerSentEvent] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


def payloads(events: list[bytes | ServerSentEvent]) -> list[bytes]:
    return [e if isinstance(e, bytes) else e.data for e in events]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    """LF, CRLF and lone CR all end lines."""
    body = b"data: one" + eol + eol + b"data: two" + eol + eol
    assert payloads(decode_all([body])) == [b"one", b"two"]


def test_crlf_split_across_reads() -> None:
    """A CR at the end of one read and LF at the start of the next are one line end."""
    assert payloads(decode_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])) == [b"a", b"b"]


def test_data_with_and_without_space_and_multiline() -> None:
    """One leading space is dropped; several data lines join with LF."""
    body = b"data:x\ndata:  y\ndata: z\n\n"
    assert payloads(decode_all([body])) == [b"x\n y\nz"]


def test_comments_keepalives_and_empty_data_dispatch_nothing() -> None:
    """Comments, blank keep-alive lines, empty data and id/retry-only blocks yield nothing."""
    body = b": PROCESSING\n\n\n\n:\n\ndata:\n\nid: 7\n\nretry: 3000\n\ndata: {}\n\n"
    decoder = SSEDecoder()
    assert payloads(decoder.feed(body)) == [b"{}"]
    assert decoder.last_event_id == "7"
    assert decoder.retry == 3000


def test_named_event_and_id() -> None:
    """An event: field gives a ServerSentEvent carrying its name and the last id."""
    events = decode_all([b'event: error\nid: 3\ndata: {"error": 1}\n\n'])
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ServerSentEvent)
    assert (event.event, event.data, event.id) == ("error", b'{"error": 1}', "3")


def test_leading_bom_split() -> None:
    """A UTF-8 BOM at the very start is dropped even when split byte by byte."""
    assert payloads(decode_all([b"\xef", b"\xbb", b"\xbfdata: a\n\n"])) == [b"a"]


def test_last_event_without_blank_line_at_eof() -> None:
    """At EOF an unterminated last event is still delivered."""
    assert payloads(decode_all([b"data: a\n\ndata: [DONE]"])) == [b"a", b"[DONE]"]


def test_multibyte_utf8_split() -> None:
    """Bytes are kept until the event is whole, so split UTF-8 survives."""
    text = 'data: {"c": "héllo 👋"}\n\n'.encode()
    chunks = [text[i : i + 1] for i in range(len(text))]
    assert payloads(decode_all(chunks)) == [text[6:-2]]


def test_field_without_colon() -> None:
    """A line that is just a field name has an empty value ('data' adds an empty line)."""
    assert payloads(decode_all([b"data\ndata: x\n\n"])) == [b"\nx"]


def test_too_large_line_raises() -> None:
    """A line that grows past max_event_size raises instead of buffering forever."""
    decoder = SSEDecoder(max_event_size=100)
    decoder.feed(b"data: " + b"x" * 60)
    with pytest.raises(ResponseTooLargeError, match="max_event_size"):
        decoder.feed(b"x" * 60)


def test_too_large_event_raises() -> None:
    """Many data lines adding up past the limit raise too."""
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(ResponseTooLargeError, match="event"):
        decoder.feed(b"data: " + b"y" * 50 + b"\n" + b"data: " + b"y" * 60 + b"\n")


STREAM = (
    b"\xef\xbb\xbf: keep-alive\r\n\r\n"
    b'data: {"a": "\xc3\xa9"}\n\n'
    b"event: ping\ndata: p\n\n"
    b"data: line1\r\ndata: line2\r\n\r\n"
    b"id: 1\n\n"
    b'data:{"b":2}\r\r'
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": "\xc3\xa9"}', b"p", b"line1\nline2", b'{"b":2}', b"[DONE]"]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_any_split_gives_same_events(cuts: list[int]) -> None:
    """However the network splits the bytes, the same events come out."""
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert payloads(decode_all(chunks)) == EXPECTED


def test_byte_by_byte_large_line() -> None:
    """A 1 MB line fed one byte per read comes out whole, as one event."""
    decoder = SSEDecoder()
    line = b"data: " + b"z" * 1_000_000 + b"\n\n"
    out: list[bytes | ServerSentEvent] = []
    for i in range(0, len(line), 1):
        out.extend(decoder.feed(line[i : i + 1]))
    assert payloads(out) == [b"z" * 1_000_000]


def test_feed_data_gives_named_events_as_data() -> None:
    """feed_data (the streaming hot path) yields every event's data, named or not."""
    decoder = SSEDecoder()
    out = decoder.feed_data(b"event: error\ndata: {}\n\ndata: x\n\n: c\n\n")
    out += decoder.flush_data()
    assert out == [b"{}", b"x"]


def test_fast_path_respects_pending_state() -> None:
    """A block that completes an event begun in the previous read is not taken as new."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert payloads(decoder.feed(b"data: b\n\ndata: c\n\n")) == [b"a\nb", b"c"]
    assert decoder.feed(b"event: ping\n") == []
    events = decoder.feed(b"data: p\n\n")
    assert isinstance(events[0], ServerSentEvent) and events[0].event == "ping"


def test_single_oversized_event_in_one_read() -> None:
    """An event bigger than the limit that arrives whole in one read still raises."""
    decoder = SSEDecoder(max_event_size=50)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(b"data: " + b"q" * 100 + b"\n\n")


def reference(body: bytes) -> list[tuple[str | None, bytes]]:
    """The WHATWG algorithm over the whole body at once, line by line, as written there
    (plus this decoder's two documented choices: at EOF the last event counts; bytes)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    lines = [*body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"), b""]
    out: list[tuple[str | None, bytes]] = []
    data: list[bytes] = []
    event: str | None = None
    for line in lines:
        if not line:
            payload = b"\n".join(data)
            if payload:
                out.append((event, payload))
            data, event = [], None
            continue
        if line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            text = value.decode("utf-8", "replace")
            event = text if text and text != "message" else None
    return out


_LINES = st.sampled_from(
    [
        b'data: {"x": 1}\n\n',
        b'data: {"y": "a\\nb"}\n\n',
        b"data: [DONE]\n\n",
        b"data:\n\n",
        b"data: \n\n",
        b": keep-alive\n\n",
        b": PROCESSING\n",
        b"\n",
        b"event: ping\ndata: p\n\n",
        b"event: message\ndata: m\n\n",
        b"data: one\ndata: two\n\n",
        b"id: 4\n\n",
        b"retry: 10\n",
        b"data:nospace\n\n",
        b"data: crlf\r\n\r\n",
        b"data: cr\r\r",
        b"data",
        b"\n\n\n",
    ]
)


@given(st.lists(_LINES, max_size=25), st.data())
def test_any_stream_any_split_matches_the_reference(
    parts: list[bytes], data: st.DataObject
) -> None:
    """Random mixes of plain, named, multi-line, empty and commented events, cut at random
    places, decode as the spec's line-by-line algorithm does on the whole body."""
    body = b"".join(parts)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=12))
    points = sorted(set(cuts))
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    want = reference(body)
    assert _events(decode_all(chunks)) == want
    for i in range(len(body) + 1):  # and every single cut: state carried across one read
        assert _events(decode_all([body[:i], body[i:]])) == want, i


def _events(out: list[bytes | ServerSentEvent]) -> list[tuple[str | None, bytes]]:
    return [(e.event, e.data) if isinstance(e, ServerSentEvent) else (None, e) for e in out]
