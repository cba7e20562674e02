"""The names this instrumentation emits: GenAI semantic conventions, and our own.

Our own constants rather than those of ``opentelemetry-semantic-conventions``, whose GenAI
names are deprecated there since the conventions moved to their own repository. Pure: no
OpenTelemetry import.
"""

from __future__ import annotations

from typing import Final, Literal, Union

__all__ = [
    "ANYAPI_ATTEMPTS",
    "ANYAPI_BATCH_CUSTOM_ID",
    "ANYAPI_BATCH_INDEX",
    "ANYAPI_BATCH_IN_FLIGHT",
    "ANYAPI_BATCH_OUTCOME",
    "ANYAPI_BATCH_RATE_LIMITED",
    "ANYAPI_BATCH_RATE_LIMIT_WAIT",
    "ANYAPI_BATCH_REQUESTS",
    "ANYAPI_CACHE_HIT",
    "ANYAPI_RATE_LIMITED",
    "ANYAPI_RATE_LIMIT_WAIT",
    "ANYAPI_REQUEST_ID",
    "ANYAPI_RETRY_EVENT",
    "ANYAPI_RETRY_WAIT",
    "ANYAPI_STREAM_CHUNKS",
    "ANYAPI_STREAM_END",
    "CHAT_PATH",
    "CaptureContent",
    "DURATION_BUCKETS",
    "ENV_CAPTURE_CONTENT",
    "ENV_SEMCONV_OPT_IN",
    "ERROR_TYPE",
    "EVENT_DETAILS",
    "GEN_AI_CLIENT_INFERENCE_DURATION",
    "GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS",
    "GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS",
    "GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK",
    "GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK",
    "GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS",
    "GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS",
    "GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS",
    "GEN_AI_CLIENT_OPERATION_DURATION",
    "GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK",
    "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK",
    "GEN_AI_CLIENT_TOKEN_USAGE",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_OUTPUT_TYPE",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_CHOICE_COUNT",
    "GEN_AI_REQUEST_FREQUENCY_PENALTY",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_PRESENCE_PENALTY",
    "GEN_AI_REQUEST_SEED",
    "GEN_AI_REQUEST_STOP_SEQUENCES",
    "GEN_AI_REQUEST_STREAM",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_K",
    "GEN_AI_REQUEST_TOP_P",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOKEN_MODALITY",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_TOOL_DEFINITIONS",
    "GEN_AI_USAGE_AUDIO_INPUT_TOKENS",
    "GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS",
    "INSTRUMENTATION_NAME",
    "KNOWN_PROVIDERS",
    "MODALITY_AUDIO",
    "MODALITY_UNKNOWN",
    "OPENAI_API_TYPE",
    "OPENAI_REQUEST_SERVICE_TIER",
    "OPENAI_RESPONSE_SERVICE_TIER",
    "OPENAI_RESPONSE_SYSTEM_FINGERPRINT",
    "OPERATION_CHAT",
    "OPT_IN_GEN_AI_LATEST",
    "PROVIDER_ANYAPI",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "TOKEN_BUCKETS",
    "latest_experimental",
]

# --- attributes (GenAI conventions of semantic-conventions v1.41.0; most stay in the latest) ---

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
#: Whether the client's response cache answered the call (set only with a cache).
ANYAPI_CACHE_HIT: Final = "anyapi.cache.hit"
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

# --- metrics (semantic-conventions v1.41.0: emitted by default) --------------------------

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
#: The conventions' advised boundaries for the token histograms.
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

# --- the latest release (semantic-conventions-genai v0.1.0), behind the opt-in -----------

#: The conventions' stability switch: a comma-separated list of category values.
ENV_SEMCONV_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
#: Its GenAI value: emit the latest experimental conventions, and not the previous ones.
OPT_IN_GEN_AI_LATEST: Final = "gen_ai_latest_experimental"

GEN_AI_CLIENT_INFERENCE_DURATION: Final = "gen_ai.client.inference.duration"
GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.inference.time_to_first_chunk"
GEN_AI_CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK: Final = (
    "gen_ai.client.inference.time_per_output_chunk"
)
GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.input_tokens"
GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.output_tokens"
GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS: Final = (
    "gen_ai.client.inference.usage.cache_read.input_tokens"
)
GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS: Final = (
    "gen_ai.client.inference.usage.reasoning.output_tokens"
)
GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS: Final = (
    "gen_ai.client.inference.operation.input_tokens"
)
GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS: Final = (
    "gen_ai.client.inference.operation.output_tokens"
)
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"
MODALITY_AUDIO: Final = "audio"
#: Chat Completions breaks usage down by modality only for audio: the rest is "unknown".
MODALITY_UNKNOWN: Final = "unknown"

# --- content capture and the rest ----------------------------------------------------------

#: The conventional switch for content capture (``true``/``span_only``, ``event_only``,
#: ``span_and_event``, ``false``/``no_content``; any case).
ENV_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EVENT_DETAILS: Final = "gen_ai.client.inference.operation.details"
INSTRUMENTATION_NAME: Final = "anyapi_async"
CHAT_PATH: Final = "/chat/completions"

CaptureContent = Union[bool, Literal["span", "event", "span_and_event"]]


def latest_experimental(value: str | None) -> bool:
    """Whether an ``OTEL_SEMCONV_STABILITY_OPT_IN`` value opts in to the latest GenAI names.

    The value is a comma-separated list; ``gen_ai_latest_experimental`` must be one of its
    items (as OpenTelemetry's own instrumentations read it: exact, spaces trimmed).
    """
    if not value:
        return False
    return OPT_IN_GEN_AI_LATEST in (item.strip() for item in value.split(","))
