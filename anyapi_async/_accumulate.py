"""Folding stream chunks into a `ChatCompletion`: pure, one chunk in, a snapshot out.

Text pieces are kept in lists and joined once, so accumulation is linear in the stream
length. Tool-call fragments are merged by ``index`` with the tolerance real servers need:
no ``index`` at all (a fragment with a new id starts a new call, one without continues the
last), indexes starting at 1, several fragments for one index in a single delta, and the
id and name repeated in every fragment (a repeated name is not appended again).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

import msgspec

from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    ChatCompletionTokenLogprob,
    Choice,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChoiceLogprobs,
    CompletionUsage,
    FunctionCall,
    keep_response,
    kept_body,
)

__all__ = ["ChunkAccumulator", "ToolCallState", "log_tool_calls", "tool_calls"]

# A chunk's top-level members, each kept as its bytes: reading the few chunks whose extras
# the final completion keeps costs a scan of them, not a decode of every value.
_MEMBERS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
# Top-level names the accumulator rebuilds itself; any other member of a chunk is an extra.
_NAMED: Final = frozenset(ChatCompletion.__struct_fields__) | frozenset(
    ChatCompletionChunk.__struct_fields__
)


def _merge_name(current: str | None, piece: str | None) -> str | None:
    if not piece:
        return current
    if not current or piece.startswith(current):
        # First fragment, or a server that repeats the full (or growing) name each time.
        return piece
    return current + piece


class ToolCallState:
    """One tool call being merged from its fragments."""

    __slots__ = ("arguments", "id", "index", "name", "type")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []

    def build(self) -> ChatCompletionMessageToolCall:
        return ChatCompletionMessageToolCall(
            id=self.id or "",
            type=self.type or "function",
            function=FunctionCall(name=self.name or "", arguments="".join(self.arguments)),
        )


class _ChoiceState:
    __slots__ = (
        "by_index",
        "content",
        "finish_reason",
        "function_args",
        "function_name",
        "index",
        "logprobs",
        "reasoning",
        "reasoning_content",
        "refusal",
        "refusal_logprobs",
        "role",
        "tool_calls",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.reasoning_content: list[str] = []
        self.tool_calls: list[ToolCallState] = []
        self.by_index: dict[int, ToolCallState] = {}
        self.function_name: str | None = None
        self.function_args: list[str] | None = None
        self.logprobs: list[ChatCompletionTokenLogprob] | None = None
        self.refusal_logprobs: list[ChatCompletionTokenLogprob] | None = None
        self.finish_reason: str | None = None

    def add_tool_call(self, fragment: ChoiceDeltaToolCall) -> ToolCallState:
        """Merge one tool-call fragment into its call (found or started); return that call."""
        calls = self.tool_calls
        index = fragment.index
        # Without an index, a fragment continues the last call unless it brings a new id.
        call = self.by_index.get(index) if index is not None else (calls[-1] if calls else None)
        if call is None or (fragment.id and call.id and fragment.id != call.id):
            # None yet, or a new id where a call is: also a server that numbers every call 0.
            call = self._new_call(len(calls) if index is None else index)
        if fragment.id and not call.id:
            call.id = fragment.id
        if fragment.type and not call.type:
            call.type = fragment.type
        function = fragment.function
        if function is not None:
            call.name = _merge_name(call.name, function.name)
            if function.arguments:
                call.arguments.append(function.arguments)
        return call

    def _new_call(self, index: int) -> ToolCallState:
        call = ToolCallState(index)
        self.tool_calls.append(call)
        self.by_index[index] = call
        return call

    def add_function_call(self, fc: ChoiceDeltaFunctionCall) -> None:
        """Merge a legacy ``function_call`` fragment."""
        self.function_name = _merge_name(self.function_name, fc.name)
        if self.function_args is None:
            self.function_args = []
        if fc.arguments:
            self.function_args.append(fc.arguments)

    def build(self) -> Choice:
        tool_calls = [c.build() for c in self.tool_calls] or None
        function_call = None
        if self.function_args is not None or self.function_name is not None:
            function_call = FunctionCall(
                name=self.function_name or "", arguments="".join(self.function_args or ())
            )
        logprobs = None
        if self.logprobs is not None or self.refusal_logprobs is not None:
            logprobs = ChoiceLogprobs(content=self.logprobs, refusal=self.refusal_logprobs)
        message = ChatCompletionMessage(
            role=self.role or "assistant",
            content="".join(self.content) if self.content or not tool_calls else None,
            refusal="".join(self.refusal) if self.refusal else None,
            tool_calls=tool_calls,
            function_call=function_call,
            reasoning_content="".join(self.reasoning_content) if self.reasoning_content else None,
            reasoning="".join(self.reasoning) if self.reasoning else None,
        )
        return Choice(
            index=self.index, message=message, finish_reason=self.finish_reason, logprobs=logprobs
        )


def _logprob_entries(entries: list[ChatCompletionTokenLogprob] | None) -> Any:
    if entries is None:
        return None
    return [
        {
            "token": e.token,
            "logprob": e.logprob,
            "bytes": e.bytes,
            "top_logprobs": [
                {"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in e.top_logprobs
            ],
        }
        for e in entries
    ]


def _choice_body(choice: Choice) -> dict[str, Any]:
    """``choice`` as a non-streamed body has it: every named field, nulls included."""
    m = choice.message
    message: dict[str, Any] = {"role": m.role, "content": m.content, "refusal": m.refusal}
    if m.tool_calls is not None:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": c.type,
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in m.tool_calls
        ]
    if m.function_call is not None:
        message["function_call"] = {
            "name": m.function_call.name,
            "arguments": m.function_call.arguments,
        }
    if m.reasoning_content is not None:
        message["reasoning_content"] = m.reasoning_content
    if m.reasoning is not None:
        message["reasoning"] = m.reasoning
    logprobs = choice.logprobs
    return {
        "index": choice.index,
        "message": message,
        "logprobs": None
        if logprobs is None
        else {
            "content": _logprob_entries(logprobs.content),
            "refusal": _logprob_entries(logprobs.refusal),
        },
        "finish_reason": choice.finish_reason,
    }


class ChunkAccumulator:
    """Builds the final `ChatCompletion` of a stream from its chunks.

    Example:

    ```python
    acc = ChunkAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    completion = acc.completion()
    ```
    """

    __slots__ = (
        "_call_log",
        "_choices",
        "_first",
        "_last",
        "_marked",
        "_usage_chunk",
        "created",
        "id",
        "model",
        "service_tier",
        "system_fingerprint",
        "usage",
    )

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self._call_log: deque[ToolCallState] | None = None
        # The chunks whose extras the completion's to_dict() keeps (a gateway's
        # ``provider``, ``citations``...): the first, those ending a choice, the last that
        # brought usage, and the last; kept as references, read only by completion().
        self._first: ChatCompletionChunk | None = None
        self._last: ChatCompletionChunk | None = None
        self._marked: dict[int, ChatCompletionChunk] = {}
        self._usage_chunk: ChatCompletionChunk | None = None
        self.id = ""
        self.model = ""
        self.created = 0
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        self.usage: CompletionUsage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Fold one chunk in."""
        # Once per chunk in every stream helper: the steps that come on (nearly) every chunk
        # stay inline, the rarer ones are calls (one more call per chunk costs ~8% of a fold).
        if self._first is None:
            self._first = chunk
        self._last = chunk
        if not self.id:
            self.id = chunk.id
            self.created = chunk.created
        if not self.model:
            self.model = chunk.model
        if chunk.system_fingerprint is not None:
            self.system_fingerprint = chunk.system_fingerprint
        if chunk.service_tier is not None:
            self.service_tier = chunk.service_tier
        if chunk.usage is not None:
            # Some providers repeat a running total on every chunk; the last one wins.
            self.usage = chunk.usage
            self._usage_chunk = chunk
        states = self._choices
        for choice in chunk.choices:
            state = states.get(choice.index)
            if state is None:
                state = states[choice.index] = _ChoiceState(choice.index)
            delta = choice.delta
            if delta.content is not None:
                state.content.append(delta.content)
            if delta.role is not None and state.role is None:
                state.role = delta.role
            if delta.tool_calls is not None:
                log = self._call_log
                for fragment in delta.tool_calls:
                    call = state.add_tool_call(fragment)
                    if log is not None:
                        log.append(call)
            if delta.refusal is not None:
                state.refusal.append(delta.refusal)
            if delta.reasoning_content is not None:
                state.reasoning_content.append(delta.reasoning_content)
            if delta.reasoning is not None:
                state.reasoning.append(delta.reasoning)
            if delta.function_call is not None:
                state.add_function_call(delta.function_call)
            logprobs = choice.logprobs
            if logprobs is not None:  # inline: a logprobs stream has some on every chunk
                if logprobs.content is not None:
                    if state.logprobs is None:
                        state.logprobs = []
                    state.logprobs.extend(logprobs.content)
                if logprobs.refusal is not None:
                    if state.refusal_logprobs is None:
                        state.refusal_logprobs = []
                    state.refusal_logprobs.extend(logprobs.refusal)
            if choice.finish_reason is not None:
                state.finish_reason = choice.finish_reason
                self._marked[choice.index] = chunk  # one per choice, however many end it

    def text(self, index: int = 0) -> str:
        """The content of choice ``index`` so far."""
        state = self._choices.get(index)
        return "".join(state.content) if state is not None else ""

    def completion(self) -> ChatCompletion:
        """A snapshot of everything folded in so far, as a ``chat.completion``.

        Its ``to_dict()`` is the body a non-streamed request would have received, as well
        as the chunks tell it: every named field (``choices[i].index``, a null ``refusal``
        or ``logprobs``), ``usage`` as the chunk that brought it had it, and the top-level
        members the library does not name (a gateway's ``provider``) from the first chunk,
        the chunks that end a choice, the last one with usage and the last one (later
        ones win).
        """
        completion = ChatCompletion(
            id=self.id,
            object="chat.completion",
            created=self.created,
            model=self.model,
            choices=[self._choices[i].build() for i in sorted(self._choices)],
            usage=self.usage,
            system_fingerprint=self.system_fingerprint,
            service_tier=self.service_tier,
        )
        keep_response(completion, self._body(completion))
        return completion

    def _body(self, completion: ChatCompletion) -> bytes:
        """The JSON `completion` stands for: its fields, and what the chunks added."""
        extras: dict[str, msgspec.Raw] = {}
        present: set[str] = set()
        usage: Any = completion.usage
        samples = [self._first, *self._marked.values(), self._usage_chunk, self._last]
        seen: set[int] = set()
        for chunk in samples:
            if chunk is None or id(chunk) in seen:
                continue
            seen.add(id(chunk))
            raw = kept_body(chunk)
            if raw is None:
                continue  # built by hand: only its fields are known
            try:
                members = _MEMBERS.decode(raw)
            except msgspec.DecodeError:  # pragma: no cover - it was decoded from these bytes
                continue
            present.update(members)
            for name, value in members.items():
                if name not in _NAMED:
                    extras[name] = value
            if chunk is self._usage_chunk and "usage" in members:
                usage = members["usage"]  # as received: its extras (``cost``...) included
        body: dict[str, Any] = {
            "id": completion.id,
            "object": completion.object,
            "created": completion.created,
            "model": completion.model,
            "choices": [_choice_body(c) for c in completion.choices],
        }
        if usage is not None:
            body["usage"] = usage
        for name in ("system_fingerprint", "service_tier"):
            value = getattr(completion, name)
            if value is not None or name in present:
                body[name] = value
        body.update(extras)
        return msgspec.json.encode(body)


def log_tool_calls(acc: ChunkAccumulator) -> deque[ToolCallState]:
    """A queue that ``acc`` fills, from now on, with the call each tool-call fragment it
    folds is merged into (choices and fragments in chunk order); a new one replaces it.

    `ChatCompletionStream.events` takes one call off per fragment, so its events name the
    call the fold chose instead of working it out again. (Left by an events() loop that
    stopped early, it only grows by one entry per fragment of the rest of the stream.)
    """
    log: deque[ToolCallState] = deque()
    acc._call_log = log
    return log


def tool_calls(acc: ChunkAccumulator, choice_index: int) -> list[ToolCallState]:
    """Choice ``choice_index``'s tool calls so far, in order."""
    state = acc._choices.get(choice_index)
    return state.tool_calls if state is not None else []
