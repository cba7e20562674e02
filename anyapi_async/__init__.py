"""anyapi_async: an asyncio-first client for AnyAPI and OpenAI-compatible chat completions."""

from __future__ import annotations

import contextlib

from ._accumulate import ChunkAccumulator
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
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    StreamError,
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

__version__ = "0.1.0"

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
    "ErrorObject",
    "FunctionCall",
    "Hooks",
    "InternalServerError",
    "LogprobsEvent",
    "Model",
    "ModelList",
    "NotFoundError",
    "NotGiven",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "PromptTokensDetails",
    "RateLimitError",
    "RateLimitInfo",
    "ReasoningDeltaEvent",
    "RefusalDeltaEvent",
    "ResponseInfo",
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
    "TopLogprob",
    "UnprocessableEntityError",
    "__version__",
]

# Tracebacks and reprs name the public path (anyapi_async.RateLimitError), not the module.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("anyapi_async._"):
        with contextlib.suppress(AttributeError, TypeError):  # some C types refuse it
            _obj.__module__ = __name__
del _name, _obj
