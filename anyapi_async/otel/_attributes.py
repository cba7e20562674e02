"""Requests and responses as span and metric attributes: pure mapping, no OpenTelemetry.

Per-endpoint and per-model attribute sets are built once and cached (`Endpoint`, `Model`,
`Outcome`); the per-call functions copy or fill plain dicts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import msgspec

from .._exceptions import APIStatusError
from ._semconv import (
    ENV_CAPTURE_CONTENT,
    ERROR_TYPE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_TYPE,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_CHOICE_COUNT,
    GEN_AI_REQUEST_FREQUENCY_PENALTY,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_PRESENCE_PENALTY,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_STOP_SEQUENCES,
    GEN_AI_REQUEST_STREAM,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_K,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_TOKEN_MODALITY,
    GEN_AI_TOKEN_TYPE,
    GEN_AI_USAGE_AUDIO_INPUT_TOKENS,
    GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    KNOWN_PROVIDERS,
    OPENAI_API_TYPE,
    OPENAI_REQUEST_SERVICE_TIER,
    OPENAI_RESPONSE_SERVICE_TIER,
    OPENAI_RESPONSE_SYSTEM_FINGERPRINT,
    OPERATION_CHAT,
    PROVIDER_ANYAPI,
    SERVER_ADDRESS,
    SERVER_PORT,
    CaptureContent,
)

if TYPE_CHECKING:
    from .._types import ChatCompletion, ChatCompletionChunk, CompletionUsage

__all__ = [
    "CACHE_SIZE",
    "Endpoint",
    "Model",
    "Outcome",
    "RequestFields",
    "capture_modes",
    "error_type",
    "provider_for",
    "request_attributes",
    "response_attributes",
    "usage_attributes",
]

_NUMBERS: Final = (int, float)
#: Bound on each per-telemetry cache (endpoints, models, outcomes): the keys come from
#: the caller (URLs, model names), so past the bound entries are built per call, uncached.
CACHE_SIZE: Final = 256


class RequestFields(msgspec.Struct):
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




def capture_modes(capture: CaptureContent) -> tuple[bool, bool]:
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


def error_type(error: BaseException) -> str:
    """``error.type``: the HTTP status for status errors, else the exception's class name."""
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    return type(error).__qualname__


class Endpoint:
    """Per-endpoint constants: what every call to it starts with, and its per-model entries."""

    __slots__ = ("base", "latest", "models", "openai")

    def __init__(self, url: str, provider: str | None, latest: bool = False) -> None:
        #: The latest conventions (``OTEL_SEMCONV_STABILITY_OPT_IN``), not the default ones.
        self.latest = latest
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
        self.models: dict[str | None, Model] = {}

    def model(self, model: object) -> Model:
        """The entry for requests naming ``model`` (anything but a string counts as none)."""
        key = model if isinstance(model, str) else None
        entry = self.models.get(key)
        if entry is None:
            entry = Model(self, key)
            if len(self.models) < CACHE_SIZE:
                self.models[key] = entry
        return entry


class Model:
    """One (endpoint, request model): the span's name and first attributes, and the metric
    attribute sets of its outcomes, built once (they are few: low-cardinality by design)."""

    __slots__ = ("endpoint", "metric", "name", "outcomes", "start")

    def __init__(self, endpoint: Endpoint, model: str | None) -> None:
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
        self.outcomes: dict[tuple[object, str | None], Outcome] = {}

    def outcome(self, response_model: object, error: str | None) -> Outcome:
        key = (response_model, error)
        outcome = self.outcomes.get(key)
        if outcome is None:
            outcome = Outcome(self.metric, response_model, error)
            if len(self.outcomes) < CACHE_SIZE:
                self.outcomes[key] = outcome
        return outcome


class Outcome:
    """The metric attribute sets of one (request model, response model, error type).

    Shared between calls: the SDK copies the attributes of each measurement, and no one
    here changes them once built.
    """

    __slots__ = ("duration", "input", "metric", "modalities", "output")

    def __init__(self, metric: dict[str, Any], response_model: object, error: str | None) -> None:
        if response_model:
            metric = {**metric, GEN_AI_RESPONSE_MODEL: response_model}
        self.metric = metric
        self.duration = metric if error is None else {**metric, ERROR_TYPE: error}
        self.input = {**metric, GEN_AI_TOKEN_TYPE: "input"}
        self.output = {**metric, GEN_AI_TOKEN_TYPE: "output"}
        self.modalities: dict[str, dict[str, Any]] = {}

    def tokens(self, modality: str) -> dict[str, Any]:
        """The latest conventions' token counters' attributes: by ``gen_ai.token.modality``."""
        attrs = self.modalities.get(modality)
        if attrs is None:  # a few fixed values (audio, unknown): no bound needed
            attrs = self.modalities[modality] = {**self.metric, GEN_AI_TOKEN_MODALITY: modality}
        return attrs


def request_attributes(fields: RequestFields, model: Model) -> dict[str, Any]:
    """The span's attributes at its start: the model's, plus what the request sets."""
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
        if not model.endpoint.latest:
            attrs[GEN_AI_REQUEST_TOP_K] = value
        elif type(value) is int or value.is_integer():  # an int in the latest conventions
            attrs[GEN_AI_REQUEST_TOP_K] = int(value)
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


def usage_attributes(usage: CompletionUsage, attrs: dict[str, Any]) -> None:
    """Add the ``gen_ai.usage.*`` attributes of ``usage`` to ``attrs``."""
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


def response_attributes(
    response: ChatCompletion | ChatCompletionChunk, attrs: dict[str, Any], openai: bool
) -> None:
    """Add the response's id and model (and the OpenAI extras) to ``attrs``."""
    if response.id:
        attrs[GEN_AI_RESPONSE_ID] = response.id
    if response.model:
        attrs[GEN_AI_RESPONSE_MODEL] = response.model
    if openai:
        if response.system_fingerprint:
            attrs[OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = response.system_fingerprint
        if response.service_tier:
            attrs[OPENAI_RESPONSE_SERVICE_TIER] = response.service_tier
