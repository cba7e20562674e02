"""Spans and metrics of one instrumented client: its instruments, and one object per call.

`Telemetry` holds the tracer, the instruments and the per-endpoint caches; `Call` is one
logical call's span (all its attempts and waits) and what its metrics need; `BatchItem`
adds up what the calls of one batch request did. How they hook into the client is
`_instrument`'s business.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LogRecord, get_logger
from opentelemetry.metrics import get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._exceptions import APIError, APIStatusError, RateLimitError, error_line
from .._types import ChatCompletion, CompletionUsage
from .._version import __version__
from . import _content as content
from ._attributes import (
    CACHE_SIZE,
    Endpoint,
    Model,
    Outcome,
    capture_modes,
    error_type,
    response_attributes,
    usage_attributes,
)
from ._semconv import (
    ANYAPI_ATTEMPTS,
    ANYAPI_BATCH_IN_FLIGHT,
    ANYAPI_BATCH_RATE_LIMIT_WAIT,
    ANYAPI_BATCH_RATE_LIMITED,
    ANYAPI_BATCH_REQUESTS,
    ANYAPI_REQUEST_ID,
    ANYAPI_RETRY_EVENT,
    ANYAPI_RETRY_WAIT,
    DURATION_BUCKETS,
    ENV_SEMCONV_OPT_IN,
    ERROR_TYPE,
    EVENT_DETAILS,
    GEN_AI_CLIENT_INFERENCE_DURATION,
    GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK,
    GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK,
    GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS,
    GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS,
    GEN_AI_CLIENT_OPERATION_DURATION,
    GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
    GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    GEN_AI_CLIENT_TOKEN_USAGE,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOOL_DEFINITIONS,
    INSTRUMENTATION_NAME,
    MODALITY_AUDIO,
    MODALITY_UNKNOWN,
    TOKEN_BUCKETS,
    CaptureContent,
    latest_experimental,
)

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry._logs import LoggerProvider
    from opentelemetry.context import Context
    from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .._client import AsyncClient
    from .._meta import ResponseInfo

__all__ = ["BatchItem", "Call", "LatestTokens", "Telemetry"]

T = TypeVar("T")


#: The route of a `Router` that answered a call (a span attribute), and the event of an
#: attempt on another route that failed (with that route and ``error.type``).
ANYAPI_ROUTE: Final = "anyapi.route"
ANYAPI_ROUTE_FAILED_EVENT: Final = "anyapi.route.failed"


class Telemetry:
    """The instruments of one instrumented client, and its per-endpoint caches."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        logger_provider: LoggerProvider | None,
        capture_content: CaptureContent,
        provider_name: str | None,
        include_usage: bool,
        per_chunk_metrics: bool,
    ) -> None:
        version = __version__
        self.tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, version, tracer_provider=tracer_provider
        )
        meter = get_meter(INSTRUMENTATION_NAME, version, meter_provider=meter_provider)
        #: ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``: the latest names
        #: instead of the ones emitted by default (read once, as instrumentations do).
        self.latest = latest_experimental(os.environ.get(ENV_SEMCONV_OPT_IN))
        self.duration = meter.create_histogram(
            GEN_AI_CLIENT_INFERENCE_DURATION if self.latest else GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage: Histogram | None = None
        self.tokens: LatestTokens | None = None
        if self.latest:
            self.tokens = LatestTokens(meter)
        else:
            self.token_usage = meter.create_histogram(
                GEN_AI_CLIENT_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
        self.time_to_first_chunk = meter.create_histogram(
            GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK
            if self.latest
            else GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_per_output_chunk = meter.create_histogram(
            GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK
            if self.latest
            else GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time per output chunk after the first one of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.batch_requests = meter.create_counter(
            ANYAPI_BATCH_REQUESTS,
            unit="{request}",
            description="Batch and job requests finished, by outcome (ok or error).",
        )
        self.batch_in_flight = meter.create_up_down_counter(
            ANYAPI_BATCH_IN_FLIGHT, unit="{request}", description="Batch requests in flight."
        )
        self.batch_rate_limited = meter.create_counter(
            ANYAPI_BATCH_RATE_LIMITED,
            unit="{response}",
            description="429 answers met by batch requests (each retried after a pause).",
        )
        self.batch_rate_limit_wait = meter.create_histogram(
            ANYAPI_BATCH_RATE_LIMIT_WAIT,
            unit="s",
            description="Time a batch request waited for the rate limiter.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.capture_span, self.capture_event = capture_modes(capture_content)
        self.event_logger = (
            get_logger(INSTRUMENTATION_NAME, version, logger_provider=logger_provider)
            if self.capture_event
            else None
        )
        self.provider_name = provider_name
        # The Observer switch: the chat body builder asks streams for a final usage chunk.
        self.stream_usage = include_usage
        self.per_chunk_metrics = per_chunk_metrics
        #: origin -> endpoint: computed once, not per call.
        self.endpoints: dict[str, Endpoint] = {}
        self.batch_endpoint = self.endpoint(client.base_url)

    def endpoint(self, url: str) -> Endpoint:
        origin = url[: url.find("/", url.find("//") + 2)] if "//" in url else url
        endpoint = self.endpoints.get(origin)
        if endpoint is None:
            endpoint = Endpoint(url, self.provider_name, self.latest)
            if len(self.endpoints) < CACHE_SIZE:
                self.endpoints[origin] = endpoint
        return endpoint


class LatestTokens:
    """The latest conventions' token instruments, in place of ``gen_ai.client.token.usage``.

    Counters of tokens spent (by ``gen_ai.token.modality``) and per-operation histograms;
    recorded for every operation, failed ones and streams without usage too (with ``0``
    under the ``unknown`` modality), as the conventions ask.
    """

    __slots__ = (
        "cache_read",
        "input",
        "operation_input",
        "operation_output",
        "output",
        "reasoning",
    )

    def __init__(self, meter: Meter) -> None:
        self.input = meter.create_counter(
            GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS,
            unit="{token}",
            description="The number of input (prompt) tokens used, including cached tokens.",
        )
        self.output = meter.create_counter(
            GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS,
            unit="{token}",
            description="The number of output (completion) tokens used, including reasoning.",
        )
        self.cache_read = meter.create_counter(
            GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS,
            unit="{token}",
            description="The number of input tokens served from a provider-managed cache.",
        )
        self.reasoning = meter.create_counter(
            GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS,
            unit="{token}",
            description="The number of output tokens used for reasoning.",
        )
        self.operation_input = meter.create_histogram(
            GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS,
            unit="{token}",
            description="The number of input (prompt) tokens used per inference operation.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_output = meter.create_histogram(
            GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS,
            unit="{token}",
            description="The number of output (completion) tokens used per inference operation.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    def record(self, usage: CompletionUsage | None, outcome: Outcome) -> None:
        unknown = outcome.tokens(MODALITY_UNKNOWN)
        if usage is None:
            self.input.add(0, unknown)
            self.output.add(0, unknown)
            self.operation_input.record(0, outcome.duration)
            self.operation_output.record(0, outcome.duration)
            return
        prompt = usage.prompt_tokens_details
        completion = usage.completion_tokens_details
        audio_in = None if prompt is None else prompt.audio_tokens
        audio_out = None if completion is None else completion.audio_tokens
        _by_modality(self.input, usage.prompt_tokens, audio_in, outcome)
        _by_modality(self.output, usage.completion_tokens, audio_out, outcome)
        if prompt is not None and prompt.cached_tokens is not None:
            self.cache_read.add(prompt.cached_tokens, unknown)
        if completion is not None and completion.reasoning_tokens is not None:
            self.reasoning.add(completion.reasoning_tokens, unknown)
        self.operation_input.record(usage.prompt_tokens, outcome.duration)
        self.operation_output.record(usage.completion_tokens, outcome.duration)


def _by_modality(counter: Counter, total: int, audio: int | None, outcome: Outcome) -> None:
    # Chat Completions reports audio tokens apart; the rest may be text or images: unknown.
    if audio:
        counter.add(audio, outcome.tokens(MODALITY_AUDIO))
    rest = total - (audio or 0)
    if rest > 0 or not audio:
        counter.add(max(rest, 0), outcome.tokens(MODALITY_UNKNOWN))


class BatchItem:
    """What the calls of one batch request add to its span."""

    __slots__ = ("clock", "rate_limited", "sent")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.sent = 0.0
        self.rate_limited = 0

    async def join(self, send: Awaitable[T]) -> T:
        started = self.clock()
        try:
            return await send
        except RateLimitError:
            self.rate_limited += 1
            raise
        finally:
            self.sent += self.clock() - started


class Call:
    """One logical call: its span, and what its metrics need."""

    __slots__ = (
        "attrs",
        "captured_input",
        "clock",
        "detailed",
        "ended",
        "model",
        "recording",
        "retry_wait",
        "span",
        "started",
        "t",
        "wall_ns",
    )

    def __init__(self, t: Telemetry, model: Model, attrs: dict[str, Any]) -> None:
        self.t = t
        self.model = model
        self.attrs = attrs
        # Loop time, as the stream timings use; wall time only for the span's timestamps.
        self.clock = asyncio.get_running_loop().time
        self.wall_ns = time.time_ns()
        self.started = self.clock()
        span: Span = t.tracer.start_span(
            model.name, kind=SpanKind.CLIENT, attributes=attrs, start_time=self.wall_ns
        )
        self.span = span
        self.recording = span.is_recording()
        # The span's closing attributes (and the event's) are built only if someone reads
        # them: not for a no-op tracer or a span the sampler dropped, unless events are on.
        self.detailed = self.recording or t.event_logger is not None
        self.retry_wait = 0.0
        self.ended = False
        self.captured_input: dict[str, Any] | None = None

    def enter(self) -> Token[Context] | None:
        """Make the span the current one (for spans started inside the call); the token."""
        span = self.span
        if (
            not self.recording
            and span.get_span_context() is trace.get_current_span().get_span_context()
        ):
            # A no-op tracer hands back the current span's own context: entering it would
            # change nothing that nested spans or propagators see.
            return None
        return otel_context.attach(trace.set_span_in_context(span))

    # --- content (only when capture is on) -------------------------------------------------

    def capture_params(self, params: Mapping[str, Any]) -> None:
        captured: dict[str, Any] = {
            GEN_AI_INPUT_MESSAGES: content.input_messages(params.get("messages"))
        }
        instructions = content.system_instructions(params)
        if instructions and self.t.latest:  # text parts only, in the latest conventions
            instructions = [part for part in instructions if part.get("type") == "text"]
        if instructions:
            captured[GEN_AI_SYSTEM_INSTRUCTIONS] = instructions
        tools = content.tool_definitions(params.get("tools"))
        if tools:
            captured[GEN_AI_TOOL_DEFINITIONS] = tools
        self.captured_input = captured
        if self.t.capture_span:
            self.span.set_attributes({k: content.to_json(v) for k, v in captured.items()})

    # --- endings ---------------------------------------------------------------------------

    def route_failed(self, route: str, error: APIError) -> None:
        """An attempt on a router's route failed (the router moved on, or gave up)."""
        if self.recording:
            self.span.add_event(
                ANYAPI_ROUTE_FAILED_EVENT, {ANYAPI_ROUTE: route, ERROR_TYPE: error_type(error)}
            )

    def answered_by(self, route: str) -> None:
        """The router's route that answered the call."""
        if self.recording:
            self.span.set_attribute(ANYAPI_ROUTE, route)

    def retry(self, attempt: int, delay: float, error: APIError) -> None:
        self.retry_wait += delay
        if self.recording:
            self.span.add_event(
                ANYAPI_RETRY_EVENT,
                {
                    "anyapi.attempt": attempt,
                    "anyapi.retry.delay": delay,
                    ERROR_TYPE: error_type(error),
                },
            )

    def succeed(
        self,
        result: object,
        *,
        attempts: int | None = None,
        extra: dict[str, Any] | None = None,
        info: ResponseInfo | None = None,
    ) -> None:
        """End the span of a call that succeeded; ``info`` is the response's metadata when
        ``result`` does not carry it (a dict, bytes, a raw response's parse)."""
        completion = result if isinstance(result, ChatCompletion) else None
        if not self.detailed:
            if completion is None:
                self.end(None, None, None, self.clock(), None, None)
            else:
                self.end(None, completion.usage, None, self.clock(), None, completion.model)
            return
        attrs: dict[str, Any] = extra or {}
        usage = None
        output = None
        response_model = None
        if completion is not None:
            response_model = completion.model
            response_attributes(completion, attrs, self.model.endpoint.openai)
            reasons = [c.finish_reason for c in completion.choices if c.finish_reason]
            if reasons:
                attrs[GEN_AI_RESPONSE_FINISH_REASONS] = reasons
            usage = completion.usage
            if usage is not None:
                usage_attributes(usage, attrs)
            info = completion.http or info
            if self.captured_input is not None:
                output = content.output_messages(completion, finish_reason=not self.t.latest)
        if info is not None:
            if attempts is None:
                attempts = info.attempts
            request_id = info.request_id
            if request_id:
                attrs[ANYAPI_REQUEST_ID] = request_id
        if attempts is not None:
            attrs[ANYAPI_ATTEMPTS] = attempts
        self.end(attrs, usage, None, self.clock(), output, response_model)

    def fail(
        self,
        error: BaseException,
        *,
        attempts: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        attrs: dict[str, Any] | None = None
        if self.detailed:
            attrs = extra or {}
            if attempts is None and isinstance(error, APIError):
                attempts = error.attempts
            if attempts:
                attrs[ANYAPI_ATTEMPTS] = attempts
            if isinstance(error, APIStatusError) and error.request_id:
                attrs[ANYAPI_REQUEST_ID] = error.request_id
        self.end(attrs, None, error, self.clock(), None, None)

    def end(
        self,
        attrs: dict[str, Any] | None,
        usage: CompletionUsage | None,
        error: BaseException | None,
        at: float,
        output: list[dict[str, Any]] | None,
        response_model: str | None,
        *,
        first_chunk: float | None = None,
        per_chunk: float | None = None,
    ) -> None:
        """End the span and record the metrics; ``attrs`` is ``None`` unless `detailed`."""
        if self.ended:
            return
        self.ended = True
        t = self.t
        kind = None if error is None else error_type(error)
        # Cached attribute sets: the metrics' attributes are few and fixed per outcome.
        outcome = self.model.outcome(response_model or None, kind)
        if first_chunk is not None:
            t.time_to_first_chunk.record(first_chunk, outcome.metric)
        if per_chunk is not None:
            t.time_per_output_chunk.record(per_chunk, outcome.metric)
        duration = max(0.0, at - self.started)
        t.duration.record(duration, outcome.duration)
        token_usage = t.token_usage
        if token_usage is not None:
            if usage is not None:
                token_usage.record(usage.prompt_tokens, outcome.input)
                token_usage.record(usage.completion_tokens, outcome.output)
        elif t.tokens is not None:
            t.tokens.record(usage, outcome)
        end_ns = self.wall_ns + int(duration * 1e9)
        span = self.span
        if attrs is not None:
            if self.retry_wait:
                attrs[ANYAPI_RETRY_WAIT] = self.retry_wait
            if first_chunk is not None:
                attrs[GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk
            if output is not None and t.capture_span:
                attrs[GEN_AI_OUTPUT_MESSAGES] = content.to_json(output)
            if error is not None:
                attrs[ERROR_TYPE] = kind
                # One bounded line, as the job runner writes it (an HTML page: status, title).
                status = f"{type(error).__name__}: {error_line(error)}"
                span.set_status(Status(StatusCode.ERROR, status))
            span.set_attributes(attrs)
            if t.event_logger is not None:
                self._emit(attrs, output, end_ns)
        span.end(end_time=end_ns)

    def _emit(self, attrs: dict[str, Any], output: list[dict[str, Any]] | None, at: int) -> None:
        assert self.t.event_logger is not None
        event: dict[str, Any] = {**self.attrs, **attrs}
        for key in (GEN_AI_INPUT_MESSAGES, GEN_AI_SYSTEM_INSTRUCTIONS, GEN_AI_TOOL_DEFINITIONS):
            event.pop(key, None)
        event.pop(GEN_AI_OUTPUT_MESSAGES, None)
        if self.captured_input is not None:
            event.update(self.captured_input)  # structured on events, as the conventions ask
        if output is not None:
            event[GEN_AI_OUTPUT_MESSAGES] = output
        self.t.event_logger.emit(
            LogRecord(
                timestamp=at,
                context=trace.set_span_in_context(self.span),
                event_name=EVENT_DETAILS,
                attributes=event,
            )
        )
