"""Incremental server-sent-events decoding: bytes in, event payloads out. No I/O here.

Follows the WHATWG event-stream rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in LF, CRLF or a lone CR (a CRLF may be split across reads); ``data:`` with or
without one leading space; several data lines join with LF; lines starting with ``:`` are
comments; a blank line dispatches; an event whose data is empty dispatches nothing; a
leading BOM is dropped. Bytes are kept as bytes until a payload is complete, so a UTF-8
character split across reads is never decoded half-way.

Speed: each chunk is scanned by C-level ``bytes`` methods (``in``, ``replace``,
``split``) once, and an unfinished line is kept as a list of pieces, so a line that arrives
byte by byte costs linear time, not quadratic.
"""

from __future__ import annotations

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
        "_data",
        "_data_size",
        "_event",
        "_max",
        "_partial",
        "_partial_size",
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
        self._data: list[bytes] = []
        self._data_size = 0
        self._event: str | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[bytes | ServerSentEvent]:
        """Add bytes from the network; return the events they complete."""
        if not self._started:
            chunk = self._strip_bom(chunk)
            if not chunk:
                return []
        if self._skip_lf:
            # The previous chunk ended in CR: an LF now is the second half of a CRLF.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
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
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
            self._partial_size = len(tail)
            if self._partial_size > self._max:
                self._too_large("line")
        return self._lines(lines)

    def flush(self) -> list[bytes | ServerSentEvent]:
        """At end of input: take an unterminated last line and event as complete.

        The spec drops such an event, but some servers end with ``data: [DONE]`` and no
        newline; a payload that is really cut short fails JSON decoding later and is
        reported as a broken stream, so nothing is silently lost either way.
        """
        lines: list[bytes] = []
        if self._partial:
            lines.append(b"".join(self._partial))
            self._partial = []
            self._partial_size = 0
        lines.append(b"")
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[bytes | ServerSentEvent]:
        out: list[bytes | ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    payload = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    self._data_size = 0
                    event = self._event
                    if event is not None:
                        self._event = None
                        out.append(ServerSentEvent(event, payload, self.last_event_id))
                    elif payload:
                        out.append(payload)
                else:
                    self._event = None
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                data.append(value)
                self._data_size += len(value)
                if self._data_size > self._max:
                    self._too_large("event")
            elif line[0] != 0x3A:  # not a ":" comment (keep-alives such as ": PROCESSING")
                self._field(line)
        return out

    def _field(self, line: bytes) -> None:
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
            self._data.append(b"")

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
        self._data.clear()
        raise ResponseTooLargeError(
            f"A server-sent {what} exceeded max_event_size ({self._max} bytes); "
            "raise the limit if such events are expected."
        )
