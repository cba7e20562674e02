"""How the instrumentation hooks into a client: one `Observer` of its request pipeline.

`Instrumentation` wraps every chat call in a `Call` (its ``call`` level), hears retries as
span events (its attempt level) and wraps each batch item (its ``batch_item`` level);
streams are watched through `_streaming.observe`. It reads the call's `CallContext`, never
the request bytes, and asks the body builder for stream usage only when told to
(``include_usage``).
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgspec
from opentelemetry import context as otel_context

from .._client import AsyncClient
from .._observe import AttemptInfo, CallContext, Observer
from .._response import APIResponse
from .._streaming import AsyncStream, observe, yields_chunks
from .._types import ChatCompletion
from ._attributes import RequestFields, error_type, request_attributes
from ._semconv import (
    ANYAPI_BATCH_CUSTOM_ID,
    ANYAPI_BATCH_INDEX,
    ANYAPI_BATCH_OUTCOME,
    ANYAPI_CACHE_HIT,
    ANYAPI_RATE_LIMIT_WAIT,
    ANYAPI_RATE_LIMITED,
    ERROR_TYPE,
    CaptureContent,
)
from ._spans import BatchItem, Call, Telemetry
from ._streams import StreamWatcher

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .._batch import BatchResult
    from .._exceptions import APIError

__all__ = ["Instrumentation", "instrument", "is_instrumented", "uninstrument"]

T = TypeVar("T")
ClientT = TypeVar("ClientT", bound=AsyncClient)

#: The call whose attempts are running on this task (for the retry hook).
_CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "anyapi_otel_call", default=None
)
#: The batch request around the calls on this task, which join its span.
_BATCH_ITEM: contextvars.ContextVar[BatchItem | None] = contextvars.ContextVar(
    "anyapi_otel_batch_item", default=None
)


class Instrumentation(Telemetry, Observer):
    """The telemetry of one instrumented client, hooked into it (see `instrument`)."""

    def __init__(self, client: AsyncClient, **options: Any) -> None:
        super().__init__(client, **options)
        #: with_streaming_response calls whose body is not read yet: their span waits.
        self.pending: weakref.WeakKeyDictionary[CallContext, Call] = weakref.WeakKeyDictionary()

    # --- the call level: one span per chat call ---------------------------------------------

    async def call(self, context: CallContext, send: Callable[[], Awaitable[T]]) -> T:
        if context.operation != "chat" or context.method != "POST":
            return await send()  # other paths get no span
        item = _BATCH_ITEM.get()
        if item is not None:
            joined = await item.join(send())
            if context.cache is not None:
                outer = _CURRENT.get()  # the batch item's span
                if outer is not None:
                    outer.span.set_attribute(ANYAPI_CACHE_HIT, context.cache == "hit")
            return joined
        params = context.params or {}
        # Only the few fields spans need are read; the rest (messages...) is left alone.
        fields = RequestFields(**{k: params.get(k) for k in RequestFields.__struct_fields__})
        model = self.endpoint(context.base_url).model(fields.model or context.model)
        call = Call(self, model, request_attributes(fields, model))
        if self.capture_span or self.capture_event:
            call.capture_params(params)
        call_token = _CURRENT.set(call)
        context_token = call.enter()
        try:
            result = await send()
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            if context_token is not None:
                otel_context.detach(context_token)
            _CURRENT.reset(call_token)
        if context.cache is not None:
            call.span.set_attribute(ANYAPI_CACHE_HIT, context.cache == "hit")
        if context.route is not None:
            call.answered_by(context.route)
        return self._follow(call, context, result)

    def _follow(self, call: Call, context: CallContext, result: T) -> T:
        """End ``call``'s span with what the call returned, however the completion was
        asked for: a stream's span ends with the stream, a raw response's with what it
        parsed, a ``with_streaming_response`` one's when its block ends."""
        answer: Any = result
        if isinstance(answer, APIResponse):
            answer = answer.parse()  # already decoded (or the stream it opened)
        if isinstance(answer, AsyncStream):
            if yields_chunks(answer):
                watch(call, answer)
            else:  # a stream of other items: at its start
                call.succeed(None, info=context.response)
            return result
        if isinstance(answer, tuple) and len(answer) == 2 and callable(answer[1]):
            # with_streaming_response: (response, release); the body is read later.
            self.pending[context] = call
            release = answer[1]

            def finish() -> None:
                release()
                if self.pending.pop(context, None) is None:
                    return  # parse() opened a stream: its watcher ends the span
                if context.error is not None:
                    call.fail(context.error)
                else:
                    call.succeed(as_completion(context.result), info=context.response)

            return cast("T", (answer[0], finish))
        call.succeed(as_completion(answer), info=context.response)
        return result

    # --- streams opened after their call returned (with_streaming_response's parse()) --------

    def stream_opened(self, context: CallContext, stream: Any) -> None:
        call = self.pending.pop(context, None)
        if call is not None:
            watch(call, stream)

    # --- hooks: each retry is an event of the call's span -------------------------------------

    def on_retry(self, info: AttemptInfo, delay: float, error: APIError) -> None:
        call = _CURRENT.get()
        if call is not None:
            call.retry(info.attempt, delay, error)

    def on_error(self, info: AttemptInfo, error: APIError) -> None:
        # Through a Router every attempt is final for its route: an event names the route.
        context = info.call
        if context is not None and context.route is not None:
            call = _CURRENT.get()
            if call is not None:
                call.route_failed(context.route, error)

    # --- batch and job requests ---------------------------------------------------------------

    async def batch_item(self, run: Awaitable[T], index: int, item: Mapping[str, Any]) -> T:
        """One span around a batch request's whole run: limiter waits and 429 retries too."""
        params: Any = item.get("body") if isinstance(item, Mapping) else None
        if not isinstance(params, Mapping):
            params = item if isinstance(item, Mapping) else {}
        fields = RequestFields(**{k: params.get(k) for k in RequestFields.__struct_fields__})
        model = self.batch_endpoint.model(fields.model)
        attrs = request_attributes(fields, model)
        attrs[ANYAPI_BATCH_INDEX] = index
        custom_id = item.get("custom_id") if isinstance(item, Mapping) else None
        if isinstance(custom_id, str):
            attrs[ANYAPI_BATCH_CUSTOM_ID] = custom_id
        call = Call(self, model, attrs)
        if self.capture_span or self.capture_event:
            call.capture_params(params)
        state = BatchItem(call.clock)
        metric_attrs = model.metric
        self.batch_in_flight.add(1, metric_attrs)
        call_token = _CURRENT.set(call)
        item_token = _BATCH_ITEM.set(state)
        # The item's span is the current one while it runs: spans its calls start (an
        # HTTP client's, say) are its children.
        context_token = call.enter()
        try:
            outcome = await run
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            if context_token is not None:
                otel_context.detach(context_token)
            _BATCH_ITEM.reset(item_token)
            _CURRENT.reset(call_token)
            self.batch_in_flight.add(-1, metric_attrs)
        waited = max(0.0, call.clock() - call.started - state.sent)
        extra: dict[str, Any] = {ANYAPI_RATE_LIMIT_WAIT: waited}
        if state.rate_limited:
            extra[ANYAPI_RATE_LIMITED] = state.rate_limited
            self.batch_rate_limited.add(state.rate_limited, metric_attrs)
        self.batch_rate_limit_wait.record(waited, metric_attrs)
        result = cast("BatchResult", outcome)  # what a batch run hands its observers
        if result.error is None and result.completion is not None:
            call.succeed(result.completion, attempts=result.attempts, extra=extra)
            self.batch_requests.add(1, {**metric_attrs, ANYAPI_BATCH_OUTCOME: "ok"})
        else:
            error = result.error or RuntimeError("no result")
            call.fail(error, attempts=result.attempts, extra=extra)
            self.batch_requests.add(
                1, {**metric_attrs, ANYAPI_BATCH_OUTCOME: "error", ERROR_TYPE: error_type(error)}
            )
        return outcome



def as_completion(result: object) -> ChatCompletion | None:
    """The `ChatCompletion` a call returned as another type (``post(cast_to=dict|bytes)``),
    for its span's response attributes; ``None`` if it is not one."""
    if isinstance(result, ChatCompletion) or result is None:
        return result
    try:
        if isinstance(result, dict):
            return msgspec.convert(result, ChatCompletion)
        if isinstance(result, bytes):
            return msgspec.json.decode(result, type=ChatCompletion)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    return None


def watch(call: Call, stream: AsyncStream[Any]) -> None:
    """Keep the call's span open until the stream ends, is closed, cancelled or collected."""
    watcher = StreamWatcher(call, stream)
    observe(stream, watcher)
    # An abandoned stream still ends its span; the callback holds no stream reference.
    # (Not at interpreter exit: the providers may be shut down by then.)
    weakref.finalize(stream, watcher.abandoned).atexit = False


def instrument(
    client: ClientT,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    capture_content: CaptureContent = False,
    provider_name: str | None = None,
    include_usage: bool = False,
    per_chunk_metrics: bool = False,
) -> ClientT:
    """Trace ``client``'s chat completions and record their metrics; returns ``client``.

    Every chat-completions call made through ``client`` or any of its `with_options`
    copies (they share one request pipeline and its observers) gets one ``CLIENT`` span,
    covering all its attempts and waits; a stream's span ends when the stream ends, is
    closed, is cancelled or is garbage-collected. Batch and job requests get one span each,
    around their rate-limit waits and 429 retries too. Calling it again replaces the
    previous instrumentation.

    Args:
        tracer_provider, meter_provider, logger_provider: default: the global ones.
        capture_content: record messages, tool definitions and replies: ``True`` or
            ``"span"`` as span attributes (JSON text), ``"event"`` as the
            ``gen_ai.client.inference.operation.details`` event, ``"span_and_event"``
            both. ``False`` leaves it to ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
        provider_name: ``gen_ai.provider.name``; default: the conventions' value for a
            well-known host, else ``"anyapi"``.
        include_usage: change what is sent: the chat body builder adds
            ``"stream_options": {"include_usage": true}`` to streamed ``create()``/
            ``stream()`` requests that do not pass ``stream_options``, so that the server
            sends a final usage chunk and streamed spans get token usage (bodies given to
            ``post()`` are sent as they are).
            Off by default: instrumenting never changes the bytes sent (a server refusing
            unknown fields would answer every stream with a 400).
        per_chunk_metrics: record ``gen_ai.client.operation.time_per_output_chunk`` for
            every chunk as the conventions define it, instead of once per stream with the
            stream's mean (cheaper; see docs/observability.md).

    Example::

        from opentelemetry.sdk.trace import TracerProvider

        client = instrument(AsyncClient(), tracer_provider=TracerProvider())
    """
    if not isinstance(client, AsyncClient):
        raise TypeError(f"instrument() takes an AsyncClient, not {type(client).__name__}")
    telemetry = Instrumentation(
        client,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        capture_content=capture_content,
        provider_name=provider_name,
        include_usage=include_usage,
        per_chunk_metrics=per_chunk_metrics,
    )
    pipeline = client.pipeline
    for observer in pipeline.observers:
        if isinstance(observer, Instrumentation):
            pipeline.remove_observer(observer)
    pipeline.add_observer(telemetry)
    return client


def uninstrument(client: ClientT) -> ClientT:
    """Stop tracing ``client`` (and its copies); spans of streams still open still end."""
    pipeline = client.pipeline
    for observer in pipeline.observers:
        if isinstance(observer, Instrumentation):
            pipeline.remove_observer(observer)
    return client


def is_instrumented(client: AsyncClient) -> bool:
    """Whether `instrument` is in effect for ``client``."""
    return any(isinstance(observer, Instrumentation) for observer in client.pipeline.observers)
