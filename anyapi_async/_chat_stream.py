"""`ChatCompletionStream`: text, logprobs and typed events over a stream, and its final result."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, Union

from ._accumulate import ChunkAccumulator
from ._streaming import AsyncStream, raise_if_incomplete
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionTokenLogprob,
    keep_response,
)

__all__ = [
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
]


class ChunkEvent:
    """Every chunk, as it arrived."""

    __slots__ = ("chunk",)
    type: Literal["chunk"] = "chunk"

    def __init__(self, chunk: ChatCompletionChunk) -> None:
        self.chunk = chunk


class ContentDeltaEvent:
    """A piece of a choice's content."""

    __slots__ = ("choice_index", "delta")
    type: Literal["content.delta"] = "content.delta"

    def __init__(self, choice_index: int, delta: str) -> None:
        self.choice_index = choice_index
        self.delta = delta


class RefusalDeltaEvent:
    """A piece of a choice's refusal."""

    __slots__ = ("choice_index", "delta")
    type: Literal["refusal.delta"] = "refusal.delta"

    def __init__(self, choice_index: int, delta: str) -> None:
        self.choice_index = choice_index
        self.delta = delta


class ReasoningDeltaEvent:
    """A piece of reasoning text (``reasoning_content`` or ``reasoning``)."""

    __slots__ = ("choice_index", "delta")
    type: Literal["reasoning.delta"] = "reasoning.delta"

    def __init__(self, choice_index: int, delta: str) -> None:
        self.choice_index = choice_index
        self.delta = delta


class LogprobsEvent:
    """Logprob entries of content tokens that just arrived."""

    __slots__ = ("choice_index", "entries")
    type: Literal["logprobs.content.delta"] = "logprobs.content.delta"

    def __init__(self, choice_index: int, entries: list[ChatCompletionTokenLogprob]) -> None:
        self.choice_index = choice_index
        self.entries = entries


class ToolCallArgumentsDeltaEvent:
    """A fragment of a tool call's JSON arguments."""

    __slots__ = ("choice_index", "delta", "index", "name")
    type: Literal["tool_calls.function.arguments.delta"] = "tool_calls.function.arguments.delta"

    def __init__(self, choice_index: int, index: int, name: str, delta: str) -> None:
        self.choice_index = choice_index
        self.index = index
        self.name = name
        self.delta = delta


class ToolCallDoneEvent:
    """A tool call is complete: its id, name and whole arguments."""

    __slots__ = ("arguments", "choice_index", "id", "index", "name")
    type: Literal["tool_calls.function.arguments.done"] = "tool_calls.function.arguments.done"

    def __init__(self, choice_index: int, index: int, id: str, name: str, arguments: str) -> None:
        self.choice_index = choice_index
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments


class ContentDoneEvent:
    """A choice finished; ``content`` is its whole text."""

    __slots__ = ("choice_index", "content", "finish_reason")
    type: Literal["content.done"] = "content.done"

    def __init__(self, choice_index: int, content: str, finish_reason: str) -> None:
        self.choice_index = choice_index
        self.content = content
        self.finish_reason = finish_reason


StreamEvent = Union[
    ChunkEvent,
    ContentDeltaEvent,
    RefusalDeltaEvent,
    ReasoningDeltaEvent,
    LogprobsEvent,
    ToolCallArgumentsDeltaEvent,
    ToolCallDoneEvent,
    ContentDoneEvent,
]


class ChatCompletionStream:
    """A stream with helpers; every helper also folds chunks into the final completion.

    Helpers share one underlying stream: start with `text_deltas` and finish with
    `get_final_completion`, which reads whatever is left. The final results raise when
    the stream did not end normally (the error it broke with, or `APIConnectionError`
    when it was closed first): a partial answer never passes for the whole one.
    """

    def __init__(self, stream: AsyncStream[ChatCompletionChunk]) -> None:
        self._stream = stream
        self._acc = ChunkAccumulator()
        self._final: ChatCompletion | None = None
        self._chunks: AsyncIterator[ChatCompletionChunk] | None = None

    def _iter(self) -> AsyncIterator[ChatCompletionChunk]:
        # One iterator for every helper, so a helper left early leaves the rest to the
        # next one (a loop straight over the AsyncStream would close it when left).
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = self._stream.__aiter__()
        return chunks

    @property
    def stream(self) -> AsyncStream[ChatCompletionChunk]:
        """The underlying `AsyncStream` (headers, request id, ``http`` info)."""
        return self._stream

    @property
    def accumulator(self) -> ChunkAccumulator:
        """Everything received so far (``accumulator.completion()`` is a snapshot)."""
        return self._acc

    async def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        add = self._acc.add
        async for chunk in self._iter():
            add(chunk)
            yield chunk

    async def text_deltas(self) -> AsyncIterator[str]:
        """Pieces of choice 0's content, as they arrive."""
        add = self._acc.add
        async for chunk in self._iter():
            add(chunk)
            for choice in chunk.choices:
                if choice.index == 0:
                    text = choice.delta.content
                    if text:
                        yield text

    async def logprobs(self) -> AsyncIterator[ChatCompletionTokenLogprob]:
        """Logprob entries (with their top alternatives) of choice 0's tokens, live."""
        add = self._acc.add
        async for chunk in self._iter():
            add(chunk)
            for choice in chunk.choices:
                if choice.index == 0 and choice.logprobs is not None and choice.logprobs.content:
                    for entry in choice.logprobs.content:
                        yield entry

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Typed events for content, refusal, reasoning, logprobs and tool calls."""
        from ._accumulate import log_tool_calls, tool_calls

        merged = log_tool_calls(self._acc)  # the call each tool-call fragment was folded into
        acc = self._acc
        async for chunk in self._iter():
            acc.add(chunk)
            yield ChunkEvent(chunk)
            for choice in chunk.choices:
                i = choice.index
                delta = choice.delta
                if delta.content:
                    yield ContentDeltaEvent(i, delta.content)
                if delta.refusal:
                    yield RefusalDeltaEvent(i, delta.refusal)
                reasoning = delta.reasoning_content or delta.reasoning
                if reasoning:
                    yield ReasoningDeltaEvent(i, reasoning)
                if choice.logprobs is not None and choice.logprobs.content:
                    yield LogprobsEvent(i, choice.logprobs.content)
                if delta.tool_calls:
                    for fragment in delta.tool_calls:
                        call = merged.popleft()  # as the fold chose it, not worked out again
                        args = fragment.function.arguments if fragment.function else None
                        if args:
                            yield ToolCallArgumentsDeltaEvent(i, call.index, call.name or "", args)
                if choice.finish_reason is not None:
                    for call in tool_calls(acc, i):
                        yield ToolCallDoneEvent(
                            i, call.index, call.id or "", call.name or "", "".join(call.arguments)
                        )
                    yield ContentDoneEvent(i, acc.text(i), choice.finish_reason)

    async def until_done(self) -> None:
        """Read the rest of the stream; raise if it did not end normally."""
        add = self._acc.add
        async for chunk in self._iter():
            add(chunk)
        raise_if_incomplete(self._stream)

    async def get_final_completion(self) -> ChatCompletion:
        """Read what is left and return the completion built from every chunk."""
        if self._final is None:
            await self.until_done()
            final = self._acc.completion()
            keep_response(final, http=self._stream.http)
            self._final = final
        return self._final

    async def get_final_text(self) -> str:
        """Read what is left and return choice 0's whole content."""
        await self.until_done()
        return self._acc.text(0)

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        await self._stream.close()
        await self._close_iterator()

    async def _close_iterator(self) -> None:
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            await chunks.aclose()  # type: ignore[attr-defined]


class ChatCompletionStreamManager:
    """What ``client.chat.completions.stream(...)`` returns: use it with ``async with``."""

    def __init__(self, open_stream: Callable[[], Awaitable[AsyncStream[ChatCompletionChunk]]]):
        self._open = open_stream
        self._stream: ChatCompletionStream | None = None

    async def __aenter__(self) -> ChatCompletionStream:
        self._stream = ChatCompletionStream(await self._open())
        return self._stream

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            await self._stream.stream.__aexit__(*exc_info)
            await self._stream._close_iterator()
