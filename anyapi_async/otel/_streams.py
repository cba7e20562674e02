"""Stream watching: a stream's span follows its chunks and ends however the stream does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from .._accumulate import ChunkAccumulator
from . import _content as content
from ._attributes import response_attributes, usage_attributes
from ._semconv import (
    ANYAPI_ATTEMPTS,
    ANYAPI_REQUEST_ID,
    ANYAPI_STREAM_CHUNKS,
    ANYAPI_STREAM_END,
    GEN_AI_RESPONSE_FINISH_REASONS,
)

if TYPE_CHECKING:
    from .._streaming import AsyncStream
    from .._types import ChatCompletionChunk, CompletionUsage
    from ._spans import Call

__all__ = ["StreamWatcher"]


class StreamWatcher:
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

    def __init__(self, call: Call, stream: AsyncStream[Any]) -> None:
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
                response_attributes(last, attrs, call.model.endpoint.openai)
            if self.reasons:
                attrs[GEN_AI_RESPONSE_FINISH_REASONS] = [
                    self.reasons[i] for i in sorted(self.reasons)
                ]
            if self.usage is not None:
                usage_attributes(self.usage, attrs)
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
            output = content.output_messages(self.acc.completion(), finish_reason=not call.t.latest)
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
