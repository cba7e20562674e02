"""OpenTelemetry spans, metrics and events for chat completions (GenAI semantic conventions).

```python
from anyapi_async import AsyncClient
from anyapi_async.otel import instrument

client = instrument(AsyncClient())      # global providers, or pass tracer_provider=... etc.
```

Follows the OpenTelemetry GenAI semantic conventions (Development status, now kept in the
``semantic-conventions-genai`` repository), latest names only: one ``CLIENT`` span
``chat {gen_ai.request.model}`` per call, covering its retries and their waits; the
``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage`` histograms (and for
streams ``gen_ai.client.operation.time_to_first_chunk`` and
``gen_ai.client.operation.time_per_output_chunk``) with the advised bucket boundaries; and,
when content capture is on, the ``gen_ai.client.inference.operation.details`` event. The
attribute names are constants of this module rather than those of
``opentelemetry-semantic-conventions``, whose GenAI names are deprecated there.

This module needs ``opentelemetry-api`` (``pip install 'anyapi-async[otel]'``); nothing
imports it unless the application does. See docs/observability.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, Union, cast
from urllib.parse import urlsplit

import msgspec

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry._logs import LogRecord, get_logger
    from opentelemetry.metrics import get_meter
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "anyapi_async.otel needs OpenTelemetry: pip install 'anyapi-async[otel]'"
    ) from exc

from . import _otel_content as content
from ._accumulate import ChunkAccumulator
from ._client import AsyncClient
from ._exceptions import APIError, APIStatusError, RateLimitError, error_line
from ._observe import AttemptInfo, CallContext, Observer
from ._streaming import AsyncStream, observe, yields_chunks
from ._types import ChatCompletion, ChatCompletionChunk, CompletionUsage
from ._version import __version__

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry._logs import LoggerProvider
    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ._batch import BatchResult

__all__ = ["instrument", "is_instrumented", "uninstrument"]

T = TypeVar("T")
ClientT = TypeVar("ClientT", bound=AsyncClient)

# --- names (GenAI semantic conventions, latest; our own constants) -----------------------

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_AUDIO_INPUT_TOKENS: Final = "gen_ai.usage.audio.input_tokens"
GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: Final = "gen_ai.usage.audio.output_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
OPENAI_API_TYPE: Final = "openai.api.type"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"

# Our own attributes.
ANYAPI_ATTEMPTS: Final = "anyapi.attempts"
ANYAPI_REQUEST_ID: Final = "anyapi.request_id"
ANYAPI_RETRY_WAIT: Final = "anyapi.retry.wait"
ANYAPI_RATE_LIMIT_WAIT: Final = "anyapi.rate_limit.wait"
ANYAPI_RATE_LIMITED: Final = "anyapi.rate_limited"
ANYAPI_STREAM_END: Final = "anyapi.stream.end"
ANYAPI_STREAM_CHUNKS: Final = "anyapi.stream.chunks"
ANYAPI_BATCH_INDEX: Final = "anyapi.batch.index"
ANYAPI_BATCH_CUSTOM_ID: Final = "anyapi.batch.custom_id"
ANYAPI_BATCH_OUTCOME: Final = "anyapi.batch.outcome"
#: Span event per retry: ``anyapi.attempt`` (the failed one), ``anyapi.retry.delay``,
#: ``error.type``.
ANYAPI_RETRY_EVENT: Final = "anyapi.retry"

OPERATION_CHAT: Final = "chat"
#: ``gen_ai.provider.name`` for AnyAPI and any endpoint not in `KNOWN_PROVIDERS`.
PROVIDER_ANYAPI: Final = "anyapi"
#: Host (or host suffix) -> the conventions' well-known ``gen_ai.provider.name`` value.
KNOWN_PROVIDERS: Final = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("services.ai.azure.com", "azure.ai.inference"),
    ("models.inference.ai.azure.com", "azure.ai.inference"),
    ("api.anthropic.com", "anthropic"),
    ("api.deepseek.com", "deepseek"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.moonshot.ai", "moonshot_ai"),
    ("api.moonshot.cn", "moonshot_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.ai", "cohere"),
    ("api.cohere.com", "cohere"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("ml.cloud.ibm.com", "ibm.watsonx.ai"),
)

# Metrics.
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK: Final = (
    "gen_ai.client.operation.time_per_output_chunk"
)
ANYAPI_BATCH_REQUESTS: Final = "anyapi.batch.requests"
ANYAPI_BATCH_IN_FLIGHT: Final = "anyapi.batch.in_flight"
ANYAPI_BATCH_RATE_LIMITED: Final = "anyapi.batch.rate_limited"
ANYAPI_BATCH_RATE_LIMIT_WAIT: Final = "anyapi.batch.rate_limit.wait"
#: The conventions' advised boundaries for the duration histograms (seconds).
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
#: The conventions' advised boundaries for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

#: The conventional switch for content capture (``true``/``span_only``, ``event_only``,
#: ``span_and_event``, ``false``/``no_content``; any case).
ENV_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EVENT_DETAILS: Final = "gen_ai.client.inference.operation.details"
INSTRUMENTATION_NAME: Final = "anyapi_async"
CHAT_PATH: Final = "/chat/completions"

CaptureContent = Union[bool, Literal["span", "event", "span_and_event"]]

#: The call whose attempts are running on this task (for the retry hook).
_CURRENT: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "anyapi_otel_call", default=None
)
#: The batch request around the calls on this task, which join its span.
_BATCH_ITEM: contextvars.ContextVar[_BatchItem | None] = contextvars.ContextVar(
    "anyapi_otel_batch_item", default=None
)


class _RequestFields(msgspec.Struct):
    """What spans read of a request body (other fields are skipped unread)."""

    model: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    stop: Any = None
    n: Any = None
    seed: Any = None
    frequency_penalty: Any = None
    presence_penalty: Any = None
    response_format: Any = None
    service_tier: Any = None
    stream: Any = None




def _capture_modes(capture: CaptureContent) -> tuple[bool, bool]:
    """``(on spans, as events)`` from the argument, else from the environment."""
    if capture is True or capture == "span":
        return True, False
    if capture == "event":
        return False, True
    if capture == "span_and_event":
        return True, True
    if capture is not False:
        raise ValueError(
            f"capture_content must be a bool, 'span', 'event' or 'span_and_event', not {capture!r}"
        )
    value = os.environ.get(ENV_CAPTURE_CONTENT, "").strip().lower()
    return value in ("true", "1", "span_only", "span_and_event"), value in (
        "event_only",
        "span_and_event",
    )


def provider_for(host: str) -> str:
    """``gen_ai.provider.name`` for an endpoint host: a well-known value, else ``anyapi``."""
    host = host.lower()
    for suffix, name in KNOWN_PROVIDERS:
        if host == suffix or host.endswith(("." + suffix, "-" + suffix)):
            return name
    return PROVIDER_ANYAPI


_NUMBERS: Final = (int, float)
#: Bound on each per-telemetry cache below (endpoints, models, outcomes): the keys come from
#: the caller (URLs, model names), so past the bound entries are built per call, uncached.
_CACHE_SIZE: Final = 256


class _Endpoint:
    """Per-endpoint constants: what every call to it starts with, and its per-model entries."""

    __slots__ = ("base", "models", "openai")

    def __init__(self, url: str, provider: str | None) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        name = provider or provider_for(host)
        base: dict[str, Any] = {GEN_AI_OPERATION_NAME: OPERATION_CHAT, GEN_AI_PROVIDER_NAME: name}
        if host:
            base[SERVER_ADDRESS] = host
            if port is not None:
                base[SERVER_PORT] = port
        self.openai = name == "openai"
        if self.openai:
            base[OPENAI_API_TYPE] = "chat_completions"
        self.base = base
        self.models: dict[str | None, _Model] = {}

    def model(self, model: object) -> _Model:
        """The entry for requests naming ``model`` (anything but a string counts as none)."""
        key = model if isinstance(model, str) else None
        entry = self.models.get(key)
        if entry is None:
            entry = _Model(self, key)
            if len(self.models) < _CACHE_SIZE:
                self.models[key] = entry
        return entry


class _Model:
    """One (endpoint, request model): the span's name and first attributes, and the metric
    attribute sets of its outcomes, built once (they are few: low-cardinality by design)."""

    __slots__ = ("endpoint", "metric", "name", "outcomes", "start")

    def __init__(self, endpoint: _Endpoint, model: str | None) -> None:
        self.endpoint = endpoint
        start = dict(endpoint.base)
        self.name = OPERATION_CHAT
        if model:
            start[GEN_AI_REQUEST_MODEL] = model
            self.name = f"{OPERATION_CHAT} {model}"
        self.start = start
        self.metric: dict[str, Any] = {
            k: start[k]
            for k in (
                GEN_AI_OPERATION_NAME,
                GEN_AI_PROVIDER_NAME,
                GEN_AI_REQUEST_MODEL,
                SERVER_ADDRESS,
                SERVER_PORT,
            )
            if k in start
        }
        self.outcomes: dict[tuple[object, str | None], _Outcome] = {}

    def outcome(self, response_model: object, error: str | None) -> _Outcome:
        key = (response_model, error)
        outcome = self.outcomes.get(key)
        if outcome is None:
            outcome = _Outcome(self.metric, response_model, error)
            if len(self.outcomes) < _CACHE_SIZE:
                self.outcomes[key] = outcome
        return outcome


class _Outcome:
    """The metric attribute sets of one (request model, response model, error type).

    Shared between calls: the SDK copies the attributes of each measurement, and no one
    here changes them once built.
    """

    __slots__ = ("duration", "input", "metric", "output")

    def __init__(self, metric: dict[str, Any], response_model: object, error: str | None) -> None:
        if response_model:
            metric = {**metric, GEN_AI_RESPONSE_MODEL: response_model}
        self.metric = metric
        self.duration = metric if error is None else {**metric, ERROR_TYPE: error}
        self.input = {**metric, GEN_AI_TOKEN_TYPE: "input"}
        self.output = {**metric, GEN_AI_TOKEN_TYPE: "output"}


def _request_attributes(fields: _RequestFields, model: _Model) -> dict[str, Any]:
    attrs = model.start.copy()
    # Most requests set none or few of these: one test each, no tuples built per call.
    value = fields.max_tokens
    if value is None:
        value = fields.max_completion_tokens
    if value is not None and type(value) in _NUMBERS:  # bool is not a number here
        attrs[GEN_AI_REQUEST_MAX_TOKENS] = value
    value = fields.temperature
    if value is not None and type(value) in _NUMBERS:
        attrs[GEN_AI_REQUEST_TEMPERATURE] = value
    value = fields.top_p
    if value is not None and type(value) in _NUMBERS:
        attrs[GEN_AI_REQUEST_TOP_P] = value
    value = fields.top_k
    if value is not None and type(value) in _NUMBERS:
        attrs[GEN_AI_REQUEST_TOP_K] = value
    value = fields.seed
    if value is not None and type(value) in _NUMBERS:
        attrs[GEN_AI_REQUEST_SEED] = value
    value = fields.frequency_penalty
    if value is not None and type(value) in _NUMBERS:
        attrs[GEN_AI_REQUEST_FREQUENCY_PENALTY] = value
    value = fields.presence_penalty
    if value is not None and type(value) in _NUMBERS:
        attrs[GEN_AI_REQUEST_PRESENCE_PENALTY] = value
    n = fields.n
    if n is not None and type(n) is int and n != 1:
        attrs[GEN_AI_REQUEST_CHOICE_COUNT] = n
    stop = fields.stop
    if stop is not None:
        if isinstance(stop, str):
            attrs[GEN_AI_REQUEST_STOP_SEQUENCES] = (stop,)
        elif isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
            attrs[GEN_AI_REQUEST_STOP_SEQUENCES] = tuple(stop)
    if fields.stream is True:
        attrs[GEN_AI_REQUEST_STREAM] = True
    response_format = fields.response_format
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else response_format
        if kind in ("json_object", "json_schema"):
            attrs[GEN_AI_OUTPUT_TYPE] = "json"
        elif kind == "text":
            attrs[GEN_AI_OUTPUT_TYPE] = "text"
    if model.endpoint.openai and isinstance(fields.service_tier, str):
        attrs[OPENAI_REQUEST_SERVICE_TIER] = fields.service_tier
    return attrs


def _usage_attributes(usage: CompletionUsage, attrs: dict[str, Any]) -> None:
    attrs[GEN_AI_USAGE_INPUT_TOKENS] = usage.prompt_tokens
    attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = usage.completion_tokens
    prompt = usage.prompt_tokens_details
    if prompt is not None:
        if prompt.cached_tokens is not None:
            attrs[GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = prompt.cached_tokens
        if prompt.audio_tokens is not None:
            attrs[GEN_AI_USAGE_AUDIO_INPUT_TOKENS] = prompt.audio_tokens
    completion = usage.completion_tokens_details
    if completion is not None:
        if completion.reasoning_tokens is not None:
            attrs[GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = completion.reasoning_tokens
        if completion.audio_tokens is not None:
            attrs[GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS] = completion.audio_tokens


def _response_attributes(
    response: ChatCompletion | ChatCompletionChunk, attrs: dict[str, Any], openai: bool
) -> None:
    if response.id:
        attrs[GEN_AI_RESPONSE_ID] = response.id
    if response.model:
        attrs[GEN_AI_RESPONSE_MODEL] = response.model
    if openai:
        if response.system_fingerprint:
            attrs[OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = response.system_fingerprint
        if response.service_tier:
            attrs[OPENAI_RESPONSE_SERVICE_TIER] = response.service_tier


def error_type(error: BaseException) -> str:
    """``error.type``: the HTTP status for status errors, else the exception's class name."""
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    return type(error).__qualname__


class _Telemetry(Observer):
    """The instruments of one instrumented client; wraps each of its calls (see `instrument`)."""

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
        self.duration = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_per_output_chunk = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
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
        self.capture_span, self.capture_event = _capture_modes(capture_content)
        self.event_logger = (
            get_logger(INSTRUMENTATION_NAME, version, logger_provider=logger_provider)
            if self.capture_event
            else None
        )
        self.provider_name = provider_name
        # Asks the chat body builder for a final usage chunk in streams (see Observer).
        self.stream_usage = include_usage
        self.per_chunk_metrics = per_chunk_metrics
        #: origin -> endpoint: computed once, not per call.
        self._endpoints: dict[str, _Endpoint] = {}
        self.batch_endpoint = self._endpoint(client.base_url)

    def _endpoint(self, url: str) -> _Endpoint:
        origin = url[: url.find("/", url.find("//") + 2)] if "//" in url else url
        endpoint = self._endpoints.get(origin)
        if endpoint is None:
            endpoint = _Endpoint(url, self.provider_name)
            if len(self._endpoints) < _CACHE_SIZE:
                self._endpoints[origin] = endpoint
        return endpoint

    # --- the call observer (see `Retrier.send`) -------------------------------------------

    async def call(self, context: CallContext, send: Callable[[], Awaitable[T]]) -> T:
        if context.operation != OPERATION_CHAT or context.method != "POST":
            return await send()  # other paths get no span
        item = _BATCH_ITEM.get()
        if item is not None:
            return await item.join(send())
        params = context.params or {}
        # Only the few fields spans need are read; the rest (messages...) is left alone.
        fields = _RequestFields(**{k: params.get(k) for k in _RequestFields.__struct_fields__})
        model = self._endpoint(context.base_url).model(fields.model)
        call = _Call(self, model, _request_attributes(fields, model))
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
        if isinstance(result, AsyncStream) and yields_chunks(result):
            call.watch(result)
        else:  # a completion, another cast_to (a stream of other items: at its start)
            call.succeed(result)
        return result

    # --- hooks: each retry is an event of the call's span -------------------------------------

    def on_retry(self, info: AttemptInfo, delay: float, error: APIError) -> None:
        call = _CURRENT.get()
        if call is not None:
            call.retry(info.attempt, delay, error)

    # --- batch and job requests ---------------------------------------------------------------

    async def batch_item(self, run: Awaitable[T], index: int, item: Mapping[str, Any]) -> T:
        """One span around a batch request's whole run: limiter waits and 429 retries too."""
        params: Any = item.get("body") if isinstance(item, Mapping) else None
        if not isinstance(params, Mapping):
            params = item if isinstance(item, Mapping) else {}
        fields = _RequestFields(**{k: params.get(k) for k in _RequestFields.__struct_fields__})
        model = self.batch_endpoint.model(fields.model)
        attrs = _request_attributes(fields, model)
        attrs[ANYAPI_BATCH_INDEX] = index
        custom_id = item.get("custom_id") if isinstance(item, Mapping) else None
        if isinstance(custom_id, str):
            attrs[ANYAPI_BATCH_CUSTOM_ID] = custom_id
        call = _Call(self, model, attrs)
        if self.capture_span or self.capture_event:
            call.capture_params(params)
        state = _BatchItem(call.clock)
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


class _BatchItem:
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


class _Call:
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

    def __init__(self, t: _Telemetry, model: _Model, attrs: dict[str, Any]) -> None:
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
        if instructions:
            captured[GEN_AI_SYSTEM_INSTRUCTIONS] = instructions
        tools = content.tool_definitions(params.get("tools"))
        if tools:
            captured[GEN_AI_TOOL_DEFINITIONS] = tools
        self.captured_input = captured
        if self.t.capture_span:
            self.span.set_attributes({k: content.to_json(v) for k, v in captured.items()})

    # --- endings ---------------------------------------------------------------------------

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
    ) -> None:
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
            _response_attributes(completion, attrs, self.model.endpoint.openai)
            reasons = [c.finish_reason for c in completion.choices if c.finish_reason]
            if reasons:
                attrs[GEN_AI_RESPONSE_FINISH_REASONS] = reasons
            usage = completion.usage
            if usage is not None:
                _usage_attributes(usage, attrs)
            info = completion.http
            if info is not None:
                if attempts is None:
                    attempts = info.attempts
                request_id = info.request_id
                if request_id:
                    attrs[ANYAPI_REQUEST_ID] = request_id
            if self.captured_input is not None:
                output = content.output_messages(completion)
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
        if usage is not None:
            t.token_usage.record(usage.prompt_tokens, outcome.input)
            t.token_usage.record(usage.completion_tokens, outcome.output)
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

    # --- streams ---------------------------------------------------------------------------

    def watch(self, stream: AsyncStream[Any]) -> None:
        """Keep the span open until the stream ends, is closed, cancelled or collected."""
        watcher = _StreamWatcher(self, stream)
        observe(stream, watcher)
        # An abandoned stream still ends its span; the callback holds no stream reference.
        # (Not at interpreter exit: the providers may be shut down by then.)
        weakref.finalize(stream, watcher.abandoned).atexit = False


class _StreamWatcher:
    """Follows one stream's chunks for its span (a `StreamObserver`)."""

    __slots__ = (
        "__weakref__",
        "acc",
        "active",
        "attempts",
        "call",
        "chunks",
        "last",
        "reasons",
        "request_id",
        "timings",
        "usage",
    )

    def __init__(self, call: _Call, stream: AsyncStream[Any]) -> None:
        self.call = call
        info = stream.http
        self.timings = info.timings
        self.attempts = info.attempts
        self.request_id = info.request_id
        self.acc = ChunkAccumulator() if call.captured_input is not None else None
        self.active = False
        self.chunks = 0
        self.last: ChatCompletionChunk | None = None
        self.usage: CompletionUsage | None = None
        self.reasons: dict[int, str] = {}

    def wrap(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        generator: AsyncGenerator[Any, None] = chunks  # type: ignore[assignment]
        if self.call.t.per_chunk_metrics:
            return self._each(generator)
        return self._follow(generator)

    async def _follow(
        self, chunks: AsyncGenerator[ChatCompletionChunk, None]
    ) -> AsyncIterator[Any]:
        reasons = self.reasons
        acc = self.acc
        self.active = True
        try:
            async for chunk in chunks:
                self.active = False
                self.chunks += 1
                self.last = chunk
                for choice in chunk.choices:
                    if choice.finish_reason is not None:
                        reasons[choice.index] = choice.finish_reason
                if chunk.usage is not None:
                    self.usage = chunk.usage
                if acc is not None:
                    acc.add(chunk)
                yield chunk
                self.active = True
        except GeneratorExit:
            self.finish("closed", None)
            raise
        except asyncio.CancelledError as exc:
            self.finish("cancelled", exc)
            raise
        except BaseException as exc:
            self.finish("error", exc)
            raise
        finally:
            self.active = False
            await chunks.aclose()
        self.finish("complete" if self.timings.finished is not None else "closed", None)

    async def _each(self, chunks: AsyncGenerator[ChatCompletionChunk, None]) -> AsyncIterator[Any]:
        # The conventions' exact time_per_output_chunk: one record per chunk after the first.
        record = self.call.t.time_per_output_chunk.record
        clock = self.call.clock
        attrs = self.call.model.metric
        previous: float | None = None
        follow: Any = self._follow(chunks)
        try:
            async for chunk in follow:
                now = clock()
                if previous is not None:
                    record(now - previous, attrs)
                previous = now
                yield chunk
        finally:
            await follow.aclose()

    def closed(self, stream: AsyncStream[Any]) -> None:
        # While a read is pending the iterator sees how it ends, and ends the span itself.
        if not self.active:
            self.finish("complete" if self.timings.finished is not None else "closed", None)

    def abandoned(self) -> None:
        self.finish("abandoned", None)

    def finish(self, how: str, error: BaseException | None) -> None:
        call = self.call
        if call.ended:
            return
        last = self.last
        attrs: dict[str, Any] | None = None
        if call.detailed:
            attrs = {
                ANYAPI_STREAM_END: how,
                ANYAPI_STREAM_CHUNKS: self.chunks,
                ANYAPI_ATTEMPTS: self.attempts,
            }
            if self.request_id:
                attrs[ANYAPI_REQUEST_ID] = self.request_id
            if last is not None:
                _response_attributes(last, attrs, call.model.endpoint.openai)
            if self.reasons:
                attrs[GEN_AI_RESPONSE_FINISH_REASONS] = [
                    self.reasons[i] for i in sorted(self.reasons)
                ]
            if self.usage is not None:
                _usage_attributes(self.usage, attrs)
        timings = self.timings
        first = timings.first_token
        first_chunk = None if first is None else max(0.0, first - call.started)
        per_chunk = None
        finished = timings.finished
        if (
            not call.t.per_chunk_metrics
            and first is not None
            and finished is not None
            and self.chunks > 1
        ):
            # One record per stream: its mean time per chunk after the first (see docs).
            per_chunk = (finished - first) / (self.chunks - 1)
        output = None
        if self.acc is not None:
            output = content.output_messages(self.acc.completion())
        at = finished if finished is not None else call.clock()
        call.end(
            attrs,
            self.usage,
            error,
            at,
            output,
            None if last is None else last.model,
            first_chunk=first_chunk,
            per_chunk=per_chunk,
        )


def instrument(
    client: ClientT,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    capture_content: CaptureContent = False,
    provider_name: str | None = None,
    include_usage: bool = True,
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
        include_usage: ask streams for a final usage chunk
            (``stream_options.include_usage``) unless the request sets ``stream_options``.
        per_chunk_metrics: record ``gen_ai.client.operation.time_per_output_chunk`` for
            every chunk as the conventions define it, instead of once per stream with the
            stream's mean (cheaper; see docs/observability.md).

    Example::

        from opentelemetry.sdk.trace import TracerProvider

        client = instrument(AsyncClient(), tracer_provider=TracerProvider())
    """
    if not isinstance(client, AsyncClient):
        raise TypeError(f"instrument() takes an AsyncClient, not {type(client).__name__}")
    telemetry = _Telemetry(
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
        if isinstance(observer, _Telemetry):
            pipeline.remove_observer(observer)
    pipeline.add_observer(telemetry)
    return client


def uninstrument(client: ClientT) -> ClientT:
    """Stop tracing ``client`` (and its copies); spans of streams still open still end."""
    pipeline = client.pipeline
    for observer in pipeline.observers:
        if isinstance(observer, _Telemetry):
            pipeline.remove_observer(observer)
    return client


def is_instrumented(client: AsyncClient) -> bool:
    """Whether `instrument` is in effect for ``client``."""
    return any(isinstance(observer, _Telemetry) for observer in client.pipeline.observers)
