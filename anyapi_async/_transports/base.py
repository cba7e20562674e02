"""The transport contract: what the pipeline hands a transport and what it gets back.

```text
pipeline ──Request──▶ Transport.send() ──▶ Response (headers in, body not read)
                                            ├─ read(limit)      the whole body, bounded
                                            ├─ chunks()         the body as it arrives
                                            ├─ at_eof()         all of it received?
                                            ├─ release()        back to the pool
                                            ├─ close()          drop the connection now
                                            └─ abort(exc)       wake a pending read with exc
```

Everything above this module (the pipeline, streams, raw responses) uses only these
members, so any object that has them can carry the traffic: `AsyncClient(transport=...)`.
A transport raises the library's own errors (`APIConnectionError`, `APITimeoutError`,
`ResponseTooLargeError`); translating its network library's exceptions is its job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from .._config import Timeout

__all__ = ["DEFAULT_MAX_RESPONSE_SIZE", "Request", "Response", "Transport"]

#: Largest non-streaming (or error) body read into memory.
DEFAULT_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024


class Request:
    """One HTTP request, fully prepared: a retry sends the same object again."""

    __slots__ = (
        "attempt_started",
        "body",
        "deadline",
        "headers",
        "method",
        "stream",
        "timeout",
        "url",
        "watched",
    )

    def __init__(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: Timeout,
        stream: bool = False,
        deadline: float | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        #: The limits of each attempt (`Timeout`); ``read`` also bounds a whole body.
        self.timeout = timeout
        #: An event stream is asked for (the transport may tune its reads for it).
        self.stream = stream
        #: ``loop.time()`` by which the whole call must end (from ``Timeout.total``).
        self.deadline = deadline
        #: ``loop.time()`` when the current attempt started (set by the pipeline).
        self.attempt_started = 0.0
        #: The pipeline enforces the ``read`` limit of this request itself: its watchdog
        #: bounds the wait for the headers, then a stream's every wait for data or a
        #: non-streamed response's whole body (`Response.read`). A transport may leave
        #: out its own read timers; one that keeps them is still correct, only slower.
        self.watched = False


class Response(Protocol):
    """An HTTP response whose headers are in and whose body has not been read."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def url(self) -> str: ...

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters (``""`` if none)."""
        ...

    async def read(self, limit: int = DEFAULT_MAX_RESPONSE_SIZE) -> bytes:
        """The whole body, or `ResponseTooLargeError` past ``limit`` bytes; then release.

        The whole body must arrive within the request's ``read`` timeout
        (`APITimeoutError` with ``limit="read"``); a cut body is an `APIConnectionError`.
        """
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a transfer that breaks raises `APIConnectionError`."""
        ...

    def at_eof(self) -> bool:
        """Whether the whole body has been received."""
        ...

    def release(self) -> None:
        """Give the connection back to the pool (or close it if the body was not read)."""
        ...

    def close(self) -> None:
        """Close the connection at once; safe from any task, any number of times."""
        ...

    def abort(self, exc: BaseException) -> None:
        """Wake a pending read (of `chunks` or `read`) with ``exc`` and drop the connection."""
        ...


class Transport(Protocol):
    """Sends requests: `send` returns once the response headers are in."""

    async def send(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...
