"""anyapi_async: an asyncio-first client for AnyAPI and OpenAI-compatible chat completions."""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from ._client import DEFAULT_BASE_URL, AsyncClient
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentValidationError,
    InternalServerError,
    JobError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    StreamError,
    ToolRoundsExceededError,
    UnprocessableEntityError,
)
from ._hooks import AttemptInfo, Hooks
from ._meta import RateLimitInfo, ResponseInfo, Timings
from ._retry import RetryPolicy
from ._sse import ServerSentEvent, SSEDecoder
from ._streaming import AsyncStream
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    ChatCompletionTokenLogprob,
    Choice,
    ChoiceDelta,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionCreateParams,
    CompletionTokensDetails,
    CompletionUsage,
    ErrorObject,
    FunctionCall,
    Model,
    ModelList,
    PromptTokensDetails,
    TopLogprob,
)

if TYPE_CHECKING:
    from ._accumulate import ChunkAccumulator
    from ._batch import BatchResult, BatchRun, BatchStats, ProgressCallback, TqdmProgress
    from ._chat_stream import (
        ChatCompletionStream,
        ChatCompletionStreamManager,
        ChunkEvent,
        ContentDeltaEvent,
        ContentDoneEvent,
        LogprobsEvent,
        ReasoningDeltaEvent,
        RefusalDeltaEvent,
        StreamEvent,
        ToolCallArgumentsDeltaEvent,
        ToolCallDoneEvent,
    )
    from ._jobs import JobSummary, run_jsonl_job
    from ._parsing import (
        ParsedChatCompletion,
        ParsedChatCompletionMessage,
        ParsedChatCompletionStream,
        ParsedChatCompletionStreamManager,
        ParsedChoice,
        ResponseSchema,
        response_schema,
    )
    from ._partial import PartialJSON
    from ._ratelimit import RateLimiter
    from ._tool_stream import (
        ToolCallErrorEvent,
        ToolCallResultEvent,
        ToolCallStartEvent,
        ToolRunDoneEvent,
        ToolRunEvent,
        ToolRunRoundEvent,
        ToolRunStream,
        ToolRunTextDeltaEvent,
    )
    from ._tools import (
        FunctionTool,
        ToolCallResult,
        ToolRunResult,
        function_tool,
    )

__version__ = "0.1.0"

# Names whose modules load on first use, so `import anyapi_async` stays as cheap as the
# first request needs (the stream helpers, structured outputs, tools and batch jobs).
_LAZY: dict[str, str] = {
    "ChunkAccumulator": "_accumulate",
    **dict.fromkeys(
        (
            "ChatCompletionStream",
            "ChatCompletionStreamManager",
            "ChunkEvent",
            "ContentDeltaEvent",
            "ContentDoneEvent",
            "LogprobsEvent",
            "ReasoningDeltaEvent",
            "RefusalDeltaEvent",
            "StreamEvent",
            "ToolCallArgumentsDeltaEvent",
            "ToolCallDoneEvent",
        ),
        "_chat_stream",
    ),
    **dict.fromkeys(
        ("BatchResult", "BatchRun", "BatchStats", "ProgressCallback", "TqdmProgress"), "_batch"
    ),
    **dict.fromkeys(("JobSummary", "run_jsonl_job"), "_jobs"),
    **dict.fromkeys(
        (
            "ParsedChatCompletion",
            "ParsedChatCompletionMessage",
            "ParsedChatCompletionStream",
            "ParsedChatCompletionStreamManager",
            "ParsedChoice",
            "ResponseSchema",
            "response_schema",
        ),
        "_parsing",
    ),
    "PartialJSON": "_partial",
    "RateLimiter": "_ratelimit",
    **dict.fromkeys(
        (
            "ToolCallErrorEvent",
            "ToolCallResultEvent",
            "ToolCallStartEvent",
            "ToolRunDoneEvent",
            "ToolRunEvent",
            "ToolRunRoundEvent",
            "ToolRunStream",
            "ToolRunTextDeltaEvent",
        ),
        "_tool_stream",
    ),
    **dict.fromkeys(
        (
            "FunctionTool",
            "ToolCallResult",
            "ToolRunResult",
            "function_tool",
        ),
        "_tools",
    ),
}

__all__ = [
    "DEFAULT_BASE_URL",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncStream",
    "AttemptInfo",
    "AuthenticationError",
    "BadRequestError",
    "BatchResult",
    "BatchRun",
    "BatchStats",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageParam",
    "ChatCompletionMessageToolCall",
    "ChatCompletionStream",
    "ChatCompletionStreamManager",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkAccumulator",
    "ChunkChoice",
    "ChunkEvent",
    "CompletionCreateParams",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ConflictError",
    "ContentDeltaEvent",
    "ContentDoneEvent",
    "ContentValidationError",
    "ErrorObject",
    "FunctionCall",
    "FunctionTool",
    "Hooks",
    "InternalServerError",
    "JobError",
    "JobSummary",
    "LogprobsEvent",
    "Model",
    "ModelList",
    "NotFoundError",
    "NotGiven",
    "ParsedChatCompletion",
    "ParsedChatCompletionMessage",
    "ParsedChatCompletionStream",
    "ParsedChatCompletionStreamManager",
    "ParsedChoice",
    "PartialJSON",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "ProgressCallback",
    "PromptTokensDetails",
    "RateLimitError",
    "RateLimitInfo",
    "RateLimiter",
    "ReasoningDeltaEvent",
    "RefusalDeltaEvent",
    "ResponseInfo",
    "ResponseSchema",
    "ResponseTooLargeError",
    "RetryPolicy",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamError",
    "StreamEvent",
    "Timeout",
    "Timings",
    "ToolCallArgumentsDeltaEvent",
    "ToolCallDoneEvent",
    "ToolCallErrorEvent",
    "ToolCallResult",
    "ToolCallResultEvent",
    "ToolCallStartEvent",
    "ToolRoundsExceededError",
    "ToolRunDoneEvent",
    "ToolRunEvent",
    "ToolRunResult",
    "ToolRunRoundEvent",
    "ToolRunStream",
    "ToolRunTextDeltaEvent",
    "TopLogprob",
    "TqdmProgress",
    "UnprocessableEntityError",
    "function_tool",
    "response_schema",
    "run_jsonl_job",
    "__version__",
]



def _public(obj: Any) -> Any:
    # Tracebacks and reprs name the public path (anyapi_async.RateLimitError), not the module.
    if isinstance(obj, type) and obj.__module__.startswith("anyapi_async._"):
        with contextlib.suppress(AttributeError, TypeError):  # some C types refuse it
            obj.__module__ = __name__
    return obj


for _name in __all__:
    if _name not in _LAZY:
        _public(globals()[_name])
del _name


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _public(getattr(importlib.import_module(f"{__name__}.{module}"), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
