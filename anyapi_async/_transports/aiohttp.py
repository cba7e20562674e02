"""The aiohttp transport: one pooled session, timeouts, redirects and error translation.

The only module that imports aiohttp; it turns aiohttp's exceptions into the library's
at one edge (`translate_error`) and offers the `Response` contract of `.base`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from .._config import DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Timeout, transport_form
from .._exceptions import APIConnectionError, APIError, APITimeoutError, ResponseTooLargeError
from .._settings import SECRET_HEADERS
from .._waits import timeout_after
from .base import DEFAULT_MAX_RESPONSE_SIZE

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from .base import Request

__all__ = ["AiohttpResponse", "AiohttpTransport", "BodyIterator", "translate_error"]

DEFAULT_DNS_CACHE_TTL: Final = 300
MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset((301, 302, 303, 307, 308))


def _client_timeouts(timeout: Timeout) -> tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout]:
    # Indexed by Request.watched: a watched request gets no sock_read, whose timer aiohttp
    # re-arms on every packet received (the pipeline's watchdog bounds those waits).
    return (
        aiohttp.ClientTimeout(total=None, sock_connect=timeout.connect, sock_read=timeout.read),
        aiohttp.ClientTimeout(total=None, sock_connect=timeout.connect),
    )


class AiohttpResponse:
    """A `Response` over an `aiohttp.ClientResponse`."""

    __slots__ = ("_closed", "_read_limit", "_resp", "headers", "status", "url")

    def __init__(self, resp: aiohttp.ClientResponse, *, read_limit: float | None = None) -> None:
        self._resp = resp
        self._closed = False
        #: Seconds within which `read` must have the whole body (the ``read`` timeout).
        self._read_limit = read_limit
        self.status: int = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.url = str(resp.url)

    @property
    def content_type(self) -> str:
        # The media type alone, split off by hand: aiohttp's own parse (parameters and
        # all) is a few Python calls more on every stream's way to its first event.
        raw = self.headers.get("Content-Type")
        if raw is None:
            return "application/octet-stream"  # RFC 9110's default, as aiohttp has it
        return raw.partition(";")[0].strip().lower()

    async def read(self, limit: int = DEFAULT_MAX_RESPONSE_SIZE) -> bytes:
        """The whole body, refusing one larger than ``limit`` bytes; releases the connection.

        The whole body must arrive within the ``read`` timeout, counted from this call: a
        server trickling a byte at a time cannot keep it waiting forever.
        """
        resp = self._resp
        timer = None
        seconds = self._read_limit
        if seconds is not None and not resp.content.is_eof():
            timer = asyncio.get_running_loop().call_later(seconds, self._body_too_slow, seconds)
        try:
            length = resp.content_length
            if length is not None and length <= limit:
                return await resp.read()
            if length is not None:
                raise _too_large(limit)
            parts: list[bytes] = []
            size = 0
            content = resp.content
            while data := await content.readany():
                size += len(data)
                if size > limit:
                    raise _too_large(limit)
                parts.append(data)
            return b"".join(parts)
        except NETWORK_ERRORS as exc:
            self.close()
            raise translate_error(exc) from exc
        except BaseException:
            self.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self.release()

    def _body_too_slow(self, seconds: float) -> None:
        self.abort(
            APITimeoutError(
                f"Timed out reading the response body: all of it must arrive within the "
                f"read limit ({seconds:g} s)",
                limit="read",
            )
        )

    def chunks(self) -> BodyIterator:
        """The body as it arrives; a transfer that breaks raises `APIConnectionError`."""
        return BodyIterator(self._resp)

    def at_eof(self) -> bool:
        """Whether the whole body has been received."""
        return self._resp.content.at_eof()

    def release(self) -> None:
        """Give the connection back to the pool (or close it if the body was not read)."""
        if not self._closed:
            self._closed = True
            self._resp.release()

    def close(self) -> None:
        """Close the connection at once; safe to call from any task, any number of times."""
        self._closed = True
        resp = self._resp
        resp.close()
        connection = resp.connection
        if connection is not None:
            # aiohttp leaves it alone once its loop is closed (a stream left open when
            # asyncio.run() returned, whose pool closed its socket then): let it go, so it
            # is not reported as an unclosed connection later.
            connection.close()

    def abort(self, exc: BaseException) -> None:
        """Wake a pending read with ``exc`` and drop the connection."""
        if not self._resp.content.is_eof():
            self._resp.content.set_exception(exc)
        self.close()


def _too_large(limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"Response body exceeds max_response_size ({limit} bytes); "
        "raise the limit if such bodies are expected."
    )


#: What aiohttp raises for network trouble; everything else is a bug to see, not to wrap.
NETWORK_ERRORS: Final = (asyncio.TimeoutError, aiohttp.ClientError)


def translate_error(exc: BaseException, *, reading_stream: bool = False) -> APIError:
    """The library's error for one of `NETWORK_ERRORS`, to raise ``from exc``.

    Most specific first: aiohttp's timeout classes are also `asyncio.TimeoutError`.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError("Timed out connecting to the server", limit="connect")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return APITimeoutError("Timed out reading from the server (read limit)", limit="read")
    if isinstance(exc, asyncio.TimeoutError):
        return APITimeoutError("Request exceeded its total timeout", limit="total")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return APIConnectionError(f"The response was cut before its end: {exc}")
    what = "The stream broke" if reading_stream else "Connection error"
    return APIConnectionError(f"{what}: {type(exc).__name__}: {exc}")


class BodyIterator:
    """The body as it arrives; a transfer that breaks raises `APIConnectionError`.

    A plain iterator rather than an async generator, so an abandoned one needs no
    finalisation by the event loop.
    """

    __slots__ = ("_readany",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._readany = resp.content.readany

    def __aiter__(self) -> BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._readany()
        except NETWORK_ERRORS as exc:
            raise translate_error(exc, reading_stream=True) from exc
        except RuntimeError as exc:
            # aiohttp's word for a read started after its connection was closed.
            if "Connection closed" not in str(exc):
                raise
            raise APIConnectionError(f"The stream broke: {exc}") from exc
        if not data:
            raise StopAsyncIteration
        return data


def _origin(url: URL) -> tuple[str | None, str | None, int | None]:
    return (url.scheme, url.host, url.port)


async def _close_at_loop_shutdown(
    holder: list[aiohttp.ClientSession],
) -> AsyncGenerator[None, None]:
    """Suspended for the life of a pool, in the pool's loop.

    Runners that shut a loop down properly (`asyncio.run`, `asyncio.Runner`, pytest-asyncio)
    close every suspended async generator first, so this closes the pool inside its own
    loop, before the loop closes and its sockets could no longer be closed cleanly.
    """
    try:
        yield
    finally:
        if holder:
            session = holder.pop()
            if not session.closed:
                await session.close()


class AiohttpTransport:
    """Sends requests through one `aiohttp.ClientSession` with a pooled connector.

    The session is created on first use inside the running loop, so a transport (and the
    client holding it) may be built at import time. A caller-owned session is used as is and
    never closed here.

    An owned pool belongs to its loop. When that loop shuts down (`asyncio.run` returning),
    the pool is closed with it, and the next request from a new loop opens a fresh one: a
    module-level client works across several ``asyncio.run()`` calls and pytest-asyncio's
    per-test loops. Two loops running at the same time cannot share it.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_host: int = 0,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        verify: bool | ssl.SSLContext = True,
        trust_env: bool = False,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._loop: AbstractEventLoop | None = None
        self._limits = (max_connections, max_connections_per_host, keepalive_timeout)
        self._verify = verify
        self._trust_env = trust_env
        self._closed = False
        # The guard that closes the pool when its loop shuts down, and what it closes.
        self._guard: AsyncGenerator[None, None] | None = None
        self._guarded: list[aiohttp.ClientSession] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and (self._loop is loop or not self._owns_session):
            return session
        if self._closed:
            raise RuntimeError("Cannot send a request: the client has been closed.")
        if session is not None:
            old = self._loop
            if not session.closed and not (old is not None and old.is_closed()):
                # Its pooled sockets belong to the other loop, which is still open: they
                # cannot be moved. Refuse instead of hanging or leaking.
                raise RuntimeError(
                    "This AsyncClient's connection pool belongs to another event loop (the "
                    "one it was first used in), which is still open. Create one client per "
                    "event loop, for example with `async with AsyncClient() as client:` "
                    "inside your async main."
                )
            # The old loop is gone (its runner closed the pool, see _close_at_loop_shutdown):
            # drop it and open a fresh pool in this loop.
            self._stop_guard()
            if not session.closed:  # a loop closed without shutting down: nothing to do
                session.detach()
            self._session = None
        limit, per_host, keepalive = self._limits
        connector = aiohttp.TCPConnector(
            limit=limit,
            limit_per_host=per_host,
            keepalive_timeout=keepalive,
            ttl_dns_cache=DEFAULT_DNS_CACHE_TTL,
            ssl=self._verify if isinstance(self._verify, ssl.SSLContext) else bool(self._verify),
        )
        session = aiohttp.ClientSession(
            connector=connector, trust_env=self._trust_env, auto_decompress=True
        )
        self._session = session
        self._loop = loop
        self._guarded = [session]
        self._guard = guard = _close_at_loop_shutdown(self._guarded)
        # Start it here, in its loop: that registers it for the loop's shutdown.
        with contextlib.suppress(StopIteration):
            cast(Any, guard.asend(None)).send(None)
        return session

    def _stop_guard(self) -> None:
        """End the pool's guard at once, closing nothing and scheduling no task."""
        self._guarded.clear()
        guard, self._guard = self._guard, None
        if guard is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                cast(Any, guard.aclose()).send(None)  # nothing left for it to close

    async def send(self, request: Request) -> AiohttpResponse:
        """Send ``request`` and return once the response headers are in."""
        session = self._get_session()
        timeout = request.timeout
        client_timeout = transport_form(timeout, _client_timeouts)[request.watched]
        if request.deadline is not None:
            remaining = request.deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise APITimeoutError("Request exceeded its total timeout", limit="total")
            client_timeout = aiohttp.ClientTimeout(
                total=remaining,
                sock_connect=timeout.connect,
                sock_read=None if request.watched else timeout.read,
            )
        url = request.url
        headers: Mapping[str, str] = request.headers
        for _ in range(MAX_REDIRECTS + 1):
            pending = session.request(
                request.method,
                url,
                data=request.body,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
            )
            try:
                if timeout.first_event is None:
                    resp = await pending
                else:
                    resp = await self._within_first_event_limit(pending, timeout.first_event)
            except NETWORK_ERRORS as exc:
                raise translate_error(exc) from exc
            if resp.status not in _REDIRECTS or "Location" not in resp.headers:
                # A watched request's body is bounded by the pipeline's watchdog.
                return AiohttpResponse(resp, read_limit=None if request.watched else timeout.read)
            headers = self._redirect_headers(resp, headers)
            url = str(resp.url.join(URL(resp.headers["Location"])))
            resp.release()
        raise APIConnectionError(f"Too many redirects (more than {MAX_REDIRECTS})")

    @staticmethod
    async def _within_first_event_limit(
        pending: Awaitable[aiohttp.ClientResponse], limit: float
    ) -> aiohttp.ClientResponse:
        try:
            async with timeout_after(limit):
                return await pending
        except asyncio.TimeoutError as exc:
            if isinstance(exc, aiohttp.ClientError):  # aiohttp's own connect/read limits
                raise
            raise APITimeoutError(
                "Timed out waiting for the response headers (first_event limit)",
                limit="first_event",
            ) from exc

    @staticmethod
    def _redirect_headers(
        resp: aiohttp.ClientResponse, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        # Credentials go only to the origin they were meant for (aiohttp does the same in
        # recent versions; we follow redirects ourselves so every version behaves alike).
        target = resp.url.join(URL(resp.headers["Location"]))
        if _origin(target) == _origin(resp.url):
            return headers
        return {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}

    async def aclose(self) -> None:
        """Close the session if we own it; idempotent.

        From another loop than the pool's: nothing to do if that loop's runner already
        closed the pool; a `RuntimeError` if the pool is still open (its sockets can only
        be closed in their own loop).
        """
        self._closed = True
        session = self._session
        if session is None or not self._owns_session:
            self._session = None
            return
        loop = self._loop
        if session.closed or loop is asyncio.get_running_loop():
            self._stop_guard()
            self._session = None
            await session.close()
            return
        if loop is not None and not loop.is_closed():
            self._closed = False
            raise RuntimeError(
                "Close the AsyncClient in the event loop it was used in "
                "(its connection pool belongs to that loop, which is still open)."
            )
        self._stop_guard()
        self._session = None
        session.detach()
        raise RuntimeError(
            "The AsyncClient's event loop was closed without shutting down its async "
            "generators (asyncio.run() does that), so its connections could not be closed "
            "cleanly; they are left to the garbage collector."
        )

    def __del__(self, _warn: Any = warnings.warn) -> None:
        self._stop_guard()
        session = self._session
        if self._owns_session and session is not None and not session.closed:
            # Never schedule work here: the loop may be closing or closed already.
            _warn(
                "AsyncClient was garbage-collected without being closed; use "
                "`async with AsyncClient() as client:` or `await client.aclose()`.",
                ResourceWarning,
                stacklevel=2,
            )
            session.detach()
