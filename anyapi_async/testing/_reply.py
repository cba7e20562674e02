"""The default answer to a chat-completions request: check it, plan the reply, render it.

``parse_request`` checks the fields the generator uses and raises ``RequestError`` (a 400)
the way the OpenAI API words it. ``plan_answer`` decides each choice's tokens, tool calls
and finish reason, and refuses (``GenerationTooLarge``) a reply bigger than the server's
``max_generation``; ``completion_body`` and ``stream_chunks`` turn the plan into the JSON
body or the ``chat.completion.chunk`` objects, so both forms carry the same reply. Logprobs
entries and chunks are made as they are needed, so a slow reader of a big stream does not
hold them all.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ._generate import count_prompt_tokens, logprob_entry, reply_tokens, seed_for, text_of, tokenize
from ._request import ChatRequest
from ._schema import Budget, sample_schema

__all__ = ["Answer", "GenerationTooLarge", "completion_body", "plan_answer", "stream_chunks"]

SYSTEM_FINGERPRINT: Final = "fp_local"
_EMPTY_PARAMETERS: Final = {"type": "object", "properties": {}}
_encode = msgspec.json.encode


class GenerationTooLarge(Exception):
    """The reply would carry ``size`` generated tokens, more than ``limit``."""

    def __init__(self, size: int, limit: int, *, n: int, tokens: int, top_logprobs: int) -> None:
        super().__init__(
            f"Request too large for the local server: {n} choice(s) of {tokens:,} tokens in "
            f"all, times (1 + top_logprobs {top_logprobs}), make {size:,} generated tokens, "
            f"over its max_generation limit of {limit:,} (raise it with "
            f"LocalServer(max_generation=...) or --max-generation)"
        )
        self.size = size
        self.limit = limit


@dataclass(slots=True)
class ToolCallPlan:
    id: str
    name: str
    arguments: str
    fragments: list[str]


@dataclass(slots=True)
class ChoicePlan:
    index: int
    tokens: list[str]
    finish_reason: str
    completion_tokens: int
    tool_calls: list[ToolCallPlan] = field(default_factory=list)
    #: With logprobs: the choice's generator, positioned after its tokens were drawn.
    rng: random.Random | None = None
    top_logprobs: int = 0

    def logprob_entries(self) -> Iterator[dict[str, Any]] | None:
        """The ``logprobs.content`` entries, one per token, made on demand (None: not asked)."""
        if self.rng is None:
            return None
        rng = random.Random()
        rng.setstate(self.rng.getstate())  # a copy: every call yields the same entries
        return (logprob_entry(token, rng, self.top_logprobs) for token in self.tokens)

    @property
    def size(self) -> int:
        """Generated tokens, each top_logprobs alternative counted as one."""
        per_token = 1 + self.top_logprobs if self.rng is not None else 1
        return self.completion_tokens * per_token


@dataclass(slots=True)
class Answer:
    request: ChatRequest
    choices: list[ChoicePlan]
    prompt_tokens: int

    def usage(self) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }


def plan_answer(
    req: ChatRequest,
    *,
    server_seed: int,
    text: str | None = None,
    max_generation: int | None = None,
) -> Answer:
    """The reply to ``req``: a pure function of the request, the seeds and ``text``.

    Raises `SchemaTooLarge` when a response schema or tool schema asks for too much, and
    `GenerationTooLarge` when the reply's tokens times ``1 + top_logprobs``, over all
    choices, exceed ``max_generation`` (checked before any logprobs entry is made).
    """
    last = req.messages[-1]
    last_user: Mapping[str, Any] = next(
        (m for m in reversed(req.messages) if m.get("role") == "user"), {}
    )
    user_text = text_of(last_user.get("content"))
    tools = [] if text is not None else _chosen_tools(req, user_text, last.get("role") == "user")
    base = seed_for(server_seed, req.seed, user_text)
    choices: list[ChoicePlan] = []
    budget = Budget()  # one for the whole request, n choices included
    for index in range(req.n):
        rng = random.Random(base + index)
        if tools:
            choices.append(_tool_choice(index, tools, rng, budget))
            continue
        if text is not None:
            tokens = tokenize(text)
        elif req.response_schema is not None:
            value = sample_schema(req.response_schema, rng, budget=budget)
            tokens = tokenize(_encode(value).decode())
        else:
            tokens = reply_tokens(rng)
        tokens, finish = _cut(tokens, req.stop, req.max_tokens)
        plan = ChoicePlan(index, tokens, finish, len(tokens))
        if req.logprobs:
            plan.rng, plan.top_logprobs = rng, req.top_logprobs
        choices.append(plan)
    if max_generation is not None:
        size = sum(plan.size for plan in choices)
        if size > max_generation:
            raise GenerationTooLarge(
                size,
                max_generation,
                n=req.n,
                tokens=sum(plan.completion_tokens for plan in choices),
                top_logprobs=req.top_logprobs if req.logprobs else 0,
            )
    extra = [_encode(req.tools).decode()] if req.tools else []
    return Answer(req, choices, count_prompt_tokens(req.messages, extra))


def _chosen_tools(
    req: ChatRequest, user_text: str, user_spoke_last: bool
) -> list[Mapping[str, Any]]:
    """Which tools to call; the rule is documented in docs/testing.md."""
    if not req.tools or req.tool_choice == "none":
        return []
    if isinstance(req.tool_choice, Mapping):
        name = req.tool_choice["function"]["name"]
        return [t for t in req.tools if t["function"]["name"] == name][:1]
    if req.tool_choice == "required":
        chosen = list(req.tools)
    elif user_spoke_last:  # "auto": call the tools the user's last message names
        lowered = user_text.lower()
        chosen = [t for t in req.tools if _mentioned(t["function"]["name"], lowered)]
    else:  # "auto" after a tool result: answer in text, so agent loops end
        chosen = []
    return chosen if req.parallel_tool_calls else chosen[:1]


def _mentioned(name: str, lowered_text: str) -> bool:
    lowered = name.lower()
    return lowered in lowered_text or lowered.replace("_", " ") in lowered_text


def _tool_choice(
    index: int, tools: list[Mapping[str, Any]], rng: random.Random, budget: Budget
) -> ChoicePlan:
    calls: list[ToolCallPlan] = []
    used = 0
    for tool in tools:
        function = tool["function"]
        schema = function.get("parameters") or _EMPTY_PARAMETERS
        arguments = _encode(sample_schema(schema, rng, budget=budget)).decode()
        calls.append(
            ToolCallPlan(
                f"call_{rng.getrandbits(96):024x}",
                function["name"],
                arguments,
                _fragments(arguments, rng),
            )
        )
        used += len(tokenize(arguments)) + 4
    return ChoicePlan(index, [], "tool_calls", used, calls)


def _fragments(arguments: str, rng: random.Random) -> list[str]:
    """Arguments in pieces of 1-8 characters, at least two when there is room (like providers)."""
    pieces: list[str] = []
    start = 0
    while start < len(arguments):
        size = 1 + int(rng.random() * 8)
        if not pieces and len(arguments) > 1:
            size = min(size, len(arguments) - 1)
        pieces.append(arguments[start : start + size])
        start += size
    return pieces


def _cut(tokens: list[str], stops: tuple[str, ...], limit: int | None) -> tuple[list[str], str]:
    """Apply ``stop`` (text before the earliest stop sequence) and ``max_tokens``."""
    if stops:
        text = "".join(tokens)
        found = [pos for pos in (text.find(s) for s in stops) if pos >= 0]
        if found:
            pos = min(found)
            kept: list[str] = []
            offset = 0
            for token in tokens:
                if offset + len(token) > pos:
                    if pos > offset:
                        kept.append(token[: pos - offset])
                    break
                kept.append(token)
                offset += len(token)
            if limit is None or len(kept) < limit:
                return kept, "stop"
    if limit is not None and len(tokens) > limit:
        return tokens[:limit], "length"
    return tokens, "stop"


def completion_body(answer: Answer, *, id: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` object for a non-streaming request."""
    choices = []
    for plan in answer.choices:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if plan.tool_calls and answer.request.legacy_functions:
            call = plan.tool_calls[0]
            message["function_call"] = {"name": call.name, "arguments": call.arguments}
        elif plan.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in plan.tool_calls
            ]
        else:
            message["content"] = "".join(plan.tokens)
        choices.append(
            {
                "index": plan.index,
                "message": message,
                "logprobs": _logprobs(plan.logprob_entries()),
                "finish_reason": _finish(plan, answer.request),
            }
        )
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": answer.request.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
        "usage": answer.usage(),
    }


def _logprobs(entries: Iterator[dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if entries is None else {"content": list(entries), "refusal": None}


def stream_chunks(answer: Answer, *, id: str, created: int) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed reply, choices interleaved.

    Made one at a time as they are taken, so a stream in progress holds one chunk.
    """
    include_usage = answer.request.include_usage
    pending = [_choice_deltas(plan, answer.request) for plan in answer.choices]
    while pending:  # one delta of each unfinished choice per round, in index order
        unfinished = []
        for deltas in pending:
            delta = next(deltas, None)
            if delta is None:
                continue
            unfinished.append(deltas)
            chunk = {
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.request.model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [delta],
            }
            if include_usage:
                chunk["usage"] = None  # as OpenAI does, until the usage chunk
            yield chunk
        pending = unfinished
    if include_usage:
        yield {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answer.request.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": answer.usage(),
        }


def _finish(plan: ChoicePlan, req: ChatRequest) -> str:
    return "function_call" if plan.tool_calls and req.legacy_functions else plan.finish_reason


def _choice_deltas(plan: ChoicePlan, req: ChatRequest) -> Iterator[dict[str, Any]]:
    i = plan.index
    if plan.tool_calls and req.legacy_functions:
        call = plan.tool_calls[0]
        first = {"role": "assistant", "content": None, "refusal": None}
        yield _entry(i, first)
        yield _entry(i, {"function_call": {"name": call.name, "arguments": ""}})
        for piece in call.fragments:
            yield _entry(i, {"function_call": {"arguments": piece}})
    elif plan.tool_calls:
        first = {"role": "assistant", "content": None, "refusal": None}
        yield {"index": i, "delta": first, "logprobs": None, "finish_reason": None}
        for k, call in enumerate(plan.tool_calls):
            head = {
                "index": k,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield _entry(i, {"tool_calls": [head]})
            for piece in call.fragments:
                yield _entry(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
    else:
        first = {"role": "assistant", "content": "", "refusal": None}
        yield {"index": i, "delta": first, "logprobs": None, "finish_reason": None}
        entries = plan.logprob_entries()
        for token in plan.tokens:
            logprobs = None if entries is None else {"content": [next(entries)], "refusal": None}
            yield {
                "index": i,
                "delta": {"content": token},
                "logprobs": logprobs,
                "finish_reason": None,
            }
    yield {"index": i, "delta": {}, "logprobs": None, "finish_reason": _finish(plan, req)}


def _entry(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
