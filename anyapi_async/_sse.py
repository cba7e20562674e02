"""Incremental server-sent-events decoding: bytes in, event payloads out. No I/O here.

Follows the WHATWG event-stream rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in LF, CRLF or a lone CR (a CRLF may be split across reads); ``data:`` with or
without one leading space; several data lines join with LF; lines starting with ``:`` are
comments; a blank line dispatches; an event whose data is empty dispatches nothing; a
leading BOM is dropped. Bytes are kept as bytes until a payload is complete, so a UTF-8
character split across reads is never decoded half-way.

Speed: each chunk is scanned by C-level ``bytes`` methods (``in``, ``replace``,
``split``), a read of plain ``data:`` events is split on blank lines at once, and an
unfinished line is kept as a list of pieces, so a line that arrives
byte by byte costs linear time, not quadratic.
"""

from __future__ import annotations

from typing import Any

from ._exceptions import ResponseTooLargeError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "ServerSentEvent"]

#: Largest line or event (in bytes) the decoder buffers before giving up.
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


class ServerSentEvent:
    """An event with a name other than the default ``message``."""

    __slots__ = ("data", "event", "id")

    def __init__(self, event: str, data: bytes, id: str | None) -> None:
        self.event = event
        self.data = data
        self.id = id

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data[:60]!r})"


class SSEDecoder:
    """Turns arbitrary slices of an event stream into complete events.

    `feed` returns, for each dispatched event, its data as ``bytes`` (the common case of an
    unnamed event) or a `ServerSentEvent` when an ``event:`` field named it.
    """

    __slots__ = (
        "_event",
        "_max",
        "_partial",
        "_partial_size",
        "_pending",
        "_pending_size",
        "_skip_lf",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max = max_event_size
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._skip_lf = False
        self._started = False
        self._pending: bytes | list[bytes] | None = None
        self._pending_size = 0
        self._event: str | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[bytes | ServerSentEvent]:
        """Add bytes from the network; return the events they complete."""
        return self.feed_data(chunk, _named=True)  # type: ignore[return-value]

    def flush(self) -> list[bytes | ServerSentEvent]:
        """At end of input: take an unterminated last line and event as complete.

        The spec drops such an event, but some servers end with ``data: [DONE]`` and no
        newline; a payload that is really cut short fails JSON decoding later and is
        reported as a broken stream, so nothing is silently lost either way.
        """
        return self.flush_data(_named=True)  # type: ignore[return-value]

    def flush_data(self, *, _named: bool = False) -> list[bytes]:
        """`flush` with every event as its data, like `feed_data`."""
        self._skip_lf = False
        return self.feed_data(b"\n\n", _named=_named)

    def feed_data(self, chunk: bytes, *, _named: bool = False) -> list[bytes]:
        """Like `feed`, but every event comes out as its data, named or not.

        This is the streaming hot path: one call per network read; a read of plain
        ``data: {...}`` events costs two slices and a comparison per event.
        """
        if not self._started:
            if chunk and chunk[0] != 0xEF and not self._partial:  # no BOM can start here
                self._started = True
            else:
                chunk = self._strip_bom(chunk)
                if not chunk:
                    return []
        if self._skip_lf:
            # The previous chunk ended in CR: an LF now is the second half of a CRLF.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        # (Integer membership is a memchr; `b"\r" in chunk` is several times slower.)
        if 13 in chunk:
            self._skip_lf = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if 10 not in chunk:
            if chunk:
                self._partial.append(chunk)
                self._partial_size += len(chunk)
                if self._partial_size > self._max:
                    self._too_large("line")
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
            self._partial_size = 0
        if self._pending is None and self._event is None and len(chunk) <= self._max:
            # The usual read: whole ``data: {...}`` events, each ended by a blank line.
            # One C-level split and a comprehension take them; a read holding anything
            # else (a comment, a named or multi-line event, an empty data line) is
            # decoded line by line below, from the same untouched state.
            blocks = chunk.split(b"\n\n")
            tail = blocks.pop()
            payloads = [b[6:] for b in blocks if b[:6] == b"data: " and 10 not in b]
            if len(payloads) == len(blocks) and b"" not in payloads:
                if tail:
                    payloads += self._lines(tail.split(b"\n"), _named)
                return payloads
        return self._lines(chunk.split(b"\n"), _named)

    def _lines(self, lines: list[bytes], named: bool) -> list[Any]:
        """Decode complete lines; the last item of ``lines`` is an unfinished line."""
        last = lines.pop()
        out: list[Any] = []
        # The event being built: None, its one data line, or a list of several lines.
        pending = self._pending
        maximum = self._max
        for line in lines:
            if line:
                if line[:6] == b"data: ":
                    value = line[6:]
                elif line[:5] == b"data:":
                    value = line[5:]
                elif line[0] == 58:  # ":" starts a comment (keep-alives: ": PROCESSING")
                    continue
                else:
                    field_value = self._field(line)
                    if field_value is None:
                        continue
                    value = field_value
                if pending is None:
                    pending = value
                    if len(value) > maximum:
                        self._too_large("event")
                else:
                    if isinstance(pending, bytes):
                        pending = [pending]
                        self._pending_size = len(pending[0])
                    pending.append(value)
                    self._pending_size += len(value) + 1
                    if self._pending_size > maximum:
                        self._too_large("event")
            elif pending is not None:
                payload = pending if isinstance(pending, bytes) else b"\n".join(pending)
                pending = None
                event = self._event
                if event is not None:
                    self._event = None
                    if named:
                        out.append(ServerSentEvent(event, payload, self.last_event_id))
                        continue
                if payload:
                    out.append(payload)
            else:
                self._event = None
        self._pending = pending
        if last:
            self._partial.append(last)
            self._partial_size = len(last)
            if self._partial_size > maximum:
                self._too_large("line")
        return out

    def _field(self, line: bytes) -> bytes | None:
        """Handle a field line other than ``data:``; a bare ``data`` gives an empty line."""
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            text = value.decode("utf-8", "replace")
            self._event = text if text and text != "message" else None
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self.retry = int(value)
        elif name == b"data":  # "data" with no colon: an empty data line
            return b""
        return None

    def _strip_bom(self, chunk: bytes) -> bytes:
        if self._partial:
            chunk = b"".join(self._partial) + chunk
            self._partial = []
            self._partial_size = 0
        if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
            self._partial.append(chunk)
            self._partial_size = len(chunk)
            return b""
        self._started = True
        return chunk[3:] if chunk[:3] == _BOM else chunk

    def _too_large(self, what: str) -> None:
        self._partial = []
        self._pending = None
        raise ResponseTooLargeError(
            f"A server-sent {what} exceeded max_event_size ({self._max} bytes); "
            "raise the limit if such events are expected."
        )
