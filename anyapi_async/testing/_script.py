"""Scripted responses and faults for ``LocalServer.queue``.

Each scripted response is plain data: a status, headers, a body cut into *events*, and the
``Faults`` to apply while sending it. An event is one SSE event for a stream and the whole
body otherwise; the fault options count events (``stall_after=3`` sends three events, then
goes quiet). ``_server`` does the sending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final, TypedDict

import msgspec

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ErrorResponse",
    "FaultOptions",
    "Faults",
    "Generated",
    "Hang",
    "JSONResponse",
    "RawResponse",
    "Redirect",
    "SSEResponse",
    "Scripted",
]

DEFAULT_KEEPALIVE_INTERVAL: Final = 1.0
#: The error object sent by ``error_after`` when no ``error`` is given.
DEFAULT_STREAM_ERROR: Final = {
    "message": "The server had an error while processing your request.",
    "type": "server_error",
    "param": None,
    "code": "server_error",
}
_STATUS_ERRORS: Final = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    402: ("Insufficient credits.", "insufficient_quota", "insufficient_quota"),
    403: ("You are not allowed to use this model.", "invalid_request_error", "forbidden"),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    409: ("Conflict with a request in progress.", "invalid_request_error", "conflict"),
    422: ("Unprocessable request.", "invalid_request_error", "unprocessable_entity"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
}
_SERVER_ERROR: Final = ("The server had an error while processing your request.", "server_error")


class FaultOptions(TypedDict, total=False):
    """Keyword options every scripted response accepts; see ``Faults``."""

    first_byte_delay: float
    stall_after: int | None
    cut_after: int | None
    error_after: int | None
    error: Mapping[str, Any] | None
    chunk_size: int | None
    split_seed: int | None
    pace: float | None
    keepalive: str | None
    keepalive_interval: float
    trickle: float | None
    cut_after_bytes: int | None


@dataclass(frozen=True, slots=True)
class Faults:
    """How to misbehave while sending a response.

    Attributes:
        first_byte_delay: seconds to wait before sending the status line and headers.
        stall_after: after this many events, send nothing more and hold the connection
            open until the client leaves or the server closes.
        cut_after: after this many events, abort the connection (no terminating chunk), so
            the client sees an incomplete transfer.
        error_after: after this many events, send ``data: {"error": error}`` and end.
        error: the error object for ``error_after`` (a server error by default).
        chunk_size: send each event in writes of this many bytes (1: byte by byte).
        split_seed: send each event in writes of seeded random sizes (1-16 bytes).
        pace: seconds to wait between events.
        keepalive: while stalled, send this SSE comment (e.g. ``": PROCESSING"``) every
            ``keepalive_interval`` seconds.
        trickle: send the body one byte at a time, this many seconds apart.
        cut_after_bytes: after this many body bytes (events or not), abort the connection.
    """

    first_byte_delay: float = 0.0
    stall_after: int | None = None
    cut_after: int | None = None
    error_after: int | None = None
    error: Mapping[str, Any] | None = None
    chunk_size: int | None = None
    split_seed: int | None = None
    pace: float | None = None
    keepalive: str | None = None
    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    trickle: float | None = None
    cut_after_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("stall_after", "cut_after", "error_after", "cut_after_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if (
            self.first_byte_delay < 0
            or (self.pace or 0) < 0
            or (self.trickle or 0) < 0
            or self.keepalive_interval <= 0
        ):
            raise ValueError("delays must be >= 0 and keepalive_interval > 0")

    def __repr__(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"Faults({', '.join(changed)})"


class Scripted:
    """Base of the scripted responses: a status, extra headers and faults."""

    __slots__ = ("faults", "headers", "status")

    def __init__(
        self, status: int, headers: Mapping[str, str] | None, faults: FaultOptions
    ) -> None:
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.faults = Faults(**faults)

    def render(self) -> tuple[str, list[bytes], bool]:
        """The content type, the body as events, and whether the body is an SSE stream."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, faults={self.faults!r})"


def _json_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return msgspec.json.encode(body)


class JSONResponse(Scripted):
    """A JSON body (``bytes``/``str`` bodies are sent as they are)."""

    __slots__ = ("body",)

    def __init__(
        self,
        body: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **faults: Unpack[FaultOptions],
    ) -> None:
        super().__init__(status, headers, faults)
        self.body = _json_bytes(body)

    def render(self) -> tuple[str, list[bytes], bool]:
        return "application/json", [self.body], False


class ErrorResponse(JSONResponse):
    """An OpenAI-shaped error, ``{"error": {"message", "type", "param", "code"}}``.

    ``message``, ``type`` and ``code`` default to what the API says for ``status``; ``body``
    replaces the whole body. Example: ``ErrorResponse(429, headers={"Retry-After": "1"})``.
    """

    __slots__ = ()

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        **faults: Unpack[FaultOptions],
    ) -> None:
        default_message, default_type, default_code = _STATUS_ERRORS.get(
            status, (*_SERVER_ERROR, None)
        )
        if body is None:
            body = {
                "error": {
                    "message": message if message is not None else default_message,
                    "type": type if type is not None else default_type,
                    "param": param,
                    "code": code if code is not None else default_code,
                }
            }
        super().__init__(body, status=status, headers=headers, **faults)


class RawResponse(Scripted):
    """Any body with any content type: an HTML error page, malformed JSON, ..."""

    __slots__ = ("body", "content_type")

    def __init__(
        self,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "text/html",
        headers: Mapping[str, str] | None = None,
        **faults: Unpack[FaultOptions],
    ) -> None:
        super().__init__(status, headers, faults)
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    def render(self) -> tuple[str, list[bytes], bool]:
        return self.content_type, [self.body], False


class SSEResponse(Scripted):
    """A ``text/event-stream`` body built from events.

    A dict is sent as ``data: <json>``, a str as ``data: <str>`` (each followed by a blank
    line), and bytes verbatim, for comments, CRLF line ends, multi-line data or a BOM.
    ``done`` appends ``data: [DONE]``.
    """

    __slots__ = ("done", "events")

    def __init__(
        self,
        events: Sequence[Mapping[str, Any] | str | bytes],
        *,
        done: bool = True,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **faults: Unpack[FaultOptions],
    ) -> None:
        super().__init__(status, headers, faults)
        self.events = [sse_event(e) for e in events]
        self.done = done

    def render(self) -> tuple[str, list[bytes], bool]:
        events = [*self.events, DONE_EVENT] if self.done else list(self.events)
        return "text/event-stream; charset=utf-8", events, True


DONE_EVENT: Final = b"data: [DONE]\n\n"


def sse_event(event: Mapping[str, Any] | str | bytes) -> bytes:
    """One event's bytes, as ``SSEResponse`` sends it."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return b"data: " + event.encode() + b"\n\n"
    return b"data: " + msgspec.json.encode(event) + b"\n\n"


class Generated(Scripted):
    """The default generator's answer, sent with faults (and optionally fixed ``text``).

    ``Generated(cut_after=4)`` streams the usual reply and cuts the connection after four
    events; ``Generated(text="Hi there")`` answers that text, tokenised, in either form.
    """

    __slots__ = ("text",)

    def __init__(
        self,
        *,
        text: str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **faults: Unpack[FaultOptions],
    ) -> None:
        super().__init__(status, headers, faults)
        self.text = text


class Redirect(Scripted):
    """A redirect to ``location`` (absolute, or a path on this server)."""

    __slots__ = ("location",)

    def __init__(
        self,
        location: str,
        status: int = 307,
        *,
        headers: Mapping[str, str] | None = None,
        **faults: Unpack[FaultOptions],
    ) -> None:
        super().__init__(status, {**(headers or {}), "Location": location}, faults)
        self.location = location

    def render(self) -> tuple[str, list[bytes], bool]:
        return "text/plain; charset=utf-8", [f"Redirecting to {self.location}".encode()], False


class Hang(Scripted):
    """Accept the request and never answer; the server releases it when it closes."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(200, None, {})
