"""Streams: `AsyncStream` of chunks, and the events it can be made to end with; the time
limits of every chat call, a stream's or not (`Watchdog`, on a pipeline's one timer,
`StreamWatch`)."""

from __future__ import annotations

import asyncio
import math
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import msgspec

from ._decode import CHUNK_DECODER, JSON_DECODER, decode_lenient
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    error_from_payload,
    is_error_object,
)
from ._meta import ResponseInfo, Timings, request_id_of
from ._sse import SSEDecoder
from ._transports.base import DEFAULT_MAX_RESPONSE_SIZE
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    keep_response,
)

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from ._observe import AttemptInfo, Hooks
    from ._transports.base import Response

__all__ = [
    "AsyncStream",
    "StreamObserver",
    "StreamWatch",
    "Watchdog",
    "abort_stream",
    "headers_timeout",
    "hold_slot",
    "observe",
    "open_stream",
    "raise_if_incomplete",
    "when_complete",
    "yields_chunks",
]

T = TypeVar("T")


#: A body under another content type is SSE if it starts (after a BOM and blank space)
#: with one of these; _SNIFF_BYTES is enough to tell, _SNIPPET_BYTES what an error quotes.
_SSE_STARTS = (b"data:", b":", b"event:", b"id:", b"retry:")
_BLANK = b"\xef\xbb\xbf \t\r\n"
_SNIFF_BYTES = 6
_SNIPPET_BYTES = 800


class StreamObserver(Protocol):
    """Hears one stream (`anyapi_async.otel`): wraps its chunk iterator, is told of `close`."""

    def wrap(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]: ...

    def closed(self, stream: AsyncStream[Any]) -> None: ...


def observe(stream: AsyncStream[Any], observer: StreamObserver) -> None:
    """Package seam for `anyapi_async.otel`: attach ``observer`` before iteration starts."""
    stream._observer = observer


def yields_chunks(stream: AsyncStream[Any]) -> bool:
    """Package seam for `anyapi_async.otel`: whether ``stream`` is a chat stream (its items
    `ChatCompletionChunk`), not a stream of other ``cast_to`` items."""
    return stream._item_decoder is None


def hold_slot(stream: AsyncStream[Any], release: Callable[[], None]) -> None:
    """Package seam for the client: ``release`` (a ``max_concurrency`` slot) runs on close."""
    stream._on_close = release


def when_complete(stream: AsyncStream[Any], callback: Callable[[], None]) -> None:
    """Package seam for the cache step: ``callback`` runs when ``stream`` ends normally."""
    stream._on_complete = callback


def open_stream(
    response: Response,
    *,
    attempt: AttemptInfo | int,
    timings: Timings,
    max_event_size: int,
    idle: float | None,
    first_event_by: float | None,
    hooks: tuple[Hooks, ...] = (),
    item_decoder: Callable[[bytes], Any] | None = None,
    max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    watch: StreamWatch | None = None,
    watchdog: Watchdog | None = None,
) -> Awaitable[AsyncStream[Any]]:
    """Await it for an `AsyncStream` over ``response``, read up to its first event (so
    errors before it can still be retried; the stream is closed if that fails).
    ``item_decoder`` turns each event into an item; without one the items are
    `ChatCompletionChunk` objects, checked as a chat stream. ``max_response_size`` bounds a
    JSON body sent instead of a stream; ``watch`` (the pipeline's, for this loop) enforces
    its time limits, through ``watchdog`` if the pipeline started one with the request.
    (A plain function handing back the stream's own coroutine: one frame fewer in every
    stream's set-up.)"""
    stream: AsyncStream[Any] = AsyncStream(
        response,
        attempt=attempt,
        timings=timings,
        max_event_size=max_event_size,
        idle=idle,
        first_event_by=first_event_by,
        hooks=hooks,
        item_decoder=item_decoder,
        watch=watch,
        watchdog=watchdog,
    )
    return stream._open(max_response_size)


class StreamWatch:
    """The one timer behind the ``idle`` and ``first_event`` limits of every stream that a
    pipeline (and its copies) has open in one event loop.

    Each stream's `Watchdog` keeps its own deadline in plain attributes, set per network
    read; the watch keeps a single timer armed at the earliest deadline and, when it fires,
    ends the streams whose wait has lasted too long and re-arms for the next. A stream that
    opens while the timer is armed for an earlier moment (as each of a run of streams with
    the same limits does) costs a set insertion, not a timer of its own; one that ends
    leaves the set, and the timer, finding nothing left to watch, stops.
    """

    __slots__ = ("_dogs", "_handle", "_when", "loop")

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self._dogs: set[Watchdog] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf

    def arm(self, when: float) -> None:
        """Make sure the timer fires by ``when`` (loop time)."""
        if when < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = when
            self._handle = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        soonest = math.inf
        for dog in [*self._dogs]:  # a stream ended here leaves the set
            when = dog.deadline(now)
            if when <= now:
                dog.fire(when)
            elif when < soonest:
                soonest = when
        self._handle = None
        self._when = soonest
        if soonest != math.inf:
            self._handle = self.loop.call_at(soonest, self._check)


class Watchdog:
    """Enforces one attempt's time limits without a timer of its own, per event or per packet.

    From the request to the response headers (``response`` not given yet) it bounds the
    ``read`` limit by cancelling ``task``, the one sending the request (the pipeline turns
    that into `APITimeoutError`, see `headers_timeout`). For a stream, once `attach`
    gives it the response it bounds ``first_event``, ``idle`` (silence while waiting for
    an event) and ``read`` (silence while waiting for bytes) by aborting the response; for
    a non-streamed response `whole_body` bounds the time to read all of it. The stream sets
    `since` to the loop time when it starts waiting and to ``inf`` while the caller holds
    an event, and `heard` when bytes came but no event; its `StreamWatch` asks for the
    deadline when its timer fires. Per network read that is an attribute store or two.
    """

    __slots__ = (
        "_first_by",
        "_idle",
        "_read",
        "_response",
        "_task",
        "_watch",
        "_whole",
        "fired",
        "heard",
        "since",
    )

    def __init__(
        self,
        response: Response | None,
        watch: StreamWatch,
        idle: float | None,
        first_event_by: float | None,
        read: float | None = None,
        task: asyncio.Task[Any] | None = None,
        since: float | None = None,
    ) -> None:
        self._response = response
        self._watch = watch
        self._idle = idle if response is not None else None
        self._first_by = first_event_by
        self._read = read
        self._task = task
        self._whole = False
        if since is None:
            since = watch.loop.time()
        self.since = since
        self.heard = since
        self.fired: str | None = None
        watch._dogs.add(self)
        when = self.deadline(since)
        if when < watch._when:
            watch.arm(when)

    def attach(
        self,
        response: Response,
        idle: float | None,
        first_event_by: float | None,
        now: float | None = None,
    ) -> None:
        """The headers are in (at loop time ``now``): watch the body of ``response``."""
        self._response = response
        self._idle = idle
        self._first_by = first_event_by
        if now is None:
            now = self._watch.loop.time()
        self.since = self.heard = now
        when = self.deadline(now)
        if when < self._watch._when:
            self._watch.arm(when)

    def whole_body(self, response: Response) -> None:
        """The headers of a non-streamed response are in: all of its body must arrive
        within the read limit from now (`Response.read`'s own bound, kept here)."""
        self._response = response
        self._whole = True
        self.since = self.heard = now = self._watch.loop.time()
        if self._read is not None and now + self._read < self._watch._when:
            self._watch.arm(now + self._read)

    def deadline(self, now: float) -> float:
        """When the current wait will have lasted too long; while the caller holds an
        event (no wait), one limit from ``now``, to look again then."""
        since = self.since
        idle = self._idle
        read = self._read
        if since == math.inf:
            when = now + (idle or read or 1.0)
        else:
            when = since + idle if idle is not None else math.inf
            if read is not None:
                heard = self.heard
                by = (heard if heard > since else since) + read
                if by < when:
                    when = by
        if self._first_by is not None and self._first_by < when:
            when = self._first_by
        return when

    def fire(self, deadline: float) -> None:
        self._watch._dogs.discard(self)
        if self._first_by is not None and deadline == self._first_by:
            self.fired, what = "first_event", "the first stream event"
        elif self._idle is not None and deadline == self.since + self._idle:
            self.fired, what = "idle", "the next stream event"
        else:
            self.fired = "read"
            what = "data from the server" if self._response is not None else "the response headers"
        response = self._response
        if response is None:
            if self._task is not None:
                self._task.cancel()
            return
        if self._whole:
            message = (
                "Timed out reading the response body: all of it must arrive within the read "
                f"limit ({self._read:g} s)"
            )
        else:
            message = f"Timed out waiting for {what} ({self.fired} limit)"
        response.abort(APITimeoutError(message, limit=self.fired))

    def cancel(self) -> None:
        self._watch._dogs.discard(self)  # StreamWatch.forget, inline


def headers_timeout(
    watchdog: Watchdog | None, task: asyncio.Task[Any] | None
) -> APITimeoutError | None:
    """For a `CancelledError` out of sending a request: the error to raise instead when it
    is the watchdog's read limit (the cancellation is then taken back from ``task``), or
    ``None`` for a cancellation from outside, to be raised as it is."""
    if watchdog is None or watchdog.fired is None:
        return None
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:  # Python 3.11+: count it off; another cancel still stands
        uncancel()
        if task.cancelling():  # type: ignore[union-attr]
            return None
    return APITimeoutError(
        "Timed out waiting for the response headers (read limit)", limit="read"
    )


class _Closed(Exception):
    """Raised into a pending read when another task closes the stream."""


def _completion_as_chunk(completion: ChatCompletion) -> ChatCompletionChunk:
    """A server that ignored ``stream=true`` and answered JSON: present it as one chunk.

    Its kept body (``to_dict()``) stays the ``chat.completion`` the server sent, as
    ``to_dict()`` always returns the body as received (docs/getting-started.md)."""
    choices = []
    for c in completion.choices:
        m = c.message
        tool_calls = None
        if m.tool_calls:
            tool_calls = [
                ChoiceDeltaToolCall(
                    index=i,
                    id=tc.id,
                    type=tc.type,
                    function=ChoiceDeltaToolCallFunction(
                        name=tc.function.name, arguments=tc.function.arguments
                    ),
                )
                for i, tc in enumerate(m.tool_calls)
            ]
        fc = m.function_call
        delta = ChoiceDelta(
            role=m.role,
            content=m.content,
            refusal=m.refusal,
            tool_calls=tool_calls,
            function_call=None
            if fc is None
            else ChoiceDeltaFunctionCall(name=fc.name, arguments=fc.arguments),
            reasoning_content=m.reasoning_content,
            reasoning=m.reasoning,
        )
        choices.append(
            ChunkChoice(
                index=c.index, delta=delta, finish_reason=c.finish_reason, logprobs=c.logprobs
            )
        )
    return ChatCompletionChunk(
        id=completion.id,
        created=completion.created,
        model=completion.model,
        choices=choices,
        usage=completion.usage,
        system_fingerprint=completion.system_fingerprint,
        service_tier=completion.service_tier,
    )


class AsyncStream(Generic[T]):
    """The chunks of a streamed completion, as they arrive.

    Use it as an async iterator inside ``async with``; leaving the block, breaking out of
    the loop, an exception or cancellation releases the connection:

    ```python
    stream = await client.chat.completions.create(model=m, messages=msgs, stream=True)
    async with stream:
        async for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="")
    ```

    The stream ends normally on ``data: [DONE]``, or at the end of the body once every
    choice has a ``finish_reason``. A body that ends any other way raises
    `APIConnectionError`; an error event raises the matching `APIStatusError`; a later
    loop over a failed stream raises the same error again. `close` may be called from any
    task. Each ``async for`` gets its own iterator, held only by the loop: leaving the loop
    early (``break``, an exception) releases the connection and the ``max_concurrency``
    slot when the event loop finalises that iterator, on its next iteration, even without
    ``async with`` and with the garbage collector off; a later loop over that stream
    yields nothing. One reader at a time: ``anext(stream)`` then ``async for`` goes on
    with the rest, while a loop or ``anext()`` from another task during a loop raises
    `RuntimeError`. A stream dropped without being closed is released when it is
    garbage-collected, with a `ResourceWarning`; after ``anext()`` the stream and its
    stored iterator form a cycle, so that needs the cycle collector (close it instead).
    """

    def __init__(
        self,
        response: Response,
        *,
        attempt: AttemptInfo | int,
        timings: Timings,
        max_event_size: int,
        idle: float | None,
        first_event_by: float | None,
        hooks: tuple[Hooks, ...] = (),
        item_decoder: Callable[[bytes], Any] | None = None,
        watch: StreamWatch | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self._response = response
        # None: chat chunks (the checked fast path); else how other items decode.
        self._item_decoder = item_decoder
        self._chunks = response.chunks()
        self._decoder = SSEDecoder(max_event_size)
        self._backlog: list[bytes] = []
        self._attempt = attempt
        self._hooks = hooks
        self._loop = asyncio.get_running_loop()
        self._timings = timings
        self._idle = idle
        self._first_event_by = first_event_by
        self._watch = watch
        # Started with the request (the read limit up to the headers); attached in _open.
        self._watchdog: Watchdog | None = watchdog

    # State every stream starts with, as class attributes: a stream sets only what changes
    # (fewer stores on every stream's way to its first event).
    _json_chunk: Any = None
    #: The first event, decoded (and checked) while opening; the loop yields it first.
    _first: ChatCompletionChunk | None = None
    #: Set by the client once the stream holds a max_concurrency slot: frees it on close.
    _on_close: Callable[[], None] | None = None
    #: Set by the cache step: told when the stream ends normally (and so may be stored).
    _on_complete: Callable[[], None] | None = None
    _observer: StreamObserver | None = None
    _closed = False
    _done = False
    #: Ended normally; or the error it ended with (raised again by a later loop).
    _complete = False
    _error: Exception | None = None
    #: An iterator is running (an earlier loop that was left early has not ended yet).
    _iterating = False
    #: Only for callers of __anext__ (a loop gets a fresh iterator from __aiter__).
    _iterator: AsyncIterator[T] | None = None
    #: The latest loop's iterator, weakly: alive means a loop is reading the stream.
    _loop_iterator: weakref.ref[Any] | None = None
    _http: ResponseInfo | None = None
    #: The usage chunk's figures, once it has been read (``None`` before or without one).
    usage: Any = None

    @property
    def http(self) -> ResponseInfo:
        """Headers, request id, rate limits, timings and attempts of this stream."""
        http = self._http
        if http is None:  # built when first asked for: most streams never are
            attempt = self._attempt
            attempts = attempt if isinstance(attempt, int) else attempt.attempt
            response = self._response
            http = self._http = ResponseInfo(
                response.status, response.headers, attempts, self._timings
            )
        return http

    @http.setter
    def http(self, value: ResponseInfo) -> None:
        self._http = value

    @property
    def headers(self) -> Any:
        """The response headers."""
        return self._response.headers

    @property
    def closed(self) -> bool:
        """Whether the stream has let go of its connection (ended, failed or closed)."""
        return self._closed

    @property
    def request_id(self) -> str | None:
        """The server's request id (``x-request-id`` or similar), if it sent one."""
        return request_id_of(self._response.headers)

    async def _open(self, max_response_size: int) -> AsyncStream[T]:
        """Read up to the first event (an error there is retried like a status); on any
        failure let go of the response."""
        try:
            response = self._response
            content_type = response.content_type
            watchdog = self._watchdog
            if content_type in ("application/json", "text/json"):
                # Some gateways answer errors (and some servers whole completions) as plain
                # JSON even when a stream was asked for.
                if watchdog is not None:  # the read limit bounds the body as a whole
                    watchdog.whole_body(response)
                body = await response.read(max_response_size)
                if watchdog is not None:
                    watchdog.cancel()
                    self._watchdog = None
                self._done = True
                if self._item_decoder is not None:
                    self._json_chunk = self._decode_item(body)
                else:
                    self._json_chunk = self._decode_slow(body)
                    keep_response(self._json_chunk, body)
                return self
            if watchdog is not None:
                watchdog.attach(
                    response, self._idle, self._first_event_by, self._timings.headers
                )
            elif self._idle is not None or self._first_event_by is not None:
                watch = self._watch
                if watch is None or watch.loop is not self._loop:
                    watch = StreamWatch(self._loop)  # a stream of its own
                watchdog = self._watchdog = Watchdog(
                    response, watch, self._idle, self._first_event_by
                )
            if content_type != "text/event-stream":
                # A proxy's HTML page, plain text, or SSE under another content type: look.
                await self._sniff(content_type)
            while not self._backlog:
                try:
                    data = await self._chunks.__anext__()
                except StopAsyncIteration:
                    self._backlog = self._decoder.flush_data()
                    if not self._backlog:
                        raise APIConnectionError(
                            "The stream ended before its first event"
                        ) from None
                    break
                self._backlog = self._decoder.feed_data(data)
                if watchdog is not None and not self._backlog:
                    watchdog.heard = self._loop.time()  # bytes, no event yet
            self._timings.first_token = self._loop.time()
            # Check the first event now: an error event here is retried like a status.
            # A chat chunk decoded here is the one the loop yields first.
            for payload in self._backlog:
                if payload.strip() and payload[:1] != b"[":
                    if self._item_decoder is not None:
                        self._decode_item(payload)
                    else:
                        chunk = self._decode(payload)
                        chunk._raw = payload
                        self._first = chunk
                break
            if self._watchdog is not None:
                self._watchdog._first_by = None  # the first_event limit is met
                # The event waits for the caller, who may take their time to start reading.
                self._watchdog.since = math.inf
        except BaseException:
            self._release()
            raise
        return self

    async def _sniff(self, content_type: str) -> None:
        """Go on if the body starts like SSE, else raise naming what came instead."""
        head = b""
        ended = False
        while len(head.lstrip(_BLANK)) < _SNIFF_BYTES and not ended:
            try:
                head += await self._chunks.__anext__()
            except StopAsyncIteration:
                ended = True
            if self._watchdog is not None:
                self._watchdog.heard = self._loop.time()
        start = head.lstrip(_BLANK)
        if start and start.startswith(_SSE_STARTS):
            self._backlog = self._decoder.feed_data(head)
            return
        while len(head) < _SNIPPET_BYTES and not ended:
            try:
                head += await self._chunks.__anext__()
            except StopAsyncIteration:
                ended = True
        raise APIResponseValidationError(
            f"The server answered a streaming request with {content_type or 'no content type'}"
            ", not text/event-stream",
            status_code=self._response.status,
            body=head,
            headers=self._response.headers,
        )

    def _decode(self, payload: bytes) -> ChatCompletionChunk:
        try:
            chunk = CHUNK_DECODER.decode(payload)
        except msgspec.ValidationError:
            chunk = self._decode_slow(payload)
        except msgspec.DecodeError as exc:
            raise APIResponseValidationError(
                "A stream event is not valid JSON", status_code=self._response.status, body=payload
            ) from exc
        if chunk.error is not None or chunk.object == "error":  # is_error_object, inline
            raise error_from_payload(
                JSON_DECODER.decode(payload),
                self._response.status,
                self._response.headers,
                self.request_id,
            )
        return chunk

    def _decode_slow(self, payload: bytes) -> ChatCompletionChunk:
        try:
            obj = JSON_DECODER.decode(payload)
        except msgspec.DecodeError as exc:
            raise APIResponseValidationError(
                "A stream event is not valid JSON", status_code=self._response.status, body=payload
            ) from exc
        if is_error_object(obj):
            raise error_from_payload(
                obj, self._response.status, self._response.headers, self.request_id
            )
        try:
            if isinstance(obj, dict) and obj.get("object") == "chat.completion":
                return _completion_as_chunk(decode_lenient(payload, ChatCompletion))
            return decode_lenient(payload, ChatCompletionChunk)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise APIResponseValidationError(
                f"A stream event is not a chat.completion.chunk: {exc}",
                status_code=self._response.status,
                body=payload,
            ) from exc

    def _decode_refused(self, payload: bytes, at_eof: bool) -> ChatCompletionChunk:
        """An event the strict decoder refused: the tolerant pass; at the end of the body a
        broken event means the body was cut there."""
        if not at_eof:
            return self._decode_slow(payload)
        try:
            return self._decode_slow(payload)
        except APIResponseValidationError as exc:
            raise APIConnectionError("The stream ended in the middle of an event") from exc

    def _decode_item(self, payload: bytes) -> Any:
        """One event of a stream of ``cast_to`` items (not chat chunks); error events raise."""
        decode = self._item_decoder
        assert decode is not None
        try:
            item = decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self._raise_if_error(payload)
            raise APIResponseValidationError(
                f"A stream event does not have the expected shape: {exc}",
                status_code=self._response.status,
                body=payload,
            ) from exc
        if isinstance(item, bytes):
            if b'"error"' in item:
                self._raise_if_error(item)
            return item
        if is_error_object(item):
            self._raise_if_error(payload)
        keep_response(item, payload)
        return item

    def _raise_if_error(self, payload: bytes) -> None:
        try:
            obj = JSON_DECODER.decode(payload)
        except msgspec.DecodeError:
            return
        if isinstance(obj, dict) and is_error_object(obj):
            raise error_from_payload(
                obj, self._response.status, self._response.headers, self.request_id
            )

    def __aiter__(self) -> AsyncIterator[T]:
        if self._iterator is not None:
            # Started with anext(): a loop goes on with that same iterator.
            return self._iterator
        loop_iterator = self._loop_iterator
        if loop_iterator is not None and not self._closed and loop_iterator() is not None:
            raise RuntimeError(
                "This AsyncStream is already being iterated (by another loop or task); "
                "a stream can be read by one loop at a time"
            )
        # A fresh generator that only the loop holds: when the loop is left early, the
        # generator's last reference goes and the event loop finalises it on its next
        # iteration, which closes the stream. Holding it here would make a cycle only the
        # collector frees; a weak reference tells a live loop from an abandoned one.
        iterator: Any = self._iterate() if self._item_decoder is None else self._iterate_items()
        if self._observer is not None:  # per loop, never per chunk
            iterator = self._observer.wrap(iterator)
        self._loop_iterator = weakref.ref(iterator)
        return iterator  # type: ignore[no-any-return]

    async def __anext__(self) -> T:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = self.__aiter__()
        return await iterator.__anext__()

    async def _iterate(self) -> AsyncIterator[ChatCompletionChunk]:
        if self._closed or self._iterating:
            # Ended, failed or closed; or an earlier loop was left early and is about to
            # close it: nothing more to read.
            self._release()
            if self._error is not None:
                raise self._error
            return
        self._iterating = True
        decode = CHUNK_DECODER.decode
        decoder = self._decoder
        watchdog = self._watchdog
        time = self._loop.time
        timings = self._timings
        seen: set[int] = set()
        finished: set[int] = set()
        payloads = self._backlog
        self._backlog = []
        chunks = self._chunks
        at_eof = False
        try:
            if self._json_chunk is not None:
                timings.first_token = timings.finished = time()
                self._complete = True
                yield self._json_chunk
                return
            first = self._first
            if first is not None:
                # Decoded and checked by _open (payloads[0]): its bookkeeping, as below.
                self._first = None
                del payloads[0]
                for choice in first.choices:
                    if choice.finish_reason is not None:
                        finished.add(choice.index)
                    else:
                        seen.add(choice.index)
                if first.usage is not None:
                    self.usage = first.usage
                yield first
            while True:
                for payload in payloads:
                    if payload[0] == 91 and payload.strip() == b"[DONE]":  # 91 is "["
                        self._done = True
                        break
                    try:
                        chunk = decode(payload)
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        if not payload.strip():
                            continue
                        chunk = self._decode_refused(payload, at_eof)
                    if chunk.error is not None:
                        self._decode(payload)  # raises the error it carries
                    choices = chunk.choices
                    if choices:
                        for choice in choices:
                            if choice.finish_reason is not None:
                                finished.add(choice.index)
                            elif choice.index not in seen:  # a lookup, not a call, per chunk
                                seen.add(choice.index)
                    elif chunk.object == "error":  # error objects carry no choices
                        self._decode(payload)
                    if chunk.usage is not None:
                        self.usage = chunk.usage
                    # KeepsBody (for to_dict()): the slot is set here rather than through
                    # keep_response(), which costs a call per chunk.
                    chunk._raw = payload
                    yield chunk
                if self._done or at_eof:
                    break
                if watchdog is not None and payloads:
                    # The caller has had this read's events: waiting starts again now.
                    # (Marked per read, not per event; comments alone do not reset it.)
                    watchdog.since = time()
                try:
                    data = await chunks.__anext__()
                except StopAsyncIteration:
                    at_eof = True
                    payloads = decoder.flush_data()
                    continue
                payloads = decoder.feed_data(data)
                if watchdog is not None:
                    if payloads:
                        watchdog.since = math.inf
                    else:
                        watchdog.heard = time()  # bytes but no event: the read limit restarts
            if not self._done and not (finished and seen <= finished):
                raise APIConnectionError(
                    "The stream ended early: no [DONE] and "
                    + ("no finish_reason" if not finished else "not every choice finished")
                )
            self._end()
        except _Closed:
            return
        except APIConnectionError as exc:
            if self._closed and exc is not self._error:
                return  # closed by the caller, maybe from another task: a quiet end
            self._error = exc
            raise
        except Exception as exc:
            self._error = exc
            raise
        finally:
            self._iterating = False
            self._release()

    async def _iterate_items(self) -> AsyncIterator[Any]:
        """`_iterate` for ``cast_to`` items: each event decoded, ``[DONE]`` required."""
        if self._closed or self._iterating:
            self._release()
            if self._error is not None:
                raise self._error
            return
        self._iterating = True
        decode = self._decode_item
        decoder = self._decoder
        watchdog = self._watchdog
        time = self._loop.time
        payloads = self._backlog
        self._backlog = []
        at_eof = False
        try:
            if self._json_chunk is not None:
                self._timings.first_token = self._timings.finished = time()
                self._complete = True
                yield self._json_chunk
                return
            while True:
                for payload in payloads:
                    if payload[:1] == b"[" and payload.strip() == b"[DONE]":
                        self._done = True
                        break
                    if payload.strip():
                        yield decode(payload)
                if self._done or at_eof:
                    break
                if watchdog is not None and payloads:
                    watchdog.since = time()
                try:
                    data = await self._chunks.__anext__()
                except StopAsyncIteration:
                    at_eof = True
                    payloads = decoder.flush_data()
                    continue
                payloads = decoder.feed_data(data)
                if watchdog is not None:
                    if payloads:
                        watchdog.since = math.inf
                    else:
                        watchdog.heard = time()  # bytes but no event: the read limit restarts
            if not self._done:
                # Without the chat rules (every choice finished) only [DONE] says "complete".
                raise APIConnectionError("The stream ended early: no [DONE]")
            self._end()
        except _Closed:
            return
        except APIConnectionError as exc:
            if self._closed and exc is not self._error:
                return
            self._error = exc
            raise
        except Exception as exc:
            self._error = exc
            raise
        finally:
            self._iterating = False
            self._release()

    def _end(self) -> None:
        """The stream ended normally: mark it and tell the hooks. Nothing waits for what
        follows ``[DONE]``: `_release` gives the connection back to the pool if the body
        is already at its end, and closes it otherwise (a server that holds it open, or
        sends comments after ``[DONE]``, cannot keep the caller waiting)."""
        self._timings.finished = self._loop.time()
        self._complete = True
        if self._on_complete is not None:
            self._on_complete()
        if self._hooks and not isinstance(self._attempt, int):
            for hook in self._hooks:
                hook.on_complete(self._attempt, self.usage)

    async def close(self) -> None:
        """Release the connection; idempotent, and safe to call from another task."""
        self._release()

    def _release(self, error: APIConnectionError | None = None, dropped: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        response = self._response
        if self._done or response.at_eof():
            response.release()
        else:
            # A reader in another task wakes with _Closed and ends quietly, or with the
            # error given.
            if error is not None:
                self._error = error
            response.abort(_Closed() if error is None else error)
        if self._on_close is not None:
            self._on_close()
        if self._observer is not None and not dropped:  # a dropped one is heard as such
            self._observer.closed(self)

    aclose = close

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._closed:
            self._release()
        iterator = self._iterator
        if iterator is not None:
            await iterator.aclose()  # type: ignore[attr-defined]

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._closed:
            return
        # Nothing else will give back the connection and the max_concurrency slot: do it
        # here (plain callbacks, no task), unless the loop is gone; then warn, as unclosed
        # files do (source=self: PYTHONTRACEMALLOC shows where the stream was made).
        loop = self._loop
        try:
            if _running_loop() is loop:
                self._release(None, True)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self._release, None, True)
        except RuntimeError:  # the loop closed meanwhile: nothing can be released cleanly
            pass
        _warn(
            "AsyncStream was garbage-collected while open; use `async with stream:` "
            "or `await stream.close()`",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def abort_stream(stream: AsyncStream[Any], error: APIConnectionError) -> None:
    """Close ``stream`` so that its reader, now or later, raises ``error`` (unless it
    had already ended): for the client closing under its streams."""
    stream._release(error)


def raise_if_incomplete(stream: AsyncStream[Any]) -> None:
    """Raise unless ``stream`` ended normally: with the error it ended with, or one saying
    it was closed first. For helpers that build a final result from a stream they read."""
    if stream._complete:
        return
    if stream._error is not None:
        raise stream._error
    raise APIConnectionError(
        "The stream was closed before its end, so there is no final result"
        if stream._closed
        else "The stream has not been read to its end"
    )
