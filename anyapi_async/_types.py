"""Wire types: msgspec Structs for responses and chunks, TypedDicts for request parameters.

Responses decode straight from bytes. Unknown fields are ignored (msgspec's default), and
every field has a default, so a provider that leaves one out or adds its own never breaks
decoding. Nothing is lost all the same: a decoded completion, chunk or model keeps the bytes
it came from, and its ``to_dict()`` decodes them on demand, unknown fields included.

Fields that providers send as ``null`` are typed ``X | None``; for the few that should never
be null (``id``, ``index``…), `decode_lenient` drops stray nulls on a slow second pass
(`_decode.py`) instead of typing everything as optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union

import msgspec

from ._config import Timeout

if TYPE_CHECKING:
    from ._meta import ResponseInfo

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ErrorObject",
    "Function",
    "FunctionCall",
    "Model",
    "ModelList",
    "PromptTokensDetails",
    "TopLogprob",
    "copy_response",
    "keep_response",
    "kept_body",
]


_JSON = msgspec.json.Decoder()


class KeepsBody:
    """A slot for the bytes a response was decoded from, and `to_dict` over them.

    A plain ``__slots__`` base (not a Struct field) stays out of ``repr``, ``==``,
    encoding and the GC, and costs one pointer per object: the decoders (`_client`,
    `_streaming`) set ``_raw`` once per body or event, and nothing decodes it until asked.
    """

    __slots__ = ("_raw",)
    _raw: bytes

    def to_dict(self) -> dict[str, Any]:
        """The whole JSON object as the server sent it, unknown fields included at every depth.

        Decoded from the kept body on each call (a new dict every time, so changing it
        changes nothing else); a completion folded from a stream's chunks by
        ``get_final_completion()`` keeps the body they add up to. For an object built by
        hand it is ``msgspec.to_builtins(self)``: the named fields that differ from their
        defaults.
        """
        raw: bytes | None = getattr(self, "_raw", None)
        if raw is None:
            out: dict[str, Any] = msgspec.to_builtins(self)
            return out
        decoded: dict[str, Any] = _JSON.decode(raw)
        return decoded


def kept_body(obj: object) -> bytes | None:
    """The body bytes ``obj`` was decoded from, if a decoder kept them (see `keep_response`)."""
    body: bytes | None = getattr(obj, "_raw", None)
    return body


def keep_response(obj: object, body: bytes | None = None, http: ResponseInfo | None = None) -> None:
    """Attach what a response carried besides its fields: the one writer of that metadata.

    ``body`` (the bytes ``obj`` was decoded from) feeds `KeepsBody.to_dict`; ``http`` is
    what ``completion.http`` returns. Objects that cannot hold one of them (a dict, the
    caller's own types) are left alone.
    """
    if isinstance(obj, KeepsBody):  # the library's response types; others hold neither
        if body is not None:
            obj._raw = body
        if http is not None:
            held: dict[str, Any] | None = getattr(obj, "__dict__", None)
            if held is not None:  # ChatCompletion (and ParsedChatCompletion) keep http
                held["_http"] = http


def copy_response(source: object, target: object) -> None:
    """Give ``target`` (a completion derived from ``source``) ``source``'s kept metadata."""
    http = getattr(source, "http", None)
    keep_response(target, kept_body(source), http)


class _Base(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Common config: keyword construction, defaults left out when re-encoded, and no GC.

    Decoded responses never form reference cycles, so the garbage collector need not
    track them: with ``gc=False`` a stream of thousands of chunks (or a completion with
    thousands of logprob entries) adds no collector work (see docs/benchmarks.md).
    """


# --- logprobs -----------------------------------------------------------------------------


class TopLogprob(_Base):
    """One alternative token at a position."""

    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(_Base):
    """A generated token with its log probability and the most likely alternatives."""

    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(_Base):
    """Log probabilities of a choice's content (and refusal) tokens."""

    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


# --- non-streaming ------------------------------------------------------------------------


class FunctionCall(_Base):
    """A function name and its JSON-encoded arguments."""

    name: str = ""
    arguments: str = ""


Function = FunctionCall


class ChatCompletionMessageToolCall(_Base):
    """A tool call the model asked for."""

    id: str = ""
    type: str = "function"
    function: FunctionCall = msgspec.field(default_factory=FunctionCall)


class ChatCompletionMessage(_Base):
    """The assistant's message in a choice."""

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    function_call: FunctionCall | None = None
    #: Reasoning text that some providers add (DeepSeek, vLLM: ``reasoning_content``;
    #: OpenRouter and others: ``reasoning``).
    reasoning_content: str | None = None
    reasoning: str | None = None
    annotations: list[dict[str, Any]] | None = None


class Choice(_Base):
    """One completion choice."""

    index: int = 0
    message: ChatCompletionMessage = msgspec.field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class PromptTokensDetails(_Base):
    """Breakdown of the prompt tokens."""

    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(_Base):
    """Breakdown of the completion tokens."""

    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(_Base):
    """Token counts of a request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    #: Cost that some gateways report (OpenRouter-style ``usage.cost``).
    cost: float | None = None


class ErrorObject(_Base):
    """An ``{"error": {...}}`` object; ``code`` is an int on AnyAPI, a string on OpenAI."""

    message: str = ""
    type: str | None = None
    code: int | str | None = None
    param: str | None = None
    metadata: dict[str, Any] | None = None


# The __dict__ that holds `http` needs GC tracking, for this one object per response.
class ChatCompletion(_Base, KeepsBody, gc=True, dict=True):
    """A ``chat.completion`` object.

    ``completion.http`` holds the HTTP facts of the call that produced it (headers, request
    id, rate limits, timings, attempts); it is ``None`` for one built by hand.
    ``completion.to_dict()`` is the body as received, fields the Structs do not name
    included (a gateway's ``provider``, ``citations``, ``usage.cost``...).
    """

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    #: Set when a gateway answers an error object with a 2xx status; never returned to users.
    error: ErrorObject | None = None

    @property
    def http(self) -> ResponseInfo | None:
        """Headers, request id, rate limits and timings of the response (not a wire field)."""
        info: ResponseInfo | None = self.__dict__.get("_http")
        return info


# --- streaming ----------------------------------------------------------------------------


class ChoiceDeltaFunctionCall(_Base):
    """A fragment of a legacy function call."""

    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCallFunction(_Base):
    """A fragment of a tool call's function: the name once, arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(_Base):
    """A fragment of a tool call, merged by ``index`` across chunks."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(_Base):
    """What a chunk adds to a choice."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    function_call: ChoiceDeltaFunctionCall | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class ChunkChoice(_Base):
    """One choice's piece of a chunk."""

    index: int = 0
    delta: ChoiceDelta = msgspec.field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_Base, KeepsBody):
    """A ``chat.completion.chunk`` event of a stream.

    ``chunk.to_dict()`` is the event's JSON as received, unknown fields included. (When a
    server ignored ``stream=true`` and answered one ``chat.completion``, the stream yields
    it as one chunk whose ``to_dict()`` is that completion body.)
    """

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    #: Set when the event is an error object; the stream raises instead of yielding it.
    error: ErrorObject | None = None


# --- models -------------------------------------------------------------------------------


class Model(_Base, KeepsBody):
    """An entry of ``GET /models``; ``to_dict()`` of one from ``models.retrieve()`` keeps
    what the server adds (context length, pricing...)."""

    id: str = ""
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None


class ModelList(_Base, KeepsBody):
    """The answer of ``GET /models``; ``to_dict()`` is the whole body as received."""

    object: str = "list"
    data: list[Model] = []


# --- request parameters (TypedDicts: callers pass plain dicts) ----------------------------


class _ImageURLRequired(TypedDict):
    url: str


class ImageURL(_ImageURLRequired, total=False):
    detail: Literal["auto", "low", "high"]


class InputAudio(TypedDict):
    data: str
    format: str


class ContentPartText(TypedDict):
    type: Literal["text"]
    text: str


class ContentPartImage(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL


class ContentPartAudio(TypedDict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class ContentPartFile(TypedDict):
    type: Literal["file"]
    file: dict[str, str]


ContentPart = Union[ContentPartText, ContentPartImage, ContentPartAudio, ContentPartFile]


class FunctionCallParam(TypedDict):
    name: str
    arguments: str


class ToolCallParam(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCallParam


class _DeveloperMessageParamRequired(TypedDict):
    role: Literal["developer"]
    content: str | list[ContentPartText]


class DeveloperMessageParam(_DeveloperMessageParamRequired, total=False):
    name: str


class _SystemMessageParamRequired(TypedDict):
    role: Literal["system"]
    content: str | list[ContentPartText]


class SystemMessageParam(_SystemMessageParamRequired, total=False):
    name: str


class _UserMessageParamRequired(TypedDict):
    role: Literal["user"]
    content: str | list[ContentPart]


class UserMessageParam(_UserMessageParamRequired, total=False):
    name: str


class _AssistantMessageParamRequired(TypedDict):
    role: Literal["assistant"]


class AssistantMessageParam(_AssistantMessageParamRequired, total=False):
    content: str | list[ContentPartText] | None
    refusal: str | None
    name: str
    tool_calls: list[ToolCallParam]
    function_call: FunctionCallParam | None


class ToolMessageParam(TypedDict):
    role: Literal["tool"]
    content: str | list[ContentPartText]
    tool_call_id: str


class FunctionMessageParam(TypedDict):
    role: Literal["function"]
    content: str | None
    name: str


ChatCompletionMessageParam = Union[
    DeveloperMessageParam,
    SystemMessageParam,
    UserMessageParam,
    AssistantMessageParam,
    ToolMessageParam,
    FunctionMessageParam,
]


class _FunctionDefinitionRequired(TypedDict):
    name: str


class FunctionDefinition(_FunctionDefinitionRequired, total=False):
    description: str
    parameters: dict[str, Any]
    strict: bool | None


class ToolParam(TypedDict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoiceFunction(TypedDict):
    name: str


class NamedToolChoice(TypedDict):
    type: Literal["function"]
    function: NamedToolChoiceFunction


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


class _JSONSchemaFormatRequired(TypedDict):
    name: str


class JSONSchemaFormat(_JSONSchemaFormatRequired, total=False):
    description: str
    schema: dict[str, Any]
    strict: bool | None


class ResponseFormatText(TypedDict):
    type: Literal["text"]


class ResponseFormatJSONObject(TypedDict):
    type: Literal["json_object"]


class ResponseFormatJSONSchema(TypedDict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Union[ResponseFormatText, ResponseFormatJSONObject, ResponseFormatJSONSchema]


class StreamOptions(TypedDict, total=False):
    include_usage: bool
    include_obfuscation: bool


class Prediction(TypedDict):
    type: Literal["content"]
    content: str | list[ContentPartText]


class AudioParam(TypedDict):
    voice: str
    format: str


__all__ += [
    "AssistantMessageParam",
    "ChatCompletionMessageParam",
    "ContentPart",
    "DeveloperMessageParam",
    "FunctionDefinition",
    "ResponseFormat",
    "StreamOptions",
    "SystemMessageParam",
    "ToolChoice",
    "ToolMessageParam",
    "ToolParam",
    "UserMessageParam",
]


class CommonCreateParams(TypedDict, total=False):
    """`CompletionCreateParams` without ``response_format`` and ``tools``.

    The structured-output and tool helpers set one of those two themselves; a TypedDict
    cannot drop a key, so the full set is built on this one.
    """

    audio: AudioParam | None
    frequency_penalty: float | None
    function_call: Literal["none", "auto"] | NamedToolChoiceFunction
    functions: list[FunctionDefinition]
    logit_bias: dict[str, int] | None
    logprobs: bool | None
    max_completion_tokens: int | None
    max_tokens: int | None
    metadata: dict[str, str] | None
    modalities: list[Literal["text", "audio"]] | None
    n: int | None
    parallel_tool_calls: bool
    prediction: Prediction | None
    presence_penalty: float | None
    prompt_cache_key: str
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None
    safety_identifier: str
    seed: int | None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None
    stop: str | list[str] | None
    store: bool | None
    stream_options: StreamOptions | None
    temperature: float | None
    tool_choice: ToolChoice
    top_logprobs: int | None
    top_p: float | None
    user: str
    verbosity: Literal["low", "medium", "high"] | None
    web_search_options: dict[str, Any]
    # client options, never sent as body fields
    extra_headers: dict[str, str] | None
    extra_query: dict[str, str | None] | None
    extra_body: dict[str, Any] | None
    timeout: float | Timeout | None
    max_retries: int
    idempotency_key: str | None
    cache: bool | Literal["refresh"]


class CompletionCreateParams(CommonCreateParams, total=False):
    """Every ``create()`` parameter besides ``model``, ``messages`` and ``stream``.

    Wire parameters are sent exactly as given; ``extra_headers``, ``extra_query``,
    ``extra_body``, ``timeout``, ``max_retries``, ``idempotency_key`` and ``cache`` are
    client options.
    """

    response_format: ResponseFormat
    tools: list[ToolParam]


__all__ += ["CommonCreateParams", "CompletionCreateParams"]
