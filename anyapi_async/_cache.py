"""The cache step of the request pipeline: keys, stored entries, replay, single-flight.

```text
Pipeline.send / stream ── cache set? ── no ──▶ the request as usual
                             │ yes
                             ▼
          key = sha256(namespace, method, path + query, stream?, body bytes)
          in flight?  ──▶ wait for it, share its entry (or its error)
          backend.get ──▶ hit: decode the entry (a replayed body or event stream)
          miss ──▶ the request, through a Recorder transport ──▶ whole success? store
```

Only whole successes are stored: a 2xx body that decoded, or a stream that ended
normally (its event bytes, replayed through the ordinary stream code on a hit). The API
key and headers are not part of the key. Backends are `anyapi_async.cache` objects; any
fault of theirs is one warning and a miss, never a failed call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ._transports.base import DEFAULT_MAX_RESPONSE_SIZE

if TYPE_CHECKING:
    from ._transports.base import Request, Response, Transport
    from .cache import Cache

__all__ = [
    "CACHE_HEADER",
    "CacheStep",
    "Entry",
    "Flight",
    "Recorder",
    "ReplayResponse",
    "stored_if_valid",
    "validator",
]

#: The header a replayed response carries (``completion.http.cache_hit`` reads it).
CACHE_HEADER: Final = "x-anyapi-cache"
#: Response headers kept with an entry (others, rate limits first, would be stale).
KEPT_HEADERS: Final = (
    "content-type", "x-request-id", "request-id", "x-amzn-requestid", "cf-ray",
    "openai-model", "openai-processing-ms",
)
_VERSION: Final = b"anyapi-cache-1\0"

logger = logging.getLogger("anyapi_async")


# What a helper that validates a call's result after the pipeline (parse()) asks of the
# cache step: run this check on a miss's result before storing it.
_VALIDATOR: ContextVar[Callable[[Any], object] | None] = ContextVar(
    "anyapi_cache_validator", default=None
)


@contextlib.contextmanager
def stored_if_valid(check: Callable[[Any], object]) -> Iterator[None]:
    """Around a call whose result is validated after it returns (``parse()``): the cache
    step stores a miss's result only if ``check(result)`` does not raise (its error is
    then the call's)."""
    token = _VALIDATOR.set(check)
    try:
        yield
    finally:
        _VALIDATOR.reset(token)


def validator() -> Callable[[Any], object] | None:
    """The check `stored_if_valid` set for the current call, if any."""
    return _VALIDATOR.get()


class Entry(msgspec.Struct, array_like=True, gc=False):
    """One stored response: a body (``stream`` false) or a stream's event bytes."""

    stream: bool
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes


_encode_entry = msgspec.msgpack.Encoder().encode
_decode_entry = msgspec.msgpack.Decoder(Entry).decode


def entry_from(stream: bool, response: Response, body: bytes) -> Entry:
    headers = response.headers
    kept = {name: headers[name] for name in KEPT_HEADERS if name in headers}
    return Entry(stream, response.status, response.content_type, kept, body)


class ReplayResponse:
    """A stored entry as a transport `Response`: the stream and body code read it as if
    it had just arrived (so every helper works on a hit). Nothing to release."""

    __slots__ = ("_entry", "_eof", "headers", "status", "url")

    def __init__(self, entry: Entry, url: str) -> None:
        self._entry = entry
        self.status = entry.status
        self.headers: Mapping[str, str] = {**entry.headers, CACHE_HEADER: "hit"}
        self.url = url
        self._eof = False

    @property
    def content_type(self) -> str:
        return self._entry.content_type

    async def read(self, limit: int = DEFAULT_MAX_RESPONSE_SIZE) -> bytes:
        self._eof = True
        return self._entry.body

    async def chunks(self) -> AsyncIterator[bytes]:
        self._eof = True
        yield self._entry.body

    def at_eof(self) -> bool:
        return self._eof

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self, exc: BaseException) -> None:
        pass


class RecordingResponse:
    """A live `Response` passed through, keeping a copy of its body as it is read."""

    __slots__ = ("_response", "ended", "parts")

    def __init__(self, response: Response) -> None:
        self._response = response
        self.parts: list[bytes] = []
        #: Called once when the reader lets go of the response (release, close, abort).
        self.ended: Any = None

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def url(self) -> str:
        return self._response.url

    @property
    def content_type(self) -> str:
        return self._response.content_type

    async def read(self, limit: int = DEFAULT_MAX_RESPONSE_SIZE) -> bytes:
        data = await self._response.read(limit)
        self.parts = [data]
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        parts = self.parts
        async for data in self._response.chunks():
            parts.append(data)
            yield data

    def at_eof(self) -> bool:
        return self._response.at_eof()

    def _end(self) -> None:
        ended, self.ended = self.ended, None
        if ended is not None:
            ended()

    def release(self) -> None:
        self._response.release()
        self._end()

    def close(self) -> None:
        self._response.close()
        self._end()

    def abort(self, exc: BaseException) -> None:
        self._response.abort(exc)
        self._end()


class Recorder:
    """A `Transport` over the pipeline's own, recording the last response it returned."""

    __slots__ = ("last", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.last: RecordingResponse | None = None

    async def send(self, request: Request) -> Response:
        response = RecordingResponse(await self.transport.send(request))
        self.last = response
        return response

    async def aclose(self) -> None:  # pragma: no cover - the pipeline closes its own
        pass


class Flight:
    """A call in flight for a key: identical calls wait on ``done`` and share its outcome
    (an entry, an error, or neither: the leader stopped, so they try themselves)."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None


class CacheStep:
    """What the pipeline (and its copies) share about one cache backend."""

    __slots__ = ("_failing", "backend", "flights", "namespace", "pending")

    def __init__(self, backend: Cache) -> None:
        for name in ("get", "set", "aclose"):
            if not callable(getattr(backend, name, None)):
                raise TypeError(
                    f"cache must be a cache backend (anyapi_async.cache.Cache: get, set, "
                    f"aclose), not {type(backend).__name__}"
                )
        namespace = getattr(backend, "namespace", "")
        if not isinstance(namespace, str):
            raise TypeError("a cache's namespace must be a str")
        self.backend = backend
        self.namespace = namespace.encode()
        self.flights: dict[str, Flight] = {}
        # Writes of streams that ended (scheduled from the stream's last read).
        self.pending: set[asyncio.Task[None]] = set()
        self._failing = False

    def key(self, method: str, target: str, stream: bool, body: bytes | None) -> str:
        """The entry's key: what was asked, byte for byte (never the API key)."""
        digest = hashlib.sha256(_VERSION)
        digest.update(self.namespace + b"\0" + method.encode() + b"\0" + target.encode()
                      + (b"\0s\0" if stream else b"\0b\0"))
        if body:
            digest.update(body)
        return digest.hexdigest()

    def _fault(self, what: str, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logger.warning(
                "The response cache (%s) failed to %s; calls go to the server until it "
                "works again: %s: %s",
                type(self.backend).__name__, what, type(exc).__name__, exc,
            )

    def _ok(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("The response cache (%s) works again", type(self.backend).__name__)

    async def lookup(self, key: str, stream: bool) -> Entry | None:
        """The stored entry, or ``None`` (missing, undecodable, or the backend failed)."""
        try:
            value = await self.backend.get(key)
        except Exception as exc:
            self._fault("read", exc)
            return None
        self._ok()
        if value is None:
            return None
        try:
            entry = _decode_entry(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.debug("A cache entry could not be decoded: treated as a miss")
            return None
        if entry.stream is not stream or not 200 <= entry.status < 300:
            return None
        return entry

    async def store(self, key: str, entry: Entry) -> None:
        try:
            await self.backend.set(key, _encode_entry(entry))
        except Exception as exc:
            self._fault("write", exc)
        else:
            self._ok()

    def store_later(self, key: str, entry: Entry, flight: Flight) -> None:
        """Store from a synchronous callback (a stream's end); the flight stays registered,
        and serves new identical calls, until the entry is written."""

        async def write() -> None:
            try:
                await self.store(key, entry)
            finally:
                if self.flights.get(key) is flight:
                    del self.flights[key]

        task = asyncio.ensure_future(write())
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def flush(self) -> None:
        """Wait for the writes still under way."""
        while self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        try:
            await self.backend.aclose()
        except Exception as exc:  # closing a broken backend must not fail the client's close
            self._fault("close", exc)
