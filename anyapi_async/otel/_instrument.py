"""How the instrumentation hooks into a client: the one module to re-point.

`Instrumentation` is the client's call observer (`observe_calls`): it wraps every call in a
`Call`, and is also a `Hooks` (retries become span events) and the batch runner's
``batch_item`` wrapper. Streams are watched through `_streaming.observe`.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec
from opentelemetry import context as otel_context

from .._client import AsyncClient, call_observer, observe_calls
from .._hooks import AttemptInfo, Hooks
from .._streaming import AsyncStream, observe, yields_chunks
from ._attributes import RequestFields, error_type, fields_decoder, request_attributes
from ._semconv import (
    ANYAPI_BATCH_CUSTOM_ID,
    ANYAPI_BATCH_INDEX,
    ANYAPI_BATCH_OUTCOME,
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
    from .._retry import Retrier, RetryPolicy
    from .._transport import Request, Response

__all__ = ["Instrumentation", "instrument", "is_instrumented", "uninstrument"]

T = TypeVar("T")
ClientT = TypeVar("ClientT", bound=AsyncClient)

_USAGE_OPTION: Final = b',"stream_options":{"include_usage":true}}'

#: The call whose attempts are running on this task (for the retry hook).
_CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "anyapi_otel_call", default=None
)
#: The batch request around the calls on this task, which join its span.
_BATCH_ITEM: contextvars.ContextVar[BatchItem | None] = contextvars.ContextVar(
    "anyapi_otel_batch_item", default=None
)


class Instrumentation(Telemetry, Hooks):
    """The telemetry of one instrumented client, hooked into it (see `instrument`)."""

    # --- the call observer (see `Retrier.send`) -------------------------------------------

    async def call(
        self,
        retrier: Retrier,
        request: Request,
        handle: Callable[[Response, AttemptInfo | int], Awaitable[T]],
        policy: RetryPolicy,
        raise_for_status: Callable[[Response], Awaitable[None]],
    ) -> T:
        endpoint = self.routes.get(request.url) or self.route(request.url)
        if endpoint is None or request.method != "POST":
            return await retrier.send(request, handle, policy, raise_for_status, observed=True)
        item = _BATCH_ITEM.get()
        if item is not None:
            send = retrier.send(request, handle, policy, raise_for_status, observed=True)
            return await item.join(send)
        body = request.body or b""
        try:
            # Only the few fields spans need are kept; the rest (messages...) is skipped.
            fields = fields_decoder.decode(body)
        except msgspec.DecodeError:
            fields = RequestFields()
        if request.stream and self.include_usage and b'"stream_options"' not in body:
            stripped = body.rstrip()
            if stripped.startswith(b"{") and stripped.endswith(b"}") and len(stripped) > 2:
                # Usage arrives in a last chunk only when asked for; a caller's own
                # stream_options (anywhere in the body) is left alone.
                request.body = stripped[:-1] + _USAGE_OPTION
        model = endpoint.model(fields.model)
        call = Call(self, model, request_attributes(fields, model))
        if self.capture_span or self.capture_event:
            call.capture_request(body)
        call_token = _CURRENT.set(call)
        context_token = call.enter()
        try:
            result = await retrier.send(request, handle, policy, raise_for_status, observed=True)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            if context_token is not None:
                otel_context.detach(context_token)
            _CURRENT.reset(call_token)
        if isinstance(result, AsyncStream) and yields_chunks(result):
            watch(call, result)
        else:  # a completion, another cast_to (a stream of other items: at its start)
            call.succeed(result)
        return result

    # --- hooks: each retry is an event of the call's span -------------------------------------

    def on_retry(self, info: AttemptInfo, delay: float, error: APIError) -> None:
        call = _CURRENT.get()
        if call is not None:
            call.retry(info.attempt, delay, error)

    # --- batch and job requests ---------------------------------------------------------------

    async def batch_item(
        self, attempt: Awaitable[BatchResult], index: int, item: Mapping[str, Any]
    ) -> BatchResult:
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
            result = await attempt
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
        if result.error is None and result.completion is not None:
            call.succeed(result.completion, attempts=result.attempts, extra=extra)
            self.batch_requests.add(1, {**metric_attrs, ANYAPI_BATCH_OUTCOME: "ok"})
        else:
            error = result.error or RuntimeError("no result")
            call.fail(error, attempts=result.attempts, extra=extra)
            self.batch_requests.add(
                1, {**metric_attrs, ANYAPI_BATCH_OUTCOME: "error", ERROR_TYPE: error_type(error)}
            )
        return result



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
    copies (they share one connection pool and retry layer) gets one ``CLIENT`` span,
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
        include_usage: change what is sent: add ``"stream_options": {"include_usage":
            true}`` to streamed request bodies that do not mention ``stream_options``, so
            that the server sends a final usage chunk and streamed spans get token usage.
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
    observe_calls(client, telemetry)
    return client


def uninstrument(client: ClientT) -> ClientT:
    """Stop tracing ``client`` (and its copies); spans of streams still open still end."""
    if isinstance(call_observer(client), Instrumentation):
        observe_calls(client, None)
    return client


def is_instrumented(client: AsyncClient) -> bool:
    """Whether `instrument` is in effect for ``client``."""
    return isinstance(call_observer(client), Instrumentation)
