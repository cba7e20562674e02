"""Raw responses: ``with_raw_response`` and ``with_streaming_response``, as the openai SDK has them.

Both are made by the client's request pipeline (`Pipeline.send_raw` and `Pipeline.open`):
the same auth, retries, timeouts, observers, error mapping and ``max_concurrency`` slot as
every other call. A status error
raises as usual; what these add is the status, headers and bytes of a successful answer,
and what the openai SDK's responses tell about the exchange: ``request_id``, ``url``,
``elapsed``, ``retries_taken`` and ``http_request`` (credentials masked).
"""

from __future__ import annotations

import asyncio
import codecs
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from ._exceptions import APIConnectionError, APIResponseValidationError
from ._streaming import AsyncStream, abort_stream
from ._transports.base import DEFAULT_MAX_RESPONSE_SIZE

if TYPE_CHECKING:
    from ._meta import ResponseInfo
    from ._transports.base import Response

__all__ = ["APIResponse", "RequestInfo", "StreamedAPIResponse", "StreamedResponseManager"]

R = TypeVar("R")

_NOT_ENDED = (
    "elapsed is known once the response has been read or closed (as httpx's Response.elapsed)"
)


class RequestInfo:
    """The request a raw response answered (``raw.http_request``): what was sent, as sent
    by the attempt that got the response, with credentials masked.

    ``headers`` hold ``***`` in place of ``Authorization``, ``api-key`` and the like, and
    ``url`` in place of the values of key-like query parameters: the API key is never here.
    """

    __slots__ = ("headers", "method", "url")

    def __init__(self, method: str, url: str, headers: Mapping[str, str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers

    def __repr__(self) -> str:
        return f"<RequestInfo {self.method} {self.url}>"


def _elapsed(started: float, ended: float | None) -> timedelta:
    if ended is None:
        raise RuntimeError(_NOT_ENDED)
    return timedelta(seconds=max(0.0, ended - started))


class APIResponse(Generic[R]):
    """A response read whole: its status, headers and body, and `parse` for the object.

    ```python
    raw = await client.chat.completions.with_raw_response.create(model=m, messages=msgs)
    print(raw.status_code, raw.request_id, raw.retries_taken, raw.elapsed)
    completion = raw.parse()
    ```

    For ``stream=True`` the body is not read here: `parse` returns the `AsyncStream`, and
    `content` raises (use ``with_streaming_response`` for the bytes of a stream).
    """

    __slots__ = (
        "_body",
        "_parse",
        "_parsed",
        "_started",
        "headers",
        "http",
        "http_request",
        "status_code",
        "url",
    )

    def __init__(
        self,
        http: ResponseInfo,
        body: bytes | None,
        parse: Callable[[], R],
        *,
        request: RequestInfo | None = None,
        url: str | None = None,
        started: float | None = None,
    ) -> None:
        #: Headers, request id, rate limits, timings and attempts (`ResponseInfo`).
        self.http = http
        self.status_code: int = http.status_code
        self.headers: Mapping[str, str] = http.headers
        #: The request that got this response (`RequestInfo`: method, url, headers with
        #: credentials masked), or ``None`` where the pipeline did not say.
        self.http_request: RequestInfo | None = request
        #: The URL the response came from, key-like query values masked.
        self.url: str | None = url if url is not None or request is None else request.url
        self._started = http.timings.started if started is None else started
        self._body = body
        self._parse = parse
        self._parsed: list[R] = []

    @property
    def request_id(self) -> str | None:
        """The server's request id (``x-request-id`` or one of the usual other names)."""
        return self.http.request_id

    @property
    def retries_taken(self) -> int:
        """How many retries were made before this response: ``0`` when the first attempt
        got it (``http.attempts - 1``)."""
        return self.http.attempts - 1

    @property
    def elapsed(self) -> timedelta:
        """Time from sending the request of the attempt that got this response to the end
        of its body, as httpx's ``Response.elapsed``. For ``stream=True`` it is known once
        the stream has ended or been closed (`RuntimeError` before)."""
        return _elapsed(self._started, self.http.timings.finished)

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
    """A response whose body has not been read: `iter_bytes`, `iter_text`, `iter_lines`,
    `read`, `text`, `json`, or `parse`.

    Read the body one way only. The connection (and the ``max_concurrency`` slot) is
    released by `close`, which the end of the ``async with`` block that made it calls. A
    response dropped without being closed (a manager entered by hand and forgotten) is
    released when it is garbage-collected, with a `ResourceWarning`.
    """

    __slots__ = (
        "_closed",
        "_ended",
        "_loop",
        "_max_size",
        "_parse",
        "_parsed",
        "_release",
        "_response",
        "_started",
        "headers",
        "http",
        "http_request",
        "status_code",
        "url",
    )

    def __init__(
        self,
        response: Response,
        http: ResponseInfo,
        parse: Callable[[Response], Awaitable[R]],
        *,
        max_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        close: Callable[[], None] | None = None,
        request: RequestInfo | None = None,
        url: str | None = None,
        started: float | None = None,
    ) -> None:
        self._response = response
        self._max_size = max_size
        self.http = http
        self.status_code: int = http.status_code
        self.headers: Mapping[str, str] = http.headers
        #: The request that got this response (`RequestInfo`: method, url, headers with
        #: credentials masked), or ``None`` where the pipeline did not say.
        self.http_request: RequestInfo | None = request
        #: The URL the response came from, key-like query values masked.
        self.url: str | None = url if url is not None or request is None else request.url
        self._parse = parse
        self._parsed: list[R] = []
        # Lets go of the connection and the max_concurrency slot (the pipeline's).
        self._release = close
        self._closed = False
        # The loop it was made on (None outside one): the finaliser releases on it.
        self._loop = _running_loop()
        self._started = http.timings.started if started is None else started
        self._ended: float | None = None

    @property
    def request_id(self) -> str | None:
        """The server's request id (``x-request-id`` or one of the usual other names)."""
        return self.http.request_id

    @property
    def retries_taken(self) -> int:
        """How many retries were made before this response: ``0`` when the first attempt
        got it (``http.attempts - 1``)."""
        return self.http.attempts - 1

    @property
    def elapsed(self) -> timedelta:
        """Time from sending the request of the attempt that got this response until its
        body was read to the end or the response closed, as httpx's ``Response.elapsed``
        (`RuntimeError` before either)."""
        # The end of the body as this response saw it, or as the stream parse() opened (or
        # the completion it read) recorded it in the shared timings.
        ended = self._ended if self._ended is not None else self.http.timings.finished
        if ended is None and self._response.at_eof():
            ended = self._ended = self._now()
        return _elapsed(self._started, ended)

    def _now(self) -> float:
        # The clock of the pipeline's timings (loop.time()); asyncio's default loops use
        # time.monotonic, the fallback when there is no loop.
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _mark_ended(self) -> None:
        if self._ended is None:
            self._ended = self._now()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive.

        The ``read`` timeout bounds each silence between two received bytes; nothing
        bounds the whole body (``max_response_size`` and the whole-body ``read`` bound are
        for `read`), and ``idle``/``first_event`` are limits on stream events, which raw
        bytes are not: stop reading when you have had enough.
        """
        async for data in self._response.chunks():
            yield data
        self._mark_ended()

    async def iter_text(self) -> AsyncIterator[str]:
        """The body as UTF-8 text, piece by piece as it arrives (a character split between
        two reads comes whole with the second); bounded as `iter_bytes` is."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        async for data in self._response.chunks():
            text = decoder.decode(data)
            if text:
                yield text
        text = decoder.decode(b"", final=True)
        self._mark_ended()
        if text:
            yield text

    async def iter_lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive, without their line endings (``\\n``, ``\\r\\n``);
        bounded as `iter_bytes` is."""
        pending = b""
        async for data in self._response.chunks():
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        self._mark_ended()
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")

    async def read(self) -> bytes:
        """The rest of the body, whole: at most the client's ``max_response_size``
        (`ResponseTooLargeError` beyond), and all of it within the ``read`` timeout, as for
        a non-streamed call."""
        data = await self._response.read(self._max_size)
        self._mark_ended()
        return data

    async def text(self) -> str:
        """The rest of the body, read as `read` does, decoded as UTF-8."""
        return (await self.read()).decode("utf-8", "replace")

    async def json(self) -> Any:
        """The rest of the body, read as `read` does, decoded as JSON (objects are dicts);
        a body that is not JSON raises `APIResponseValidationError`, the bytes kept."""
        data = await self.read()
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise APIResponseValidationError(
                "The response is not valid JSON",
                status_code=self.status_code,
                body=data,
                headers=self.headers,
            ) from exc

    async def parse(self) -> R:
        """What the call returns without ``with_streaming_response`` (for a chat stream,
        its `AsyncStream` of chunks), built over this response's body."""
        if not self._parsed:
            self._parsed.append(await self._parse(self._response))
        return self._parsed[0]

    async def close(self) -> None:
        """Release the connection and the ``max_concurrency`` slot now, closing a stream
        `parse` opened; idempotent. The end of the ``async with`` block calls it."""
        if self._closed:
            return
        self._closed = True
        try:
            for parsed in self._parsed:
                aclose = getattr(parsed, "aclose", None)
                if aclose is not None:  # a stream parse() opened: closed with the response
                    await aclose()
        finally:
            # The connection and the slot go back whatever happened above (a failing
            # aclose, a cancellation).
            self._let_go()

    def _let_go(self) -> None:
        self._mark_ended()
        release = self._release
        if release is not None:
            self._release = None
            release()
            return
        response = self._response
        if response.at_eof():
            response.release()
        else:
            response.close()

    def _drop(self) -> None:
        # A stream parse() opened is this response's: closed with it (its reader, if any,
        # raises), so that it neither outlives it nor warns a second time.
        for parsed in self._parsed:
            if isinstance(parsed, AsyncStream):
                abort_stream(
                    parsed,
                    APIConnectionError("The streaming response was garbage-collected while open"),
                )
        self._let_go()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        # Nothing else will give back the connection and the max_concurrency slot: do it
        # here with plain callbacks (no task), as AsyncStream.__del__ does, unless the loop
        # is gone; then warn, as unclosed files do (source=self: PYTHONTRACEMALLOC shows
        # where the response was made).
        loop = self._loop
        try:
            if loop is None or _running_loop() is loop:
                self._drop()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self._drop)
        except RuntimeError:  # the loop closed meanwhile: nothing can be released cleanly
            pass
        _warn(
            "StreamedAPIResponse was garbage-collected while open; use `async with "
            "client.chat.completions.with_streaming_response.create(...)` or "
            "`await response.close()`",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )

    def __repr__(self) -> str:
        return (
            f"<StreamedAPIResponse status_code={self.status_code} "
            f"request_id={self.http.request_id!r}>"
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class StreamedResponseManager(Generic[R]):
    """``async with`` it to send the request; the block's end releases the connection.

    Entered by hand (``await manager.__aenter__()``), the response must be closed
    (``await response.close()``); one dropped open is released, with a `ResourceWarning`,
    when it is garbage-collected.
    """

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
                await response.close()
        finally:
            # The connection and the max_concurrency slot go back whatever happened above
            # (a failing aclose, a cancellation); the pipeline's close is idempotent.
            if close is not None:
                close()
