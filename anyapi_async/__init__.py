"""anyapi_async: an asyncio-first client for AnyAPI and OpenAI-compatible chat completions."""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from ._client import AsyncClient
from ._config import NOT_GIVEN, Limits, NotGiven, Timeout
from ._exceptions import (
    AllRoutesFailedError,
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
    JobConflict,
    JobError,
    JobStopped,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    StreamError,
    ToolRoundsExceededError,
    UnprocessableEntityError,
)
from ._meta import RateLimitInfo, ResponseInfo, Timings
from ._observe import AttemptInfo, CallContext, Hooks, Observer
from ._pipeline import Pipeline
from ._response import APIResponse, RequestInfo, StreamedAPIResponse, StreamedResponseManager
from ._retry import RetryPolicy
from ._settings import DEFAULT_BASE_URL
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
from ._version import __version__

if TYPE_CHECKING:
    # The lazy names again, for type checkers (`X as X` re-exports them); a test checks
    # that this list and _LAZY agree.
    from ._accumulate import ChunkAccumulator as ChunkAccumulator
    from ._batch import BatchResult as BatchResult
    from ._batch import BatchRun as BatchRun
    from ._batch import BatchStats as BatchStats
    from ._batch import ProgressCallback as ProgressCallback
    from ._batch import TqdmProgress as TqdmProgress
    from ._chat_stream import ChatCompletionStream as ChatCompletionStream
    from ._chat_stream import ChatCompletionStreamManager as ChatCompletionStreamManager
    from ._chat_stream import ChunkEvent as ChunkEvent
    from ._chat_stream import ContentDeltaEvent as ContentDeltaEvent
    from ._chat_stream import ContentDoneEvent as ContentDoneEvent
    from ._chat_stream import LogprobsEvent as LogprobsEvent
    from ._chat_stream import ReasoningDeltaEvent as ReasoningDeltaEvent
    from ._chat_stream import RefusalDeltaEvent as RefusalDeltaEvent
    from ._chat_stream import StreamEvent as StreamEvent
    from ._chat_stream import ToolCallArgumentsDeltaEvent as ToolCallArgumentsDeltaEvent
    from ._chat_stream import ToolCallDoneEvent as ToolCallDoneEvent
    from ._jobs import run_jsonl_job as run_jsonl_job
    from ._parsing import ParsedChatCompletion as ParsedChatCompletion
    from ._parsing import ParsedChatCompletionMessage as ParsedChatCompletionMessage
    from ._parsing import ParsedChatCompletionStream as ParsedChatCompletionStream
    from ._parsing import ParsedChatCompletionStreamManager as ParsedChatCompletionStreamManager
    from ._parsing import ParsedChoice as ParsedChoice
    from ._partial import PartialJSON as PartialJSON
    from ._ratelimit import RateLimiter as RateLimiter
    from ._records import JobSummary as JobSummary
    from ._records import ToolCallResult as ToolCallResult
    from ._resources import Completions as Completions
    from ._resources import CompletionsWithRawResponse as CompletionsWithRawResponse
    from ._resources import CompletionsWithStreamingResponse as CompletionsWithStreamingResponse
    from ._resources import Models as Models
    from ._router import CircuitBreaker as CircuitBreaker
    from ._router import Hedge as Hedge
    from ._router import Route as Route
    from ._router import Router as Router
    from ._schema import ResponseSchema as ResponseSchema
    from ._schema import response_schema as response_schema
    from ._tool_stream import ToolCallErrorEvent as ToolCallErrorEvent
    from ._tool_stream import ToolCallResultEvent as ToolCallResultEvent
    from ._tool_stream import ToolCallStartEvent as ToolCallStartEvent
    from ._tool_stream import ToolRunDoneEvent as ToolRunDoneEvent
    from ._tool_stream import ToolRunEvent as ToolRunEvent
    from ._tool_stream import ToolRunRoundEvent as ToolRunRoundEvent
    from ._tool_stream import ToolRunStream as ToolRunStream
    from ._tool_stream import ToolRunTextDeltaEvent as ToolRunTextDeltaEvent
    from ._tools import FunctionTool as FunctionTool
    from ._tools import ToolRunResult as ToolRunResult
    from ._tools import function_tool as function_tool


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
    "run_jsonl_job": "_jobs",
    **dict.fromkeys(("JobSummary", "ToolCallResult"), "_records"),
    **dict.fromkeys(
        (
            "ParsedChatCompletion",
            "ParsedChatCompletionMessage",
            "ParsedChatCompletionStream",
            "ParsedChatCompletionStreamManager",
            "ParsedChoice",
        ),
        "_parsing",
    ),
    "PartialJSON": "_partial",
    **dict.fromkeys(("CircuitBreaker", "Hedge", "Route", "Router"), "_router"),
    "RateLimiter": "_ratelimit",
    # Reached as client.chat.completions / client.models; importable for type hints.
    **dict.fromkeys(
        (
            "Completions",
            "CompletionsWithRawResponse",
            "CompletionsWithStreamingResponse",
            "Models",
        ),
        "_resources",
    ),
    **dict.fromkeys(("ResponseSchema", "response_schema"), "_schema"),
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
            "ToolRunResult",
            "function_tool",
        ),
        "_tools",
    ),
}

# Eager names, then the lazy ones (the table above is their one list at run time).
__all__ = [
    "DEFAULT_BASE_URL",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponse",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AllRoutesFailedError",
    "AsyncClient",
    "AsyncStream",
    "AttemptInfo",
    "AuthenticationError",
    "BadRequestError",
    "CallContext",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageParam",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionCreateParams",
    "CompletionTokensDetails",
    "CompletionUsage",
    "ConflictError",
    "ContentValidationError",
    "ErrorObject",
    "FunctionCall",
    "Hooks",
    "InternalServerError",
    "JobConflict",
    "JobError",
    "JobStopped",
    "Limits",
    "Model",
    "ModelList",
    "NotFoundError",
    "NotGiven",
    "Observer",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Pipeline",
    "PromptTokensDetails",
    "RateLimitError",
    "RateLimitInfo",
    "RequestInfo",
    "ResponseInfo",
    "ResponseTooLargeError",
    "RetryPolicy",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamError",
    "StreamedAPIResponse",
    "StreamedResponseManager",
    "Timeout",
    "Timings",
    "ToolRoundsExceededError",
    "TopLogprob",
    "UnprocessableEntityError",
    "__version__",
    *_LAZY,
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
