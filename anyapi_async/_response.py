"""Raw responses: ``with_raw_response`` and ``with_streaming_response``, as the openai SDK has them.

Both are made by the client's request pipeline (`Pipeline.send_raw` and `Pipeline.open`):
the same auth, retries, timeouts, observers, error mapping and ``max_concurrency`` slot as
every other call. A status error
raises as usual; what these add is the status, headers and bytes of a successful answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from ._transports.base import DEFAULT_MAX_RESPONSE_SIZE

if TYPE_CHECKING:
    from ._meta import ResponseInfo
    from ._transports.base import Response

__all__ = ["APIResponse", "StreamedAPIResponse", "StreamedResponseManager"]

R = TypeVar("R")


class APIResponse(Generic[R]):
    """A response read whole: its status, headers and body, and `parse` for the object.

    ```python
    raw = await client.chat.completions.with_raw_response.create(model=m, messages=msgs)
    print(raw.status_code, raw.headers.get("x-request-id"))
    completion = raw.parse()
    ```

    For ``stream=True`` the body is not read here: `parse` returns the `AsyncStream`, and
    `content` raises (use ``with_streaming_response`` for the bytes of a stream).
    """

    __slots__ = ("_body", "_parse", "_parsed", "headers", "http", "status_code")

    def __init__(
        self,
        http: ResponseInfo,
        body: bytes | None,
        parse: Callable[[], R],
    ) -> None:
        #: Headers, request id, rate limits, timings and attempts (`ResponseInfo`).
        self.http = http
        self.status_code: int = http.status_code
        self.headers: Mapping[str, str] = http.headers
        self._body = body
        self._parse = parse
        self._parsed: list[R] = []

    @property
    def content(self) -> bytes:
        """The body's bytes, as the server sent them."""
        if self._body is None:
            raise TypeError(
                "a streamed response has no content to read whole: iterate parse(), or use "
                "with_streaming_response for its bytes"
            )
        return self._body

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8", "replace")

    def parse(self) -> R:
        """The object the call returns without ``with_raw_response`` (decoded once)."""
        if not self._parsed:
            self._parsed.append(self._parse())
        return self._parsed[0]

    def __repr__(self) -> str:
        return f"<APIResponse status_code={self.status_code} request_id={self.http.request_id!r}>"


class StreamedAPIResponse(Generic[R]):
    """A response whose body has not been read: `iter_bytes`, `iter_lines`, or `parse`.

    Read the body one way only. The connection (and the ``max_concurrency`` slot) is
    released when the ``async with`` block that made it ends.
    """

    __slots__ = ("_max_size", "_parse", "_parsed", "_response", "headers", "http", "status_code")

    def __init__(
        self,
        response: Response,
        http: ResponseInfo,
        parse: Callable[[Response], Awaitable[R]],
        *,
        max_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        self._response = response
        self._max_size = max_size
        self.http = http
        self.status_code: int = http.status_code
        self.headers: Mapping[str, str] = http.headers
        self._parse = parse
        self._parsed: list[R] = []

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive.

        The ``read`` timeout bounds each silence between two received bytes; nothing
        bounds the whole body (``max_response_size`` and the whole-body ``read`` bound are
        for `read`), and ``idle``/``first_event`` are limits on stream events, which raw
        bytes are not: stop reading when you have had enough.
        """
        async for data in self._response.chunks():
            yield data

    async def iter_lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive, without their line endings (``\\n``, ``\\r\\n``);
        bounded as `iter_bytes` is."""
        pending = b""
        async for data in self._response.chunks():
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")

    async def read(self) -> bytes:
        """The rest of the body, whole: at most the client's ``max_response_size``
        (`ResponseTooLargeError` beyond), and all of it within the ``read`` timeout, as for
        a non-streamed call."""
        return await self._response.read(self._max_size)

    async def parse(self) -> R:
        """What the call returns without ``with_streaming_response`` (for a chat stream,
        its `AsyncStream` of chunks), built over this response's body."""
        if not self._parsed:
            self._parsed.append(await self._parse(self._response))
        return self._parsed[0]

    def __repr__(self) -> str:
        return (
            f"<StreamedAPIResponse status_code={self.status_code} "
            f"request_id={self.http.request_id!r}>"
        )


class StreamedResponseManager(Generic[R]):
    """``async with`` it to send the request; the block's end releases the connection."""

    __slots__ = ("_close", "_open", "_response")

    def __init__(
        self,
        open_: Callable[[], Awaitable[tuple[StreamedAPIResponse[R], Callable[[], None]]]],
    ) -> None:
        self._open = open_
        self._close: Callable[[], None] | None = None
        self._response: StreamedAPIResponse[R] | None = None

    async def __aenter__(self) -> StreamedAPIResponse[R]:
        self._response, self._close = await self._open()
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        close, self._close = self._close, None
        response, self._response = self._response, None
        try:
            if response is not None:
                for parsed in response._parsed:
                    aclose = getattr(parsed, "aclose", None)
                    if aclose is not None:  # a stream parse() opened: closed with the block
                        await aclose()
        finally:
            # The connection and the max_concurrency slot go back whatever happened above
            # (a failing aclose, a cancellation).
            if close is not None:
                close()
