"""The request pipeline: every call of the package goes through one `Pipeline`.

```text
resource (arguments -> body)
   │  send() / send_raw() / stream() / stream_raw() / open()
   ▼
Pipeline ── observers' call() ── cache step (hit: replayed, nothing sent) ──
   │         max_concurrency slot ── request (auth, headers, query, timeouts,
   │                                          idempotency key)
   │   attempts: transport.send -> status -> read/decode (or first stream event),
   │             the read limit on a Watchdog of the pipeline's one timer (StreamWatch)
   │             retry? (RetryPolicy, Retry-After, Timeout.total) -> wait -> again
   ▼
Transport (`anyapi_async._transports.base`)
```

`AsyncClient` builds one from its settings and is a thin face over it; resources, batch
runs, jobs, the Ray stage, instrumentation, the cache (`anyapi_async._cache`) and the
router (`anyapi_async._router`, an object with the same operations over several
pipelines) talk to the pipeline. Copies (`AsyncClient.with_options`) share the transport,
the ``max_concurrency`` slots, the cache, the observers and the set of open streams. The
hot paths (`send` once its slot is held, `stream`) run the request, the attempts and the
decoding in one frame (no coroutine per layer): the fixed cost of a call is a few Python
calls, which `python -m benchmarks.callcount --check` bounds in CI.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlencode, urlsplit

import msgspec

from ._config import Timeout
from ._decode import COMPLETION_DECODER, JSON_DECODER, decode_lenient, decoder_for
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    error_from_payload,
    error_kind,
    is_error_object,
    make_status_error,
)
from ._logging import redact_url
from ._meta import ResponseInfo, Timings, request_id_of
from ._observe import AttemptInfo, CallContext, Observer, overrides
from ._response import APIResponse, RequestInfo, StreamedAPIResponse
from ._retry import RetryPolicy
from ._settings import check_header, redact_headers
from ._streaming import (
    AsyncStream,
    StreamWatch,
    Watchdog,
    abort_stream,
    headers_timeout,
    hold_slot,
    open_stream,
    when_complete,
    yields_chunks,
)
from ._transports.base import Request
from ._types import ChatCompletion, ChatCompletionChunk, CompletionUsage, keep_response
from ._waits import sleep, timeout_after

if TYPE_CHECKING:
    from ._cache import CacheStep, Entry, Flight, Recorder, ReplayResponse
    from ._observe import Hooks
    from ._transports.base import Response, Transport

__all__ = [
    "MAX_ERROR_BODY",
    "Pipeline",
    "PipelineState",
    "Slots",
    "call_context",
    "item_decoder",
    "observe_call",
]

T = TypeVar("T")

#: Largest error body kept for an exception.
MAX_ERROR_BODY: Final = 1024 * 1024

logger = logging.getLogger("anyapi_async")


class Slots:
    """The ``max_concurrency`` semaphore of a pipeline and its copies, one per event loop.

    An `asyncio.Semaphore` binds to the loop that first waits on it, and slots held by
    streams still open when their loop shut down would never come back: a pipeline used
    from a new loop (a second ``asyncio.run()``, like its fresh connection pool) gets a
    fresh semaphore. Two loops running at the same time cannot share the cap.
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


class PipelineState:
    """What a pipeline shares with its copies: observers (per level) and open streams.

    Plain attributes, read on every call without a function call.
    """

    __slots__ = ("batch_observers", "callers", "hooks", "observers", "stream_usage",
                 "stream_watchers", "streams", "watch")

    def __init__(self, hooks: tuple[Hooks, ...]) -> None:
        self.observers: tuple[Hooks, ...] = ()
        # Open streams, so that closing the client wakes their readers with an error.
        self.streams: weakref.WeakSet[AsyncStream[Any]] = weakref.WeakSet()
        # The timer of the open streams' time limits, for the loop it belongs to.
        self.watch: StreamWatch | None = None
        self.set(hooks)

    def watch_for(self, loop: asyncio.AbstractEventLoop) -> StreamWatch:
        """The streams' `StreamWatch` in ``loop`` (a new loop gets a new one)."""
        watch = self.watch
        if watch is None or watch.loop is not loop:
            watch = self.watch = StreamWatch(loop)
        return watch

    def set(self, observers: tuple[Hooks, ...]) -> None:
        self.observers = observers
        # Per level, only those that listen: an empty tuple costs one truth test.
        self.hooks = tuple(o for o in observers if not isinstance(o, Observer) or any(
            overrides(o, name)
            for name in ("on_request", "on_response", "on_retry", "on_error", "on_complete")
        ))
        self.callers = tuple(o for o in observers if overrides(o, "call"))
        self.stream_watchers = tuple(o for o in observers if overrides(o, "stream_opened"))
        self.batch_observers = tuple(o for o in observers if overrides(o, "batch_item"))
        self.stream_usage = any(getattr(o, "stream_usage", False) for o in observers)


def item_decoder(cast_to: Any) -> Callable[[bytes], Any] | None:
    """How a stream's events decode for ``cast_to`` (``None``: the checked chat path);
    a type msgspec cannot decode raises `TypeError` here, before any I/O."""
    if cast_to is ChatCompletionChunk:
        return None
    if cast_to is bytes:
        return bytes
    return decoder_for(cast_to).decode



def call_context(
    method: str, path: str, body: object, stream: bool, operation: str = ""
) -> CallContext:
    """A `CallContext` for a call made by path (``post``/``get``): the operation from the
    path, the parameters (and model) from a dict body."""
    params = body if isinstance(body, Mapping) else None
    if not operation:
        chat = path.partition("?")[0].endswith("/chat/completions")
        operation = "chat" if chat else "models" if path.startswith("/models") else "request"
    model = params.get("model") if params is not None else None
    return CallContext(
        operation,
        method=method,
        path=path,
        model=model if isinstance(model, str) else None,
        params=params,
        stream=stream,
    )


async def observe_call(
    callers: tuple[Hooks, ...],
    base_url: str,
    context: CallContext,
    send: Callable[[], Awaitable[T]],
) -> T:
    """``send()`` wrapped by each call-level observer in turn (the first outermost)."""
    context.base_url = base_url
    if len(callers) == 1:
        return await callers[0].call(context, send)  # type: ignore[attr-defined, no-any-return]

    async def through(i: int) -> T:
        if i == len(callers):
            return await send()
        return await callers[i].call(context, lambda: through(i + 1))  # type: ignore[attr-defined, no-any-return]

    return await through(0)

def _decode_body(body: bytes, response: Response, decoder: msgspec.json.Decoder[T]) -> T:
    """``body`` decoded, tolerantly when the strict decoder refuses it; an error object
    sent with a 2xx status raises as the error it names."""
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


def _cast(body: bytes, response: Response, cast_to: Any, info: ResponseInfo) -> Any:
    """``body`` as ``cast_to``, metadata attached."""
    if cast_to is bytes:
        return body
    result = _decode_body(body, response, decoder_for(cast_to))
    keep_response(result, body, info)
    return result


def _request_info(request: Request) -> RequestInfo:
    """What a raw response tells of its request: credentials masked, headers copied (a
    retry changes the request's own)."""
    return RequestInfo(request.method, redact_url(request.url), redact_headers(request.headers))


async def _raise_for_status(response: Response) -> None:
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


class Pipeline:
    """Sends the package's requests: slots, auth, headers, timeouts, retries, observers.

    Built by `AsyncClient` from its checked settings; `copy` makes the pipeline of a
    `with_options` copy. The four operations are all a request can be: `send` (one body,
    decoded), `send_raw` (the same, kept as an `APIResponse`), `stream` (an `AsyncStream`
    once its first event is in; `stream_raw` keeps it in an `APIResponse`) and `open`
    (stop at the headers: ``with_streaming_response``).
    """

    __slots__ = (
        "base_url",
        "cache",
        "closed",
        "headers",
        "idempotency_keys",
        "key_provider",
        "max_event_size",
        "max_response_size",
        "query",
        "query_string",
        "retry_policy",
        "shared",
        "slots",
        "stream_headers",
        "timeout",
        "transport",
        "url",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        base_url: str,
        url: str,
        query: dict[str, str],
        headers: dict[str, str],
        key_provider: Callable[[], Awaitable[str]] | None,
        timeout: Timeout,
        retry_policy: RetryPolicy,
        max_concurrency: int | None,
        max_response_size: int,
        max_event_size: int,
        idempotency_keys: bool,
        hooks: tuple[Hooks, ...] = (),
    ) -> None:
        self.transport = transport
        self.base_url = base_url
        #: ``base_url`` without its query string; requests go to ``url + path + query``.
        self.url = url
        self.set_query(query)
        self.set_headers(headers)
        self.key_provider = key_provider
        self.timeout = timeout
        self.retry_policy = retry_policy
        self.slots = Slots(max_concurrency) if max_concurrency else None
        self.max_response_size = max_response_size
        self.max_event_size = max_event_size
        self.idempotency_keys = idempotency_keys
        self.closed = False
        #: Shared with copies: the observers by level (``shared.observers`` is empty when
        #: nothing observes: the resources then build no `CallContext`).
        self.shared = PipelineState(hooks)
        #: The cache step (`anyapi_async._cache.CacheStep`), shared with copies; ``None``:
        #: no cache, and the operations pay one attribute test for it.
        self.cache: CacheStep | None = None

    # --- settings ------------------------------------------------------------------------

    def set_query(self, query: dict[str, str]) -> None:
        self.query = query
        # Encoded once: a request without extra_query only appends this string.
        self.query_string = "?" + urlencode(query) if query else ""

    def set_headers(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.stream_headers = {**headers, "Accept": "text/event-stream"}

    def copy(self) -> Pipeline:
        """A pipeline with the same settings sharing this one's transport, slots,
        observers and open streams (change the copy's settings after)."""
        copy = object.__new__(Pipeline)
        for name in Pipeline.__slots__:
            setattr(copy, name, getattr(self, name))
        return copy

    # --- observers -----------------------------------------------------------------------

    @property
    def observers(self) -> tuple[Hooks, ...]:
        """The hooks and observers of this pipeline and its copies, in order."""
        return self.shared.observers

    def add_observer(self, observer: Hooks) -> None:
        """Plug ``observer`` (a `Hooks` or an `Observer`) in, for this pipeline and its copies."""
        shared = self.shared
        if observer not in shared.observers:
            shared.set((*shared.observers, observer))

    def remove_observer(self, observer: Hooks) -> None:
        shared = self.shared
        shared.set(tuple(o for o in shared.observers if o is not observer))

    @property
    def stream_usage(self) -> bool:
        """Whether an observer asked chat streams for a final usage chunk."""
        return self.shared.stream_usage

    @property
    def batch_observers(self) -> tuple[Observer, ...]:
        """The observers that wrap each batch and job item."""
        return self.shared.batch_observers  # type: ignore[return-value]

    def context(
        self, method: str, path: str, body: object, stream: bool, operation: str = ""
    ) -> CallContext:
        """A `CallContext` for a call the caller made by path (``post``/``get``)."""
        return call_context(method, path, body, stream, operation)

    async def _observed(self, context: CallContext, send: Callable[[], Awaitable[T]]) -> T:
        return await observe_call(self.shared.callers, self.base_url, context, send)

    def _opened(self, context: CallContext | None, stream: AsyncStream[Any]) -> None:
        watchers = self.shared.stream_watchers
        if watchers and yields_chunks(stream):
            if context is None:
                context = CallContext("chat", stream=True)
            for watcher in watchers:
                watcher.stream_opened(context, stream)  # type: ignore[attr-defined]

    # --- building a request --------------------------------------------------------------

    def _total(self, options: Mapping[str, Any] | None) -> float | None:
        if options and "timeout" in options:
            return Timeout.coerce(options["timeout"]).total
        return self.timeout.total

    async def _take_slot(
        self, options: Mapping[str, Any] | None
    ) -> tuple[asyncio.Semaphore, float | None]:
        """Take a ``max_concurrency`` slot; return its semaphore (to give it back to) and
        the call's deadline, when waiting for the slot started the ``total`` clock."""
        semaphore = self.slots.current()  # type: ignore[union-attr]
        if semaphore.locked() and (total := self._total(options)) is not None:
            deadline = asyncio.get_running_loop().time() + total
            try:
                async with timeout_after(total):
                    await semaphore.acquire()
            except asyncio.TimeoutError:
                raise APITimeoutError(
                    "Timed out waiting for a max_concurrency slot (total limit)", limit="total"
                ) from None
            return semaphore, deadline
        await semaphore.acquire()
        return semaphore, None

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        stream: bool,
        deadline: float | None,
    ) -> Request:
        if self.closed:
            raise RuntimeError("Cannot send a request: the client has been closed.")
        headers = (self.stream_headers if stream else self.headers).copy()
        url = self.url + path + self.query_string
        timeout = self.timeout
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
                query = {**self.query, **extra_query}
                query = {k: v for k, v in query.items() if v is not None}
                url = self.url + path + ("?" + urlencode(query) if query else "")
            if "timeout" in options:
                timeout = Timeout.coerce(options["timeout"])
            idempotency_key = options.get("idempotency_key")
        else:
            idempotency_key = None
        if idempotency_key is None and self.idempotency_keys and method == "POST":
            idempotency_key = f"anyapi-{uuid.uuid4().hex}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = check_header("Idempotency-Key", idempotency_key)
        if deadline is None and timeout.total is not None:
            deadline = asyncio.get_running_loop().time() + timeout.total
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Request: %s %s headers=%s", method, redact_url(url), redact_headers(headers)
            )
        return Request(method, url, headers, body, timeout, stream, deadline)

    async def _authorize(self, request: Request) -> None:
        key = await self.key_provider()  # type: ignore[misc]
        request.headers["Authorization"] = f"Bearer {check_header('Authorization', key)}"

    def _policy(self, options: Mapping[str, Any] | None) -> RetryPolicy:
        if options and "max_retries" in options:
            return self.retry_policy.with_max_retries(options["max_retries"])
        return self.retry_policy

    # --- the attempts ----------------------------------------------------------------------

    def _retry_delay(
        self,
        exc: APIError,
        attempt: int,
        policy: RetryPolicy,
        request: Request,
        info: AttemptInfo | None,
    ) -> float | None:
        """The wait before another attempt after ``exc``, or ``None`` to raise it."""
        exc.attempts = attempt
        delay = None
        if attempt <= policy.max_retries and policy.should_retry(exc, before_response=True):
            headers = exc.headers if isinstance(exc, APIStatusError) else None
            delay = policy.delay(attempt, headers)
            after = exc.retry_after if isinstance(exc, APIStatusError) else None
            if after is not None and after > policy.max_retry_after:
                # The server asked not to be called again for that long: tell the caller
                # at once (exc.retry_after) instead of asking anyway.
                logger.info(
                    "Not retrying %s %s after %s: the server asked to wait %.2fs, "
                    "more than max_retry_after (%.2fs)",
                    request.method,
                    redact_url(request.url),
                    error_kind(exc),
                    after,
                    policy.max_retry_after,
                )
                delay = None
            elif (
                request.deadline is not None
                and asyncio.get_running_loop().time() + delay >= request.deadline
            ):
                logger.info(
                    "Not retrying %s %s after %s: a wait of %.2fs would pass the total timeout",
                    request.method,
                    redact_url(request.url),
                    error_kind(exc),
                    delay,
                )
                delay = None
        hooks = self.shared.hooks
        if delay is None:
            if info is not None:
                for hook in hooks:
                    hook.on_error(info, exc)
            return None
        logger.info(
            "Retrying %s %s in %.2fs (retry %d of %d) after %s",
            request.method,
            redact_url(request.url),
            delay,
            attempt,
            policy.max_retries,
            error_kind(exc),
        )
        if info is not None:
            for hook in hooks:
                hook.on_retry(info, delay, exc)
        return delay

    async def _attempts(
        self,
        request: Request,
        policy: RetryPolicy,
        handle: Callable[[Response, AttemptInfo | int], Awaitable[T]],
        context: CallContext | None,
    ) -> T:
        """Send ``request`` until ``handle`` turns a 2xx response into the result, retrying
        what ``policy`` allows. ``handle`` runs inside the loop, so an error object
        received with status 200 is retried like the status it names, and a body cut (or
        a stream broken) before ``handle`` returned like any connection error."""
        attempt = 0
        hooks = self.shared.hooks
        loop = asyncio.get_running_loop()
        transport = self.transport
        while True:
            attempt += 1
            if attempt > 1:
                request.headers["X-Retry-Count"] = str(attempt - 1)
            info = None
            if hooks:
                info = AttemptInfo(request.method, request.url, attempt, request.stream)
                info.call = context
                for hook in hooks:
                    hook.on_request(info)
            if context is not None:
                context.attempt = attempt
            request.attempt_started = loop.time()
            try:
                response = await transport.send(request)
                if info is not None:
                    for hook in hooks:
                        hook.on_response(info, response.status, response.headers)
                if not 200 <= response.status < 300:
                    await _raise_for_status(response)
                return await handle(response, info or attempt)
            except APIError as exc:
                delay = self._retry_delay(exc, attempt, policy, request, info)
                if delay is None:
                    raise
                await sleep(delay)

    # --- the operations ------------------------------------------------------------------

    async def send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> Any:
        """Send a request whose answer is one body; return it as ``cast_to`` (``bytes``,
        ``dict`` or a msgspec type). Every non-streamed call of the package comes here.

        With ``max_concurrency`` the slot is taken before the request is built, so calls
        queued behind the cap hold no request objects (``Timeout.total`` counts the wait).
        The whole call, a first attempt that succeeds included, runs in this one frame.
        """
        if self.shared.callers and not observed:
            # In another frame: a closure here would give every call (and every call queued
            # for a slot) a cell per argument.
            return await self._send_observed(method, path, body, options, cast_to, context)
        if self.cache is not None:
            return await self._send_cached(method, path, body, options, cast_to, context)
        if self.slots is None:
            return await self._send(method, path, body, options, cast_to, context, None)
        # Queued in this small frame (the call's one body is built once the slot is taken):
        # 10,000 calls waiting for the cap hold little each.
        semaphore = self.slots.current()
        deadline = None
        if semaphore.locked() and self._total(options) is not None:
            semaphore, deadline = await self._take_slot(options)
        else:
            await semaphore.acquire()
        try:
            return await self._send(method, path, body, options, cast_to, context, deadline)
        finally:
            semaphore.release()

    async def _send_observed(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None,
    ) -> Any:
        call = context if context is not None else self.context(method, path, None, False)
        return await self._observed(
            call, lambda: self.send(method, path, body, options, cast_to, call, observed=True)
        )

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None,
        deadline: float | None,
    ) -> Any:
        """`send` once its slot (if any) is held: the request, its attempts and the decoding,
        all in this frame (no coroutine per layer)."""
        request = self._request(method, path, body, options, False, deadline)
        if self.key_provider is not None:
            await self._authorize(request)
        policy = self.retry_policy
        if options and "max_retries" in options:
            policy = policy.with_max_retries(options["max_retries"])
        loop = asyncio.get_running_loop()
        timings = Timings(loop.time())
        shared = self.shared
        hooks = shared.hooks
        max_size = self.max_response_size
        transport = self.transport
        # The read limit (the wait for the headers, then the whole body) is a watchdog's on
        # the pipeline's one timer, not the transport's timers (aiohttp re-arms its own on
        # every packet, and a body timer would be one more per request).
        read = request.timeout.read
        task = None
        watch = None
        if read is not None:
            request.watched = True
            task = asyncio.current_task()
            watch = shared.watch
            if watch is None or watch.loop is not loop:
                watch = shared.watch_for(loop)
        dog = None
        attempt = 0
        while True:
            attempt += 1
            info = None
            if attempt > 1:
                request.headers["X-Retry-Count"] = str(attempt - 1)
            if hooks:
                info = AttemptInfo(method, request.url, attempt, False)
                info.call = context
                for hook in hooks:
                    hook.on_request(info)
            if context is not None:
                context.attempt = attempt
            request.attempt_started = started = loop.time()
            if watch is not None:
                dog = Watchdog(None, watch, None, None, read, task, started)
            try:
                try:
                    response = await transport.send(request)
                except asyncio.CancelledError:
                    if (timeout := headers_timeout(dog, task)) is None:
                        raise
                    raise timeout from None
                if dog is not None:
                    dog.whole_body(response)
                if info is not None:
                    for hook in hooks:
                        hook.on_response(info, response.status, response.headers)
                if not 200 <= response.status < 300:
                    await _raise_for_status(response)
                timings.headers = loop.time()
                data = await response.read(max_size)
                if dog is not None:
                    dog.cancel()
                if cast_to is ChatCompletion:
                    # The chat fast path of _decode_body: the same checks, inline.
                    try:
                        result: Any = COMPLETION_DECODER.decode(data)
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        result = _decode_body(data, response, COMPLETION_DECODER)
                    else:
                        if (
                            result.error is not None
                            or result.object == "error"
                            or (not result.choices and b'"choices"' not in data)
                        ):
                            result = _decode_body(data, response, COMPLETION_DECODER)
                elif cast_to is bytes:
                    result = data
                else:
                    result = _decode_body(data, response, decoder_for(cast_to))
                timings.finished = timings.first_token = loop.time()
                if cast_to is not bytes or context is not None:
                    meta = ResponseInfo(response.status, response.headers, attempt, timings)
                    if cast_to is not bytes:
                        keep_response(result, data, meta)
                    if context is not None:
                        context.response = meta
                if info is not None:
                    # Only a CompletionUsage is usage: a cast_to may have a field of that
                    # name meaning something else.
                    usage = getattr(result, "usage", None)
                    if not isinstance(usage, CompletionUsage):
                        usage = None
                    for hook in hooks:
                        hook.on_complete(info, usage)
                return result
            except APIError as exc:
                if dog is not None:
                    dog.cancel()
                delay = self._retry_delay(exc, attempt, policy, request, info)
                if delay is None:
                    raise
                await sleep(delay)
            except BaseException:
                if dog is not None:
                    dog.cancel()  # idempotent
                raise

    async def send_raw(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> APIResponse[Any]:
        """`send`, keeping the response: status, headers, bytes and ``parse()``."""
        if self.shared.callers and not observed:
            if context is None:
                context = self.context(method, path, None, False)
            return await self._observed(
                context,
                lambda: self.send_raw(method, path, body, options, cast_to, context, observed=True),
            )
        semaphore = None
        deadline = None
        if self.slots is not None:
            semaphore, deadline = await self._take_slot(options)
        try:
            request = self._request(method, path, body, options, False, deadline)
            if self.key_provider is not None:
                await self._authorize(request)
            loop = asyncio.get_running_loop()
            timings = Timings(loop.time())
            hooks = self.shared.hooks
            max_size = self.max_response_size

            async def handle(response: Response, attempt: AttemptInfo | int) -> APIResponse[Any]:
                timings.headers = loop.time()
                data = await response.read(max_size)
                n = attempt if isinstance(attempt, int) else attempt.attempt
                timings.finished = timings.first_token = loop.time()
                info = ResponseInfo(response.status, response.headers, n, timings)
                # Decoded here, inside the retry loop, so that an error object sent with a
                # 200 is retried (or raised) as it is for create(); parse() returns it.
                parsed = _cast(data, response, cast_to, info)
                if hooks and not isinstance(attempt, int):
                    # A raw response reports its parsed object's usage.
                    usage = getattr(parsed, "usage", None)
                    if not isinstance(usage, CompletionUsage):
                        usage = None
                    for hook in hooks:
                        hook.on_complete(attempt, usage)
                if context is not None:
                    context.response = info
                return APIResponse(
                    info,
                    data,
                    lambda: parsed,
                    request=_request_info(request),
                    url=redact_url(response.url),
                    started=request.attempt_started,
                )

            return await self._attempts(request, self._policy(options), handle, context)
        finally:
            if semaphore is not None:
                semaphore.release()

    async def stream_raw(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any = ChatCompletionChunk,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> APIResponse[Any]:
        """`stream`, kept as an `APIResponse` whose ``parse()`` is the `AsyncStream`
        (``with_raw_response`` with ``stream=True``): the same attempts, slot and observers,
        and the request and URL the response came from."""
        if self.shared.callers and not observed:
            if context is None:
                context = self.context(method, path, None, True)
            return await self._observed(
                context,
                lambda: self.stream_raw(
                    method, path, body, options, cast_to, context, observed=True
                ),
            )
        decode_item = None if cast_to is ChatCompletionChunk else item_decoder(cast_to)
        semaphore = None
        deadline = None
        if self.slots is not None:
            semaphore, deadline = await self._take_slot(options)
        try:
            request = self._request(method, path, body, options, True, deadline)
            if self.key_provider is not None:
                await self._authorize(request)
            loop = asyncio.get_running_loop()
            timings = Timings(loop.time())
            first_event = request.timeout.first_event
            hooks = self.shared.hooks

            async def handle(
                response: Response, attempt: AttemptInfo | int
            ) -> tuple[AsyncStream[Any], Response, float]:
                timings.headers = loop.time()
                started = request.attempt_started
                # first_event is per attempt: a retry gets the whole limit again.
                opened = await open_stream(
                    response,
                    attempt=attempt,
                    timings=timings,
                    max_event_size=self.max_event_size,
                    idle=request.timeout.idle,
                    first_event_by=started + first_event if first_event else None,
                    hooks=hooks,
                    item_decoder=decode_item,
                    max_response_size=self.max_response_size,
                    watch=self.shared.watch_for(loop),
                )
                return opened, response, started

            opened, response, started = await self._attempts(
                request, self._policy(options), handle, context
            )
        except BaseException:
            if semaphore is not None:
                semaphore.release()
            raise
        if semaphore is not None:
            hold_slot(opened, semaphore.release)
        if context is not None:
            context.response = opened.http
        self.shared.streams.add(opened)
        if self.shared.stream_watchers:
            self._opened(context, opened)
        return APIResponse(
            opened.http,
            None,
            lambda: opened,
            request=_request_info(request),
            url=redact_url(response.url),
            started=started,
        )

    async def _stream_observed(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None,
    ) -> AsyncStream[Any]:
        call = context if context is not None else self.context(method, path, None, True)
        return await self._observed(
            call, lambda: self.stream(method, path, body, options, cast_to, call, observed=True)
        )

    async def stream(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any = ChatCompletionChunk,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> AsyncStream[Any]:
        """Send a streaming request; return its `AsyncStream` once the first event is in.

        With ``max_concurrency`` the slot is taken first (within ``Timeout.total``) and
        then held by the stream until it is closed.
        """
        if self.shared.callers and not observed:
            return await self._stream_observed(method, path, body, options, cast_to, context)
        if self.cache is not None:
            return await self._stream_cached(method, path, body, options, cast_to, context)
        decode_item = None if cast_to is ChatCompletionChunk else item_decoder(cast_to)
        semaphore = None
        deadline = None
        if self.slots is not None:
            semaphore = self.slots.current()
            if semaphore.locked() and self._total(options) is not None:
                semaphore, deadline = await self._take_slot(options)
            else:
                await semaphore.acquire()  # in this frame, as in send()
        dog: Watchdog | None = None
        try:
            request = self._request(method, path, body, options, True, deadline)
            if self.key_provider is not None:
                await self._authorize(request)
            policy = self.retry_policy
            if options and "max_retries" in options:
                policy = policy.with_max_retries(options["max_retries"])
            loop = asyncio.get_running_loop()
            timings = Timings(loop.time())
            first_event = request.timeout.first_event
            idle = request.timeout.idle
            read = request.timeout.read
            shared = self.shared
            hooks = shared.hooks
            watch = shared.watch
            if watch is None or watch.loop is not loop:  # watch_for(), inline
                watch = shared.watch_for(loop)
            # The read limit is this stream's watchdog's, from the request on: the transport
            # needs no per-read timer (aiohttp's re-arms on every packet received).
            task = asyncio.current_task() if read is not None else None
            request.watched = read is not None
            transport = self.transport
            attempt = 0
            # The attempts loop of _attempts, inline: a stream's set-up is per call.
            while True:
                attempt += 1
                info = None
                if attempt > 1:
                    request.headers["X-Retry-Count"] = str(attempt - 1)
                if hooks:
                    info = AttemptInfo(method, request.url, attempt, True)
                    info.call = context
                    for hook in hooks:
                        hook.on_request(info)
                if context is not None:
                    context.attempt = attempt
                request.attempt_started = started = loop.time()
                if read is not None:
                    dog = Watchdog(None, watch, None, None, read, task, started)
                try:
                    try:
                        response = await transport.send(request)
                    except asyncio.CancelledError:
                        if (timeout := headers_timeout(dog, task)) is None:
                            raise
                        raise timeout from None
                    if info is not None:
                        for hook in hooks:
                            hook.on_response(info, response.status, response.headers)
                    if not 200 <= response.status < 300:
                        if dog is not None:  # the read limit bounds the error body as a whole
                            dog.whole_body(response)
                        await _raise_for_status(response)
                    timings.headers = loop.time()
                    # first_event is per attempt: a retry gets the whole limit again.
                    opened = await open_stream(
                        response,
                        attempt=info or attempt,
                        timings=timings,
                        max_event_size=self.max_event_size,
                        idle=idle,
                        first_event_by=started + first_event if first_event else None,
                        hooks=hooks,
                        item_decoder=decode_item,
                        max_response_size=self.max_response_size,
                        watch=watch,
                        watchdog=dog,
                    )
                    break
                except APIError as exc:
                    if dog is not None:
                        dog.cancel()
                    delay = self._retry_delay(exc, attempt, policy, request, info)
                    if delay is None:
                        raise
                    await sleep(delay)
        except BaseException:
            if dog is not None:
                dog.cancel()  # idempotent; a stream that opened owns it
            if semaphore is not None:
                semaphore.release()
            raise
        if semaphore is not None:
            hold_slot(opened, semaphore.release)
        if context is not None:
            context.response = opened.http
        self.shared.streams.add(opened)
        if self.shared.stream_watchers:
            self._opened(context, opened)
        return opened

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        *,
        stream: bool,
        context: CallContext | None = None,
        observed: bool = False,
    ) -> tuple[StreamedAPIResponse[Any], Callable[[], None]]:
        """Send a request and stop at its headers (``with_streaming_response``).

        Returns the response and the function that lets go of it and of the
        ``max_concurrency`` slot, which is held until then. ``parse()`` reads the body as
        ``cast_to`` (for ``stream``, an `AsyncStream` of ``cast_to`` items).
        """
        if self.shared.callers and not observed:
            if context is None:
                context = self.context(method, path, None, stream)
            return await self._observed(
                context,
                lambda: self.open(
                    method, path, body, options, cast_to,
                    stream=stream, context=context, observed=True,
                ),
            )
        semaphore = None
        deadline = None
        if self.slots is not None:
            semaphore, deadline = await self._take_slot(options)
        loop = asyncio.get_running_loop()
        timings = Timings(loop.time())

        async def handle(response: Response, attempt: AttemptInfo | int) -> Any:
            timings.headers = loop.time()
            return response, attempt

        try:
            request = self._request(method, path, body, options, stream, deadline)
            if self.key_provider is not None:
                await self._authorize(request)
            response, attempt = await self._attempts(
                request, self._policy(options), handle, context
            )
        except BaseException:
            if semaphore is not None:
                semaphore.release()
            raise
        n = attempt if isinstance(attempt, int) else attempt.attempt
        info = ResponseInfo(response.status, response.headers, n, timings)
        if context is not None:
            context.response = info
        max_size = self.max_response_size
        max_event_size = self.max_event_size
        hooks = self.shared.hooks

        async def read(response: Response) -> Any:
            if not stream:
                data = await response.read(max_size)
                timings.finished = timings.first_token = loop.time()
                return _cast(data, response, cast_to, info)
            first_event = request.timeout.first_event
            opened = await open_stream(
                response,
                attempt=attempt,
                timings=timings,
                max_event_size=max_event_size,
                idle=request.timeout.idle,
                first_event_by=request.attempt_started + first_event if first_event else None,
                hooks=hooks,
                item_decoder=item_decoder(cast_to),
                max_response_size=max_size,
                watch=self.shared.watch_for(loop),
            )
            if self.shared.stream_watchers:
                self._opened(context, opened)
            return opened

        async def parse(response: Response) -> Any:
            if context is None:
                return await read(response)
            # Observed: the call's context keeps what the body became (its span ends later).
            try:
                context.result = await read(response)
            except BaseException as exc:
                context.error = exc
                raise
            return context.result

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

        opened = StreamedAPIResponse(
            response,
            info,
            parse,
            max_size=max_size,
            close=close,
            request=_request_info(request),
            url=redact_url(response.url),
            started=request.attempt_started,
        )
        return opened, close

    # --- the cache step ------------------------------------------------------------------

    def _uncached(self, recorder: Recorder | None = None) -> Pipeline:
        """This pipeline without its cache step (sending through ``recorder``, if given)."""
        pipeline = self.copy()
        pipeline.cache = None
        if recorder is not None:
            pipeline.transport = recorder
        return pipeline

    def _target(self, path: str, options: Mapping[str, Any] | None) -> str:
        """The URL path and query a request goes to (what a cache key holds of the URL)."""
        query = self.query_string
        extra_query = options.get("extra_query") if options else None
        if extra_query:
            merged = {**self.query, **extra_query}
            merged = {k: v for k, v in merged.items() if v is not None}
            query = "?" + urlencode(merged) if merged else ""
        return urlsplit(self.url).path + path + query

    def _hit_info(self, response: ReplayResponse) -> ResponseInfo:
        now = asyncio.get_running_loop().time()
        timings = Timings(now)
        timings.headers = timings.first_token = timings.finished = now
        return ResponseInfo(response.status, response.headers, 0, timings)

    async def _cache_flight(
        self, key: str, stream: bool, mode: object, context: CallContext | None
    ) -> tuple[Entry | None, Flight | None]:
        """A stored or shared entry (a hit), or the flight this call now leads (a miss).

        Identical calls in flight wait for the leader: its entry, its error (raised here),
        or, when it stopped without either, they try again themselves."""
        from ._cache import Flight  # loaded with the first cache: no cost without one

        step = self.cache
        assert step is not None
        flights = step.flights
        while mode is True:
            flight = flights.get(key)
            if flight is None:
                entry = await step.lookup(key, stream)
                if entry is not None:
                    if context is not None:
                        context.cache = "hit"
                    return entry, None
                # Another call may have become the leader while the backend answered.
                flight = flights.get(key)
                if flight is None:
                    break
            await flight.done.wait()
            if flight.entry is not None:
                if context is not None:
                    context.cache = "hit"
                return flight.entry, None
            if flight.error is not None:
                raise flight.error
        if context is not None:
            context.cache = "miss" if mode is True else "refresh"
        flight = Flight()
        # A refresh while another call leads: send and store, leaving that flight alone.
        flights.setdefault(key, flight)
        return None, flight

    def _land(self, key: str, flight: Flight, error: BaseException | None = None) -> None:
        """The leader ended without an entry: release its waiters (with ``error``)."""
        if isinstance(error, Exception):
            flight.error = error
        flight.done.set()
        step = self.cache
        if step is not None and step.flights.get(key) is flight:
            del step.flights[key]

    async def _send_cached(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None,
    ) -> Any:
        """`send` with the cache step: a hit decodes the stored body, a miss stores a
        whole success (a body that decoded as ``cast_to``)."""
        from ._cache import Recorder, ReplayResponse, entry_from, validator

        step = self.cache
        assert step is not None
        mode = options.get("cache", True) if options else True
        if mode is False or method != "POST":
            if context is not None:
                context.cache = "bypass"
            return await self._uncached().send(
                method, path, body, options, cast_to, context, observed=True
            )
        target = self._target(path, options)
        key = step.key(method, target, False, body)
        entry, flight = await self._cache_flight(key, False, mode, context)
        if entry is not None:
            response = ReplayResponse(entry, self.url + path)
            return _cast(entry.body, response, cast_to, self._hit_info(response))
        assert flight is not None
        recorder = Recorder(self.transport)
        try:
            result = await self._uncached(recorder).send(
                method, path, body, options, cast_to, context, observed=True
            )
            check = validator()
            if check is not None:
                check(result)  # a reply parse() would refuse is not stored
        except BaseException as exc:
            self._land(key, flight, exc)
            raise
        recorded = recorder.last
        assert recorded is not None and recorded.parts
        flight.entry = entry = entry_from(False, recorded, recorded.parts[0])
        flight.done.set()
        try:
            await step.store(key, entry)
        finally:
            if step.flights.get(key) is flight:
                del step.flights[key]
        return result

    async def _stream_cached(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None,
    ) -> AsyncStream[Any]:
        """`stream` with the cache step: a hit replays the stored events as a stream; a
        miss stores the events of a stream that ends normally (not a cut or closed one)."""
        from ._cache import Recorder, ReplayResponse, entry_from

        step = self.cache
        assert step is not None
        mode = options.get("cache", True) if options else True
        if mode is False or method != "POST":
            if context is not None:
                context.cache = "bypass"
            return await self._uncached().stream(
                method, path, body, options, cast_to, context, observed=True
            )
        decode_item = None if cast_to is ChatCompletionChunk else item_decoder(cast_to)
        key = step.key(method, self._target(path, options), True, body)
        entry, flight = await self._cache_flight(key, True, mode, context)
        if entry is not None:
            response = ReplayResponse(entry, self.url + path)
            now = asyncio.get_running_loop().time()
            timings = Timings(now)
            timings.headers = now
            replayed = await open_stream(
                response,
                attempt=0,
                timings=timings,
                max_event_size=self.max_event_size,
                idle=None,
                first_event_by=None,
                item_decoder=decode_item,
                max_response_size=self.max_response_size,
            )
            if self.shared.stream_watchers:
                self._opened(context, replayed)
            return replayed
        assert flight is not None
        recorder = Recorder(self.transport)
        try:
            opened = await self._uncached(recorder).stream(
                method, path, body, options, cast_to, context, observed=True
            )
        except BaseException as exc:
            self._land(key, flight, exc)
            raise
        recorded = recorder.last
        assert recorded is not None

        def complete() -> None:
            entry = entry_from(True, recorded, b"".join(recorded.parts))
            flight.entry = entry
            flight.done.set()
            step.store_later(key, entry, flight)

        def ended() -> None:
            if flight.entry is None:  # cut, failed or closed early: nothing to share
                self._land(key, flight)

        when_complete(opened, complete)
        recorded.ended = ended
        return opened

    async def aclose(self) -> None:
        """Close the transport, and every stream still open (their readers raise)."""
        if self.cache is not None:
            await self.cache.aclose()
        # Raises, closing nothing, from another loop while the pool's loop is open.
        await self.transport.aclose()
        for opened in list(self.shared.streams):
            abort_stream(
                opened, APIConnectionError("The client was closed while the stream was open")
            )

