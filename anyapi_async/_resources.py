"""``client.chat.completions`` and ``client.models``: argument checks -> body -> the pipeline.

Checking messages and building bodies is `anyapi_async._messages`, a leaf module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import quote

from ._messages import CHAT_PATH, MessageInput, build_body
from ._observe import CallContext
from ._pipeline import Pipeline
from ._response import APIResponse, StreamedResponseManager
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    CompletionCreateParams,
    Model,
    ModelList,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._batch import BatchClient, BatchRun, ProgressCallback, Requests
    from ._chat_stream import ChatCompletionStreamManager
    from ._parsing import ParsedChatCompletion, ParsedChatCompletionStreamManager, ParseParams
    from ._ratelimit import RateLimiter
    from ._streaming import AsyncStream
    from ._tool_stream import ToolRunStream
    from ._tools import FunctionTool, ToolCallResult, ToolRunParams, ToolRunResult

__all__ = [
    "Chat",
    "Completions",
    "CompletionsWithRawResponse",
    "CompletionsWithStreamingResponse",
    "Models",
]

T = TypeVar("T")


def chat_context(
    model: str,
    messages: object,
    stream: bool,
    params: Mapping[str, Any],
    options: Mapping[str, Any] | None,
) -> CallContext:
    """The `CallContext` of a chat completion: its parameters as given (after `build_body`
    has taken the client options out of ``params``; ``extra_body`` fields included)."""
    given: dict[str, Any] = {"model": model, "messages": messages, **params}
    extra_body = options.get("extra_body") if options else None
    if extra_body:
        given.update(extra_body)
    if stream:
        given["stream"] = True
    return CallContext(
        "chat", method="POST", path=CHAT_PATH, model=model, params=given, stream=stream
    )


def _pipeline_of(source: Pipeline | BatchClient) -> Pipeline:
    # Resources are built over a pipeline; a client (what they took before) still works.
    return source if isinstance(source, Pipeline) else source.pipeline


def _prepare(
    pipeline: Pipeline,
    model: str,
    messages: Sequence[MessageInput],
    stream: bool,
    params: dict[str, Any],
) -> tuple[bytes, dict[str, Any] | None, CallContext | None]:
    """A chat call's body and client options (`build_body`: the argument checks, before any
    I/O), and its `CallContext` when the pipeline has observers. ``params`` is the call's
    own ``**params`` dict: `build_body` takes the client options out of it."""
    shared = pipeline.shared
    body, options = build_body(model, messages, stream, params, stream_usage=shared.stream_usage)
    if not shared.observers:
        return body, options, None
    return body, options, chat_context(model, messages, stream, params, options)


class Completions:
    """``client.chat.completions``: chat completions through one request pipeline.

    Built over a `Pipeline` (or a client, whose pipeline it uses); ``batch_client`` (by
    default ``client`` when it is one) is what `batch` runs through (`BatchRun.client`).
    """

    def __init__(
        self, client: Pipeline | BatchClient, batch_client: BatchClient | None = None
    ) -> None:
        self._pipeline = _pipeline_of(client)
        if batch_client is None and not isinstance(client, Pipeline):
            batch_client = client
        self._client = batch_client

    @property
    def with_raw_response(self) -> CompletionsWithRawResponse:
        """``create()`` returning the response itself: status, headers, body, ``parse()``.

        ```python
        raw = await client.chat.completions.with_raw_response.create(model=m, messages=msgs)
        print(raw.headers.get("x-ratelimit-remaining-requests"))
        completion = raw.parse()
        ```
        """
        return CompletionsWithRawResponse(self._pipeline)

    @property
    def with_streaming_response(self) -> CompletionsWithStreamingResponse:
        """``create()`` stopping at the headers; read the body as it arrives.

        ```python
        async with client.chat.completions.with_streaming_response.create(
            model=m, messages=msgs, stream=True
        ) as response:
            async for line in response.iter_lines():
                print(line)
        ```
        """
        return CompletionsWithStreamingResponse(self._pipeline)

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[False] = False,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[True],
        **params: Unpack[CompletionCreateParams],
    ) -> AsyncStream[ChatCompletionChunk]: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: bool,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: bool = False,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """Create a chat completion.

        Every chat-completions parameter is accepted by name (``max_tokens``, ``tools``,
        ``logprobs``…) and sent only when given. ``extra_body``, ``extra_headers`` and
        ``extra_query`` pass through; ``timeout`` and ``max_retries`` override the
        client's for this call. With ``stream=True`` the call returns an `AsyncStream`
        once the first event has arrived.

        Example:

        ```python
        c = await client.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=300,
        )
        ```
        """
        pipeline = self._pipeline
        # _prepare(), inline: every chat call comes this way.
        shared = pipeline.shared
        body, options = build_body(
            model, messages, stream, params, stream_usage=shared.stream_usage  # type: ignore[arg-type]
        )
        context = (
            chat_context(model, messages, stream, params, options) if shared.observers else None
        )
        if stream:
            return await pipeline.stream(
                "POST", CHAT_PATH, body, options, ChatCompletionChunk, context
            )
        completion: ChatCompletion = await pipeline.send(
            "POST", CHAT_PATH, body, options, ChatCompletion, context
        )
        return completion

    def stream(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletionStreamManager:
        """Stream a completion with helpers; use with ``async with``.

        Example:

        ```python
        async with client.chat.completions.stream(model=m, messages=msgs) as s:
            async for text in s.text_deltas():
                print(text, end="", flush=True)
            final = await s.get_final_completion()
        ```
        """
        if "stream" in params:
            raise TypeError(
                "stream() always streams: leave out stream=..., or call "
                "create(..., stream=True) for a plain AsyncStream"
            )
        pipeline = self._pipeline
        body, options, context = _prepare(pipeline, model, messages, True, params)  # type: ignore[arg-type]

        async def open_stream() -> AsyncStream[ChatCompletionChunk]:
            return await pipeline.stream(
                "POST", CHAT_PATH, body, options, ChatCompletionChunk, context
            )

        from ._chat_stream import ChatCompletionStreamManager  # the helpers load on first use

        return ChatCompletionStreamManager(open_stream)

    async def parse(
        self,
        *,
        model: str,
        messages: Sequence[ChatCompletionMessageParam],
        response_format: type[T],
        **params: Unpack[ParseParams],
    ) -> ParsedChatCompletion[T]:
        """Create a completion whose reply is JSON decoded into ``response_format``.

        ``response_format`` is a msgspec Struct (or any type msgspec can describe); the
        request asks for its JSON schema. ``choices[i].message.parsed`` holds the decoded
        object, ``None`` on a refusal. Raises `ContentValidationError` when a reply does
        not decode into the type. See the Structured outputs guide.

        Example:

        ```python
        class Person(msgspec.Struct):
            name: str
            age: int

        c = await client.chat.completions.parse(
            model="gpt-5", messages=msgs, response_format=Person
        )
        person = c.choices[0].message.parsed
        ```
        """
        from . import _parsing  # loaded on first use: plain requests never need it

        return await _parsing.parse(self.create, model, messages, response_format, params)

    def stream_parse(
        self,
        *,
        model: str,
        messages: Sequence[ChatCompletionMessageParam],
        response_format: type[T],
        **params: Unpack[ParseParams],
    ) -> ParsedChatCompletionStreamManager[T]:
        """`stream` with `parse`'s ``response_format``: text as it arrives, the object at the end.

        Example:

        ```python
        async with client.chat.completions.stream_parse(
            model=m, messages=msgs, response_format=Person
        ) as s:
            async for text in s.text_deltas():
                print(text, end="")
            person = await s.get_final_parsed()
        ```
        """
        from . import _parsing

        return _parsing.stream_parse(self.stream, model, messages, response_format, params)

    async def run_tools(
        self,
        *,
        model: str,
        messages: Sequence[ChatCompletionMessageParam],
        tools: Sequence[FunctionTool[Any, Any] | Callable[..., Any]],
        max_rounds: int | None = None,
        tool_timeout: float | None = None,
        on_tool_result: Callable[[ToolCallResult], Awaitable[None] | None] | None = None,
        **params: Unpack[ToolRunParams],
    ) -> ToolRunResult:
        """Let the model call Python functions until it answers (see the Tools guide).

        ``tools`` are async or sync functions (or `function_tool` objects). The calls of a
        round run concurrently; a bad argument, an exception or a ``tool_timeout`` becomes
        an error message for the model. Raises `ToolRoundsExceededError` when the model
        still wants tools after ``max_rounds`` (default 10) requests.

        Example:

        ```python
        result = await client.chat.completions.run_tools(
            model="gpt-5", messages=msgs, tools=[get_weather]
        )
        print(result.content)
        ```
        """
        from . import _tools

        return await _tools.run_tools(
            self.create,
            model=model,
            messages=messages,
            tools=tools,
            max_rounds=_tools.DEFAULT_MAX_TOOL_ROUNDS if max_rounds is None else max_rounds,
            tool_timeout=tool_timeout,
            on_tool_result=on_tool_result,
            params=params,
        )

    def stream_tools(
        self,
        *,
        model: str,
        messages: Sequence[ChatCompletionMessageParam],
        tools: Sequence[FunctionTool[Any, Any] | Callable[..., Any]],
        max_rounds: int | None = None,
        tool_timeout: float | None = None,
        **params: Unpack[ToolRunParams],
    ) -> ToolRunStream:
        """`run_tools` with every request streamed: typed events as they happen.

        Same checks (before any I/O), bounds and concurrent calls as `run_tools`; asks
        for usage in each stream unless ``stream_options`` is given. See
        `anyapi_async._tool_stream`.

        Example:

        ```python
        async with client.chat.completions.stream_tools(
            model="gpt-5", messages=msgs, tools=[get_weather]
        ) as run:
            async for event in run:
                if event.type == "text.delta":
                    print(event.delta, end="")
                elif event.type == "tool_call.start":
                    print(f"[{event.name}({event.arguments})]")
            result = await run.get_final_result()
        ```
        """
        from . import _tool_stream, _tools

        return _tool_stream.stream_tools(
            self.stream,
            model=model,
            messages=messages,
            tools=tools,
            max_rounds=_tools.DEFAULT_MAX_TOOL_ROUNDS if max_rounds is None else max_rounds,
            tool_timeout=tool_timeout,
            params=params,
        )

    def batch(
        self,
        requests: Requests,
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        stop_on_error: bool = False,
        rpm: float | None = None,
        tpm: float | None = None,
        limiter: RateLimiter | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> BatchRun:
        """Run many requests with at most ``concurrency`` in flight (see the Batch jobs guide).

        ``requests`` is an iterable or async iterable of ``create()`` parameter dicts (or
        ``{"custom_id": ..., "body": {...}}`` lines), read lazily; ``concurrency`` defaults
        to 16. Results come in completion
        order, or in input order with ``ordered=True``; a failed request is a result with
        ``error`` set, unless ``stop_on_error=True`` makes the first error raise.
        ``rpm``/``tpm`` (or a shared `RateLimiter`) bound the rate; ``progress`` is a
        callback or ``True`` for a terminal bar (needs tqdm).

        Example:

        ```python
        requests = ({"model": "gpt-5", "messages": [{"role": "user", "content": q}]}
                    for q in questions)
        async with client.chat.completions.batch(requests, concurrency=32, rpm=500) as run:
            async for r in run:
                print(r.index, r.completion.choices[0].message.content if r.ok else r.error)
        ```
        """
        from ._batch import DEFAULT_CONCURRENCY, BatchRun

        if self._client is None:
            raise TypeError("batch() needs the completions of a client")
        return BatchRun(
            self._client,
            requests,
            concurrency=DEFAULT_CONCURRENCY if concurrency is None else concurrency,
            ordered=ordered,
            stop_on_error=stop_on_error,
            rpm=rpm,
            tpm=tpm,
            limiter=limiter,
            progress=progress,
        )


class Chat:
    """``client.chat``."""

    def __init__(
        self, client: Pipeline | BatchClient, batch_client: BatchClient | None = None
    ) -> None:
        self.completions = Completions(client, batch_client)


class Models:
    """``client.models``: ``await client.models.list()``, ``await client.models.retrieve(id)``."""

    def __init__(self, client: Pipeline | BatchClient) -> None:
        self._pipeline = _pipeline_of(client)

    async def list(self) -> ModelList:
        """The models the endpoint serves (``GET /models``)."""
        pipeline = self._pipeline
        observed = pipeline.shared.observers
        context = pipeline.context("GET", "/models", None, False) if observed else None
        models: ModelList = await pipeline.send("GET", "/models", None, None, ModelList, context)
        return models

    async def retrieve(self, model_id: str) -> Model:
        """One model's entry (``GET /models/{model_id}``).

        The id is sent as one path segment, percent-encoded (``openai/gpt-4o`` becomes
        ``openai%2Fgpt-4o``). Raises `NotFoundError` for a model the endpoint does not serve.
        """
        if not isinstance(model_id, str):
            raise TypeError(f"model_id must be a str, not {type(model_id).__name__}")
        if not model_id.strip():
            raise ValueError("model_id must not be empty")
        path = "/models/" + quote(model_id, safe="")
        pipeline = self._pipeline
        observed = pipeline.shared.observers
        context = pipeline.context("GET", path, None, False) if observed else None
        model: Model = await pipeline.send("GET", path, None, None, Model, context)
        return model


class CompletionsWithRawResponse:
    """``client.chat.completions.with_raw_response``: `create` returns an `APIResponse`."""

    def __init__(self, client: Pipeline | BatchClient) -> None:
        self._pipeline = _pipeline_of(client)

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[False] = False,
        **params: Unpack[CompletionCreateParams],
    ) -> APIResponse[ChatCompletion]: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[True],
        **params: Unpack[CompletionCreateParams],
    ) -> APIResponse[AsyncStream[ChatCompletionChunk]]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: bool = False,
        **params: Unpack[CompletionCreateParams],
    ) -> APIResponse[ChatCompletion] | APIResponse[AsyncStream[ChatCompletionChunk]]:
        """`Completions.create` with the same arguments; ``parse()`` gives what it returns.

        Status errors raise as they do for ``create()``. For ``stream=True`` the response
        arrives once the first event has; ``parse()`` is the `AsyncStream` (close it), and
        ``content`` is not available (use ``with_streaming_response`` for a stream's bytes).
        """
        pipeline = self._pipeline
        body, options, context = _prepare(pipeline, model, messages, stream, params)  # type: ignore[arg-type]
        if stream:
            raw: APIResponse[AsyncStream[ChatCompletionChunk]] = await pipeline.stream_raw(
                "POST", CHAT_PATH, body, options, ChatCompletionChunk, context
            )
            return raw
        response: APIResponse[ChatCompletion] = await pipeline.send_raw(
            "POST", CHAT_PATH, body, options, ChatCompletion, context
        )
        return response


class CompletionsWithStreamingResponse:
    """``client.chat.completions.with_streaming_response``: `create` is an ``async with``."""

    def __init__(self, client: Pipeline | BatchClient) -> None:
        self._pipeline = _pipeline_of(client)

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[False] = False,
        **params: Unpack[CompletionCreateParams],
    ) -> StreamedResponseManager[ChatCompletion]: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[True],
        **params: Unpack[CompletionCreateParams],
    ) -> StreamedResponseManager[AsyncStream[ChatCompletionChunk]]: ...

    def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: bool = False,
        **params: Unpack[CompletionCreateParams],
    ) -> (
        StreamedResponseManager[ChatCompletion]
        | StreamedResponseManager[AsyncStream[ChatCompletionChunk]]
    ):
        """`Completions.create` with the same arguments (checked now, before any I/O).

        Entering the block sends the request and stops at the headers (a status error
        raises there); read the body with ``iter_bytes()``, ``iter_lines()`` or
        ``await parse()`` (the `ChatCompletion`, or for ``stream=True`` the `AsyncStream`).
        Leaving the block releases the connection and the ``max_concurrency`` slot.
        """
        pipeline = self._pipeline
        body, options, context = _prepare(pipeline, model, messages, stream, params)  # type: ignore[arg-type]
        cast_to = ChatCompletionChunk if stream else ChatCompletion

        async def open_() -> Any:
            return await pipeline.open(
                "POST", CHAT_PATH, body, options, cast_to, stream=stream, context=context
            )

        return StreamedResponseManager(open_)
