"""`AsyncClient`: settings, environment defaults, open/close, and the request path."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload
from urllib.parse import urlencode

import msgspec

from ._config import DEFAULT_TIMEOUT, NOT_GIVEN, Limits, NotGiven, Timeout, TimeoutTypes
from ._decode import JSON_DECODER, decode_lenient, decoder_for
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    error_from_payload,
    is_error_object,
    make_status_error,
)
from ._hooks import AttemptInfo, Hooks
from ._logging import redact_url, setup_logging, with_log_hook
from ._meta import ResponseInfo, Timings, request_id_of
from ._response import APIResponse, StreamedAPIResponse
from ._retry import DEFAULT_MAX_RETRIES, CallObserver, Retrier, RetryPolicy
from ._settings import (
    DEFAULT_BASE_URL,
    ENV_BASE_URL,
    check_base_url,
    check_header,
    check_query,
    pool_limits,
    redact_headers,
    resolve_api_key,
    split_query,
)
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._streaming import AsyncStream, abort_stream, hold_slot, open_stream
from ._transport import (
    DEFAULT_MAX_RESPONSE_SIZE,
    AiohttpTransport,
    Request,
    Response,
    Transport,
    timeout_after,
)
from ._types import ChatCompletionChunk, CompletionUsage, keep_response
from ._version import __version__

if TYPE_CHECKING:
    import aiohttp

    from ._resources import Chat, Models

__all__ = [
    "AsyncClient",
    "call_observer",
    "call_options",
    "encode_body",
    "observe_calls",
    "open_response",
    "request",
    "request_stream",
]

T = TypeVar("T")

#: Largest error body kept for an exception.
MAX_ERROR_BODY: Final = 1024 * 1024

logger = logging.getLogger("anyapi_async")
setup_logging()  # ANYAPI_LOG=debug|info

ApiKey = str | Callable[[], Awaitable[str]] | None
#: What `AsyncClient.post` sends: a dict or Struct as JSON, bytes as they are.
Body = Mapping[str, Any] | msgspec.Struct | bytes | None


class _Slots:
    """The ``max_concurrency`` semaphore of a client and its copies, one per event loop.

    An `asyncio.Semaphore` binds to the loop that first waits on it, and slots held by
    streams still open when their loop shut down would never come back: a client used from
    a new loop (a second ``asyncio.run()``, like its fresh connection pool) gets a fresh
    semaphore. Two loops running at the same time cannot share the cap.
    """

    __slots__ = ("_loop", "_semaphore", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(size)

    def current(self) -> asyncio.Semaphore:
        """The running loop's semaphore."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            old = self._loop
            if old is not None and old.is_running() and not old.is_closed():
                raise RuntimeError(
                    "This AsyncClient's max_concurrency slots are in use by another event "
                    "loop that is still running. Create one client per event loop."
                )
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self._size)
        return self._semaphore


class AsyncClient:
    """An asyncio client for AnyAPI and any OpenAI-compatible chat-completions endpoint.

    One client holds one pooled aiohttp session for its whole life; create it once and
    share it:

    ```python
    async with AsyncClient() as client:          # key from ANYAPI_API_KEY
        c = await client.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "Hello!"}]
        )
        print(c.choices[0].message.content)
    ```

    Args:
        api_key: the key, or an async callable returning it (awaited per request, for
            rotating credentials). Default: `ANYAPI_API_KEY`. Not needed for a loopback
            `base_url` (127.0.0.0/8, `::1`, localhost): without one, requests carry no
            `Authorization` header.
        base_url: default `ANYAPI_BASE_URL`, else `https://api.anyapi.ai/v1`. It may carry
            a query string (Azure's `?api-version=...`), sent with every request.
        timeout: seconds (60 by default) for each phase, or a `Timeout` with separate
            limits.
        max_retries: retries after the first attempt (default 2, or `retry_policy`'s).
        default_headers: headers sent with every request (after the client's own).
        default_query: query parameters sent with every request, after those of
            `base_url`; a call's `extra_query` adds to them (a `None` value removes one).
        http_referer: AnyAPI attribution: your app's URL (`HTTP-Referer`).
        x_title: AnyAPI attribution: your app's name (`X-Title`).
        session: a caller-owned `aiohttp.ClientSession`; the client never closes it (the
            pool, TLS and proxy arguments below then do not apply).
        transport: a custom transport (`send`, `aclose`) instead of aiohttp's.
        limits: the pool's limits as one `Limits` value; or give them one by one:
        max_connections: the pool's size (100).
        max_connections_per_host: a per-host cap within the pool (0: none).
        keepalive_timeout: seconds an idle pooled connection is kept (30).
        verify: `False` to skip TLS verification, or an `ssl.SSLContext` of your own.
        trust_env: read proxies and `.netrc` from the environment, as aiohttp does.
        retry_policy: which failures are retried and how long to wait; see `RetryPolicy`.
        hooks: `Hooks` called on every attempt (metrics, logging).
        max_concurrency: bound on requests in flight through this client (a stream holds
            its slot until closed). Waiting for a slot counts against `Timeout.total`.
        max_response_size: the largest body read, in bytes (64 MiB), before
            `ResponseTooLargeError`.
        max_event_size: the largest stream event, in bytes (16 MiB).
        idempotency_keys: send an `Idempotency-Key`, the same on every retry of a call.
    """

    def __init__(
        self,
        api_key: ApiKey = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int | NotGiven = NOT_GIVEN,
        *,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        http_referer: str | None = None,
        x_title: str | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        limits: Limits | None = None,
        max_connections: int | NotGiven = NOT_GIVEN,
        max_connections_per_host: int | NotGiven = NOT_GIVEN,
        keepalive_timeout: float | NotGiven = NOT_GIVEN,
        verify: bool | ssl.SSLContext = True,
        trust_env: bool = False,
        retry_policy: RetryPolicy | None = None,
        hooks: Sequence[Hooks] = (),
        max_concurrency: int | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        idempotency_keys: bool = False,
    ) -> None:
        self.base_url = check_base_url(base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        key = self._set_key(api_key)
        self._url, query = split_query(self.base_url)
        if default_query is not None:
            query.update(check_query(default_query))
        self._set_query(query)
        self._set_retries(timeout, max_retries, retry_policy)
        self._set_bounds(max_concurrency, max_response_size, max_event_size)
        self.idempotency_keys = idempotency_keys
        self._set_headers(key, http_referer, x_title, default_headers)
        pool = pool_limits(limits, max_connections, max_connections_per_host, keepalive_timeout)
        self.limits = pool
        self._transport: Transport = transport or AiohttpTransport(
            session=session,
            max_connections=pool.max_connections,
            max_connections_per_host=pool.max_connections_per_host,
            keepalive_timeout=pool.keepalive_timeout,
            verify=verify,
            trust_env=trust_env,
        )
        self._retrier = Retrier(self._transport, with_log_hook(hooks))
        # Open streams, so that closing the client wakes their readers with an error.
        self._streams: weakref.WeakSet[AsyncStream[Any]] = weakref.WeakSet()
        self._owner = True
        self._closed = False
        self._chat: Chat | None = None
        self._models: Models | None = None

    # --- the steps of __init__ ------------------------------------------------------------

    def _set_key(self, api_key: ApiKey) -> str | None:
        """Keep a key provider, or check a fixed key (found by `resolve_api_key`)."""
        self._key_provider: Callable[[], Awaitable[str]] | None = None
        if callable(api_key):
            self._key_provider = api_key
            return None
        key = resolve_api_key(api_key, self.base_url)
        if key is None:
            return None  # a local server (127.0.0.0/8, localhost): no Authorization header
        if not isinstance(key, str):
            raise TypeError("api_key must be a str or an async callable returning one")
        return check_header("Authorization", key)

    def _set_retries(
        self,
        timeout: TimeoutTypes,
        max_retries: int | NotGiven,
        retry_policy: RetryPolicy | None,
    ) -> None:
        self.timeout = Timeout.coerce(timeout)
        # max_retries defaults to 2, or to the retry_policy's own value when one is given.
        policy = retry_policy if retry_policy is not None else RetryPolicy(DEFAULT_MAX_RETRIES)
        if not isinstance(max_retries, NotGiven):
            policy = policy.with_max_retries(max_retries)
        self.retry_policy = policy

    def _set_bounds(
        self, max_concurrency: int | None, max_response_size: int, max_event_size: int
    ) -> None:
        if max_concurrency is not None:
            if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
                raise TypeError(
                    "max_concurrency must be an int >= 1 or None, "
                    f"not {type(max_concurrency).__name__}"
                )
            if max_concurrency < 1:
                raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        for size_name, size in (
            ("max_response_size", max_response_size),
            ("max_event_size", max_event_size),
        ):
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(f"{size_name} must be an int, not {type(size).__name__}")
            if size < 1:
                raise ValueError(f"{size_name} must be >= 1")
        self.max_concurrency = max_concurrency
        self.max_response_size = max_response_size
        self.max_event_size = max_event_size
        # Shared with with_options copies (they copy __dict__): one cap for all of them.
        self._slots = _Slots(max_concurrency) if max_concurrency else None

    def _set_headers(
        self,
        key: str | None,
        http_referer: str | None,
        x_title: str | None,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        headers = {
            "User-Agent": f"anyapi-async/{__version__}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if http_referer is not None:
            headers["HTTP-Referer"] = http_referer
        if x_title is not None:
            headers["X-Title"] = x_title
        for name, value in (default_headers or {}).items():
            headers[name] = value
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        for name, value in headers.items():
            check_header(name, value)
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}

    # --- public surface ------------------------------------------------------------------

    @property
    def chat(self) -> Chat:
        """``client.chat.completions.create(...)`` and friends."""
        if self._chat is None:
            from ._resources import Chat

            self._chat = Chat(self)
        return self._chat

    @property
    def models(self) -> Models:
        """``await client.models.list()`` and ``await client.models.retrieve(model_id)``."""
        if self._models is None:
            from ._resources import Models

            self._models = Models(self)
        return self._models

    @property
    def default_query(self) -> Mapping[str, str]:
        """Query parameters sent with every request (``base_url``'s, then ``default_query``)."""
        return self._query

    def _set_query(self, query: dict[str, str]) -> None:
        self._query = query
        # Encoded once: a request without extra_query only appends this string.
        self._query_string = "?" + urlencode(query) if query else ""

    @property
    def max_retries(self) -> int:
        return self.retry_policy.max_retries

    @property
    def closed(self) -> bool:
        return self._closed

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
        default_query: Mapping[str, str] | NotGiven = NOT_GIVEN,
    ) -> AsyncClient:
        """A copy with other settings that shares this client's connection pool.

        ``default_headers`` and ``default_query`` add to (or replace entries of) this
        client's. The copy does not own the pool: closing it leaves the original working.
        """
        copy = object.__new__(AsyncClient)
        copy.__dict__.update(self.__dict__)
        copy._owner = False
        copy._chat = None
        copy._models = None
        if not isinstance(timeout, NotGiven):
            copy.timeout = Timeout.coerce(timeout)
        if not isinstance(retry_policy, NotGiven):
            copy.retry_policy = retry_policy
        if not isinstance(max_retries, NotGiven):
            copy.retry_policy = copy.retry_policy.with_max_retries(max_retries)
        if not isinstance(default_headers, NotGiven):
            for name, value in default_headers.items():
                check_header(name, value)
            copy._headers = {**self._headers, **default_headers}
            copy._stream_headers = {**copy._headers, "Accept": "text/event-stream"}
        if not isinstance(default_query, NotGiven):
            copy._set_query({**self._query, **check_query(default_query)})
        return copy

    async def aclose(self) -> None:
        """Close the connection pool (unless the session is the caller's); idempotent."""
        if self._closed:
            return
        if self._owner:
            # Raises, closing nothing, from another loop while the pool's loop is open.
            await self._transport.aclose()
            for stream in list(self._streams):
                abort_stream(
                    stream, APIConnectionError("The client was closed while the stream was open")
                )
        self._closed = True

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"AsyncClient(base_url={redact_url(self.base_url)!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries})"
        )

    # --- the request path ----------------------------------------------------------------

    def _total_timeout(self, options: Mapping[str, Any] | None) -> float | None:
        if options and "timeout" in options:
            return Timeout.coerce(options["timeout"]).total
        return self.timeout.total

    async def _wait_for_slot(self, semaphore: asyncio.Semaphore, total: float) -> float:
        """Take a ``max_concurrency`` slot within ``total`` seconds; return the deadline.

        Only for calls with a total limit that find every slot taken: the wait counts
        against the limit, and the deadline it returns bounds the rest of the call.
        """
        deadline = asyncio.get_running_loop().time() + total
        try:
            async with timeout_after(total):
                await semaphore.acquire()
        except asyncio.TimeoutError:
            raise APITimeoutError(
                "Timed out waiting for a max_concurrency slot (total limit)", limit="total"
            ) from None
        return deadline

    async def _build_request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        stream: bool = False,
        options: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> Request:
        if self._closed:
            raise RuntimeError("Cannot send a request: the client has been closed.")
        headers = (self._stream_headers if stream else self._headers).copy()
        url = self._url + path + self._query_string
        timeout = self.timeout
        if self._key_provider is not None:
            key = await self._key_provider()
            headers["Authorization"] = f"Bearer {check_header('Authorization', key)}"
        idempotency_key = None
        if options:
            extra_headers = options.get("extra_headers")
            if extra_headers:
                for name, value in extra_headers.items():
                    if value is None:
                        headers.pop(name, None)
                    else:
                        headers[name] = check_header(name, value)
            extra_query = options.get("extra_query")
            if extra_query:
                query = {**self._query, **extra_query}
                query = {k: v for k, v in query.items() if v is not None}
                url = self._url + path + ("?" + urlencode(query) if query else "")
            if "timeout" in options:
                timeout = Timeout.coerce(options["timeout"])
            idempotency_key = options.get("idempotency_key")
        if idempotency_key is None and self.idempotency_keys and method == "POST":
            import uuid

            idempotency_key = f"anyapi-{uuid.uuid4().hex}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = check_header("Idempotency-Key", idempotency_key)
        if deadline is None and timeout.total is not None:
            deadline = asyncio.get_running_loop().time() + timeout.total
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Request: %s %s headers=%s", method, redact_url(url), redact_headers(headers)
            )
        return Request(
            method,
            url,
            headers=headers,
            body=body,
            timeout=timeout,
            stream=stream,
            deadline=deadline,
        )

    def _policy(self, options: Mapping[str, Any] | None) -> RetryPolicy:
        if options and "max_retries" in options:
            return self.retry_policy.with_max_retries(options["max_retries"])
        return self.retry_policy

    async def _raise_for_status(self, response: Response) -> None:
        body: Any = None
        try:
            raw = await response.read(MAX_ERROR_BODY)
        except APIError as exc:  # the status still tells what happened
            logger.debug("Could not read the error body: %r", exc)
            raw = b""
        if raw:
            try:
                body = JSON_DECODER.decode(raw)
            except msgspec.DecodeError:
                body = raw[:2000].decode("utf-8", "replace")
        raise make_status_error(
            response.status, body, response.headers, request_id_of(response.headers)
        )

    async def _send_json(
        self,
        request: Request,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        raw: bool = False,
    ) -> Any:
        loop = asyncio.get_running_loop()
        timings = Timings(loop.time())
        hooks = self._retrier.hooks
        max_size = self.max_response_size

        async def handle(response: Response, attempt: AttemptInfo | int) -> Any:
            timings.headers = loop.time()
            body = await response.read(max_size)
            parsed: Any = None
            n = attempt if isinstance(attempt, int) else attempt.attempt
            if raw:
                timings.finished = timings.first_token = loop.time()
                info = ResponseInfo(response.status, response.headers, n, timings)
                # Decoded here, inside the retry loop, so that an error object sent with
                # a 200 is retried (or raised) as it is for create(); parse() returns it.
                parsed = self._cast(body, response, cast_to, info)
                result: Any = APIResponse(info, body, lambda: parsed)
            elif cast_to is bytes:
                timings.finished = timings.first_token = loop.time()
                result = body
            else:
                result = self._decode_body(body, response, decoder_for(cast_to))
                timings.finished = timings.first_token = loop.time()
                keep_response(
                    result, body, ResponseInfo(response.status, response.headers, n, timings)
                )
            if hooks and not isinstance(attempt, int):
                # Only a CompletionUsage is usage: a cast_to may have a field of that name
                # meaning something else. A raw response reports its parsed object's.
                usage = getattr(parsed if raw else result, "usage", None)
                if not isinstance(usage, CompletionUsage):
                    usage = None
                for hook in hooks:
                    hook.on_complete(attempt, usage)
            return result

        return await self._retrier.send(
            request, handle, self._policy(options), self._raise_for_status
        )

    def _cast(self, body: bytes, response: Response, cast_to: Any, info: ResponseInfo) -> Any:
        """``body`` as ``cast_to`` (for `APIResponse.parse`), metadata attached."""
        if cast_to is bytes:
            return body
        result = self._decode_body(body, response, decoder_for(cast_to))
        keep_response(result, body, info)
        return result

    @staticmethod
    def _decode_body(body: bytes, response: Response, decoder: msgspec.json.Decoder[T]) -> T:
        try:
            result = decoder.decode(body)
        except msgspec.ValidationError:
            try:
                obj = JSON_DECODER.decode(body)
            except msgspec.DecodeError as exc:  # pragma: no cover - the strict pass parsed it
                raise APIResponseValidationError(
                    "The response is not valid JSON", status_code=response.status, body=body
                ) from exc
            if isinstance(obj, dict) and is_error_object(obj):
                raise error_from_payload(
                    obj, response.status, response.headers, request_id_of(response.headers)
                ) from None
            # msgspec 0.23 types Decoder.type as a TypeForm, older releases as a type; both
            # are what decode_lenient hands to msgspec.convert.
            target: Any = decoder.type
            try:
                result = decode_lenient(body, target)
            except msgspec.ValidationError as exc:
                raise APIResponseValidationError(
                    f"The response does not have the expected shape: {exc}",
                    status_code=response.status,
                    body=body,
                ) from exc
        except msgspec.DecodeError as exc:
            raise APIResponseValidationError(
                "The response is not valid JSON", status_code=response.status, body=body
            ) from exc
        if is_error_object(result):
            # A gateway that began with 200 and then failed upstream.
            raise error_from_payload(
                JSON_DECODER.decode(body),
                response.status,
                response.headers,
                request_id_of(response.headers),
            )
        if getattr(result, "choices", True) == [] and b'"choices"' not in body:
            raise APIResponseValidationError(
                "The response has no 'choices'", status_code=response.status, body=body
            )
        return result

    async def _send_stream(
        self,
        request: Request,
        options: Mapping[str, Any] | None,
        item_decoder: Callable[[bytes], Any] | None,
    ) -> AsyncStream[Any]:
        loop = asyncio.get_running_loop()
        timings = Timings(loop.time())
        first_event = request.timeout.first_event
        hooks = self._retrier.hooks

        async def handle(response: Response, attempt: AttemptInfo | int) -> AsyncStream[Any]:
            timings.headers = loop.time()
            # first_event is per attempt: a retried attempt gets the whole limit again.
            first_by = request.attempt_started + first_event if first_event else None
            return await open_stream(
                response,
                attempt=attempt,
                timings=timings,
                max_event_size=self.max_event_size,
                idle=request.timeout.idle,
                first_event_by=first_by,
                hooks=hooks,
                item_decoder=item_decoder,
                max_response_size=self.max_response_size,
            )

        return await self._retrier.send(
            request, handle, self._policy(options), self._raise_for_status
        )

    async def _take_slot(
        self, slots: _Slots, options: Mapping[str, Any] | None
    ) -> tuple[asyncio.Semaphore, float | None]:
        """Take a ``max_concurrency`` slot; return the semaphore it came from (to give it
        back to) and the call's deadline, if the wait started it."""
        semaphore = slots.current()
        if semaphore.locked() and (total := self._total_timeout(options)) is not None:
            return semaphore, await self._wait_for_slot(semaphore, total)
        await semaphore.acquire()
        return semaphore, None

    # --- the public seam -----------------------------------------------------------------

    @overload
    async def post(
        self,
        path: str,
        *,
        cast_to: type[T],
        body: Body = None,
        stream: Literal[False] = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> T: ...

    @overload
    async def post(
        self,
        path: str,
        *,
        cast_to: type[T],
        body: Body = None,
        stream: Literal[True],
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> AsyncStream[T]: ...

    async def post(
        self,
        path: str,
        *,
        cast_to: type[T],
        body: Body = None,
        stream: bool = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> T | AsyncStream[T]:
        """``POST {base_url}{path}``: any endpoint, with everything `create()` has.

        The same auth, headers, retries, timeouts, hooks, error mapping and
        ``max_concurrency`` slot as ``chat.completions.create()``: both (and `get`) hand
        the request to the same module-level step (``request()``, ``request_stream()``);
        ``create()`` does not call ``post()``, so wrapping or patching ``post()`` does not
        reach it.
        ``body`` is a dict or a msgspec Struct (sent as JSON) or ``bytes`` (sent as they
        are). ``cast_to`` says what comes back: ``bytes`` (the body as received, not
        looked into), ``dict`` (a JSON object) or a msgspec type (`ChatCompletion`, your
        own Struct...). With ``stream=True`` the call returns an `AsyncStream` of
        ``cast_to`` items, one per server-sent event, once the first has arrived (for
        ``ChatCompletionChunk`` it is the chat stream ``create(stream=True)`` returns).

        Example:

        ```python
        reply = await client.post(
            "/embeddings", body={"model": "text-embedding-3-small", "input": "hi"}, cast_to=dict
        )
        ```
        """
        options = call_options(extra_headers, extra_query, timeout, max_retries, idempotency_key)
        content = encode_body(body)
        path = _check_path(path)
        _item_decoder(cast_to)  # an unusable cast_to fails here, before any I/O
        if stream:
            return await request_stream(self, "POST", path, content, options, cast_to)
        return await request(self, "POST", path, content, options, cast_to)  # type: ignore[no-any-return]

    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: Literal[False] = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> T: ...

    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: Literal[True],
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> AsyncStream[T]: ...

    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: bool = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> T | AsyncStream[T]:
        """``GET {base_url}{path}``, as `post` does it, through the same request step as
        ``models.list()`` (which does not call ``get()``).

        Example:

        ```python
        models = await client.get("/models", cast_to=dict)
        ```
        """
        options = call_options(extra_headers, extra_query, timeout, max_retries, None)
        path = _check_path(path)
        _item_decoder(cast_to)
        if stream:
            return await request_stream(self, "GET", path, None, options, cast_to)
        return await request(self, "GET", path, None, options, cast_to)  # type: ignore[no-any-return]


# --- the request path: the package's seam (resources, batch, jobs, raw responses) ---------

_body_encoder = msgspec.json.Encoder()


def _check_path(path: object) -> str:
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    if "://" in path:
        raise ValueError(f"path is relative to base_url (e.g. '/models'), got {path!r}")
    if "?" in path or "#" in path:
        raise ValueError("path must not carry a query string: pass extra_query={...}")
    return path if path.startswith("/") else "/" + path


def encode_body(body: object) -> bytes | None:
    """A request body: ``bytes`` as they are, a dict or Struct as JSON, ``None`` for none."""
    if body is None or isinstance(body, bytes):
        return body
    if not isinstance(body, (Mapping, msgspec.Struct)):
        raise TypeError(
            f"body must be a dict, a msgspec Struct or bytes, not {type(body).__name__}"
        )
    try:
        return _body_encoder.encode(body)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"The request body cannot be encoded as JSON: {exc}") from exc


def call_options(
    extra_headers: Mapping[str, str | None] | None,
    extra_query: Mapping[str, str | None] | None,
    timeout: TimeoutTypes | NotGiven,
    max_retries: int | NotGiven,
    idempotency_key: str | None,
) -> dict[str, Any] | None:
    """The options dict `request` takes (what ``create()``'s keyword options make)."""
    options: dict[str, Any] = {}
    if extra_headers:
        options["extra_headers"] = extra_headers
    if extra_query:
        options["extra_query"] = extra_query
    if not isinstance(timeout, NotGiven):
        options["timeout"] = timeout
    if not isinstance(max_retries, NotGiven):
        options["max_retries"] = max_retries
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    return options or None


async def request(
    client: AsyncClient,
    method: str,
    path: str,
    content: bytes | None,
    options: Mapping[str, Any] | None,
    cast_to: Any,
    *,
    raw: bool = False,
) -> Any:
    """Send a request whose answer is one body, as ``cast_to`` (or an `APIResponse` when
    ``raw``). Every non-streamed call of the package comes through here.

    With ``max_concurrency`` the slot is taken before the request is built, so calls
    queued behind the cap hold no headers or request objects (``Timeout.total`` counts
    the wait), and the wait happens in this frame, not a helper's: one frame fewer alive
    per queued call (10,000 queued calls: megabytes).
    """
    slots = client._slots
    if slots is None:
        built = await client._build_request(method, path, content, options=options)
        return await client._send_json(built, options, cast_to, raw)
    deadline = None
    semaphore = slots.current()
    if semaphore.locked() and (total := client._total_timeout(options)) is not None:
        deadline = await client._wait_for_slot(semaphore, total)
    else:
        await semaphore.acquire()
    try:
        built = await client._build_request(
            method, path, content, options=options, deadline=deadline
        )
        return await client._send_json(built, options, cast_to, raw)
    finally:
        semaphore.release()


def _item_decoder(cast_to: Any) -> Callable[[bytes], Any] | None:
    if cast_to is ChatCompletionChunk:
        return None  # the chat stream's own checked path
    if cast_to is bytes:
        return bytes
    return decoder_for(cast_to).decode


async def request_stream(
    client: AsyncClient,
    method: str,
    path: str,
    content: bytes | None,
    options: Mapping[str, Any] | None,
    cast_to: Any = ChatCompletionChunk,
) -> AsyncStream[Any]:
    """Send a streaming request; return its `AsyncStream` once the first event is in.

    With ``max_concurrency`` the slot is taken first (within ``Timeout.total``) and then
    held by the stream until it is closed.
    """
    item_decoder = _item_decoder(cast_to)
    deadline = None
    semaphore = None
    if client._slots is not None:
        semaphore, deadline = await client._take_slot(client._slots, options)
    try:
        built = await client._build_request(
            method, path, content, stream=True, options=options, deadline=deadline
        )
        stream = await client._send_stream(built, options, item_decoder)
    except BaseException:
        if semaphore is not None:
            semaphore.release()
        raise
    if semaphore is not None:
        hold_slot(stream, semaphore.release)
    client._streams.add(stream)
    return stream


async def open_response(
    client: AsyncClient,
    method: str,
    path: str,
    content: bytes | None,
    options: Mapping[str, Any] | None,
    cast_to: Any,
    *,
    stream: bool,
) -> tuple[StreamedAPIResponse[Any], Callable[[], None]]:
    """Send a request and stop at its headers (``with_streaming_response``).

    Returns the response and the function that lets go of it and of the
    ``max_concurrency`` slot, which is held until then. ``parse()`` reads the body as
    ``cast_to`` (for ``stream``, an `AsyncStream` of ``cast_to`` items).
    """
    deadline = None
    semaphore = None
    if client._slots is not None:
        semaphore, deadline = await client._take_slot(client._slots, options)
    loop = asyncio.get_running_loop()
    timings = Timings(loop.time())

    async def handle(response: Response, attempt: AttemptInfo | int) -> Any:
        timings.headers = loop.time()
        return response, attempt

    try:
        built = await client._build_request(
            method, path, content, stream=stream, options=options, deadline=deadline
        )
        response, attempt = await client._retrier.send(
            built, handle, client._policy(options), client._raise_for_status
        )
    except BaseException:
        if semaphore is not None:
            semaphore.release()
        raise
    n = attempt if isinstance(attempt, int) else attempt.attempt
    info = ResponseInfo(response.status, response.headers, n, timings)

    async def parse(response: Response) -> Any:
        if not stream:
            body = await response.read(client.max_response_size)
            timings.finished = timings.first_token = loop.time()
            return client._cast(body, response, cast_to, info)
        first_by = (
            built.attempt_started + built.timeout.first_event if built.timeout.first_event else None
        )
        return await open_stream(
            response,
            attempt=attempt,
            timings=timings,
            max_event_size=client.max_event_size,
            idle=built.timeout.idle,
            first_event_by=first_by,
            hooks=client._retrier.hooks,
            item_decoder=_item_decoder(cast_to),
            max_response_size=client.max_response_size,
        )

    released = False

    def close() -> None:
        nonlocal released
        if released:
            return
        released = True
        if response.at_eof():
            response.release()
        else:
            response.close()
        if semaphore is not None:
            semaphore.release()

    return StreamedAPIResponse(response, info, parse, max_size=client.max_response_size), close


def observe_calls(client: AsyncClient, observer: CallObserver | None) -> None:
    """Package seam for `anyapi_async.otel`: ``observer`` wraps every call of ``client``.

    The client's `with_options` copies share its retry layer, so they are observed too. An
    observer that is also a `Hooks` hears every attempt; ``None`` removes the observer.
    """
    retrier = client._retrier
    old: object = retrier.observer
    hooks = tuple(hook for hook in retrier.hooks if hook is not old)
    if isinstance(observer, Hooks):
        hooks = (*hooks, observer)
    retrier.hooks = hooks
    retrier.observer = observer


def call_observer(client: AsyncClient) -> CallObserver | None:
    """The observer `observe_calls` set on ``client`` (or on the client it was copied from)."""
    return client._retrier.observer
