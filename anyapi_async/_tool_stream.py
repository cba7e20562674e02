"""The streaming tool runner: `run_tools` as an async iterator of typed events.

``client.chat.completions.stream_tools(...)`` makes the same requests as ``run_tools()``
(same checks, bounds and concurrent tool calls) but streams each one, so an agent's
answer appears as it is written. Per round it yields:

1. `ToolRunTextDeltaEvent` for each piece of the model's text (often none in a round
   that calls tools);
2. `ToolRunRoundEvent` with the round's completion, once its stream ended;
3. when the model asked for tools, one `ToolCallStartEvent` per call (all calls start
   together), then a `ToolCallResultEvent` or `ToolCallErrorEvent` per call as each one
   finishes (the ``tool`` messages still go to the model in call order);

and, after the round that answers without tools, `ToolRunDoneEvent` with the
`ToolRunResult`. Leaving ``async with`` (after a ``break``, an exception or a
cancellation) closes the round's stream and cancels tools still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

from ._messages import build_body
from ._tools import (
    FunctionTool,
    ToolCallResult,
    ToolRun,
    ToolRunParams,
    ToolRunResult,
)
from ._types import ChatCompletion, ChatCompletionMessageParam

if TYPE_CHECKING:
    from ._chat_stream import ChatCompletionStreamManager

#: Starts one streamed request: ``client.chat.completions.stream``.
OpenStream = Callable[..., "ChatCompletionStreamManager"]

__all__ = [
    "ToolCallErrorEvent",
    "ToolCallResultEvent",
    "ToolCallStartEvent",
    "ToolRunDoneEvent",
    "ToolRunEvent",
    "ToolRunRoundEvent",
    "ToolRunStream",
    "ToolRunTextDeltaEvent",
]


class ToolRunTextDeltaEvent:
    """A piece of the model's text in round ``round``."""

    __slots__ = ("delta", "round")
    type: Literal["text.delta"] = "text.delta"

    def __init__(self, round: int, delta: str) -> None:
        self.round = round
        self.delta = delta

    def __repr__(self) -> str:
        return f"ToolRunTextDeltaEvent(round={self.round}, delta={self.delta!r})"


class ToolRunRoundEvent:
    """Round ``round``'s request finished streaming; ``completion`` is its whole answer."""

    __slots__ = ("completion", "round")
    type: Literal["round.done"] = "round.done"

    def __init__(self, round: int, completion: ChatCompletion) -> None:
        self.round = round
        self.completion = completion

    def __repr__(self) -> str:
        return f"ToolRunRoundEvent(round={self.round})"


class ToolCallStartEvent:
    """A tool call is starting: its id, the tool's name and the model's JSON arguments."""

    __slots__ = ("arguments", "id", "name", "round")
    type: Literal["tool_call.start"] = "tool_call.start"

    def __init__(self, round: int, id: str, name: str, arguments: str) -> None:
        self.round = round
        self.id = id
        self.name = name
        self.arguments = arguments

    def __repr__(self) -> str:
        return f"ToolCallStartEvent(round={self.round}, {self.name}({self.arguments}))"


class ToolCallResultEvent:
    """A tool call returned; ``result.value`` is what the function returned."""

    __slots__ = ("result", "round")
    type: Literal["tool_call.result"] = "tool_call.result"

    def __init__(self, round: int, result: ToolCallResult) -> None:
        self.round = round
        self.result = result

    def __repr__(self) -> str:
        return f"ToolCallResultEvent(round={self.round}, {self.result!r})"


class ToolCallErrorEvent:
    """A tool call failed (bad arguments, an exception, a timeout, an unknown tool).

    ``result.error`` says why; the model receives ``result.output`` and may react to it.
    """

    __slots__ = ("result", "round")
    type: Literal["tool_call.error"] = "tool_call.error"

    def __init__(self, round: int, result: ToolCallResult) -> None:
        self.round = round
        self.result = result

    def __repr__(self) -> str:
        return f"ToolCallErrorEvent(round={self.round}, {self.result!r})"


class ToolRunDoneEvent:
    """The model answered without tools: ``result`` is the run's `ToolRunResult`."""

    __slots__ = ("result",)
    type: Literal["run.done"] = "run.done"

    def __init__(self, result: ToolRunResult) -> None:
        self.result = result

    def __repr__(self) -> str:
        return f"ToolRunDoneEvent({self.result!r})"


ToolRunEvent = Union[
    ToolRunTextDeltaEvent,
    ToolRunRoundEvent,
    ToolCallStartEvent,
    ToolCallResultEvent,
    ToolCallErrorEvent,
    ToolRunDoneEvent,
]


class ToolRunStream:
    """What ``client.chat.completions.stream_tools(...)`` returns.

    Use it with ``async with`` and iterate it for `ToolRunEvent` objects; leaving the
    block closes the open stream and cancels running tools. `get_final_result` reads
    whatever is left and returns the `ToolRunResult`. Raises `ToolRoundsExceededError`
    (after the last round's `ToolRunRoundEvent`) when the model still wants tools after
    ``max_rounds`` requests, and the API's errors as they happen.
    """

    def __init__(self, stream: OpenStream, model: str, run: ToolRun) -> None:
        self._stream = stream
        self._model = model
        self._run = run
        self._result: ToolRunResult | None = None
        self._events = self._generate()

    async def __aenter__(self) -> ToolRunStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[ToolRunEvent]:
        return self._events

    @property
    def result(self) -> ToolRunResult | None:
        """The run's result once `ToolRunDoneEvent` was yielded, else ``None``."""
        return self._result

    async def get_final_result(self) -> ToolRunResult:
        """Read the rest of the run (the events are dropped) and return its result."""
        async for _ in self._events:
            pass
        if self._result is None:
            raise RuntimeError("The tool run was closed before it ended")
        return self._result

    async def aclose(self) -> None:
        """Close the open stream and cancel running tools (idempotent)."""
        await self._events.aclose()

    async def _generate(self) -> AsyncGenerator[ToolRunEvent, None]:
        run = self._run
        stream = self._stream
        try:
            for round_ in range(1, run.max_rounds + 1):
                request = run.request(round_)
                async with stream(model=self._model, messages=run.history, **request) as s:
                    async for chunk in s:
                        for choice in chunk.choices:
                            if choice.index == 0 and choice.delta.content:
                                yield ToolRunTextDeltaEvent(round_, choice.delta.content)
                    completion = await s.get_final_completion()
                yield ToolRunRoundEvent(round_, completion)
                calls = run.answer(completion, round_)  # raises past max_rounds
                if not calls:
                    self._result = run.result(completion, round_)
                    yield ToolRunDoneEvent(self._result)
                    return
                for call_id, call in calls:
                    yield ToolCallStartEvent(
                        round_, call_id, call.function.name, call.function.arguments
                    )
                tasks = [asyncio.ensure_future(run.execute(i, c, round_)) for i, c in calls]
                try:
                    for finished in asyncio.as_completed(tasks):
                        result = await finished
                        if result.ok:
                            yield ToolCallResultEvent(round_, result)
                        else:
                            yield ToolCallErrorEvent(round_, result)
                finally:
                    # A break or cancellation mid-round: no tool keeps running unobserved.
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                for task in tasks:
                    run.add_result(task.result())

        finally:
            run.close()  # the run's tool threads go; a stuck one is not waited for

def stream_tools(
    stream: OpenStream,
    *,
    model: str,
    messages: Sequence[ChatCompletionMessageParam],
    tools: Sequence[FunctionTool[Any, Any] | Callable[..., Any]],
    max_rounds: int,
    tool_timeout: float | None,
    params: ToolRunParams,
) -> ToolRunStream:
    """What ``client.chat.completions.stream_tools()`` does: checks now, requests later
    (each round through ``stream``)."""
    params.setdefault("stream_options", {"include_usage": True})
    run = ToolRun(
        messages=messages,
        tools=tools,
        max_rounds=max_rounds,
        tool_timeout=tool_timeout,
        params=params,
    )
    # The first request's body, built and dropped: a bad model or parameter fails here,
    # before any I/O, rather than on the first iteration.
    build_body(model, run.history, True, run.request(1))
    return ToolRunStream(stream, model, run)
