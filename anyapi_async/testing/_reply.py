"""The default answer to a chat-completions request: check it, plan the reply, render it.

``parse_request`` checks the fields the generator uses and raises ``RequestError`` (a 400)
the way the OpenAI API words it. ``plan_answer`` decides each choice's tokens, tool calls
and finish reason; ``completion_body`` and ``stream_chunks`` turn the plan into the JSON
body or the list of ``chat.completion.chunk`` objects, so both forms carry the same reply.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ._generate import count_prompt_tokens, logprob_entry, reply_tokens, seed_for, text_of, tokenize
from ._request import ChatRequest
from ._schema import Budget, sample_schema

__all__ = ["Answer", "completion_body", "plan_answer", "stream_chunks"]

SYSTEM_FINGERPRINT: Final = "fp_local"
_EMPTY_PARAMETERS: Final = {"type": "object", "properties": {}}
_encode = msgspec.json.encode


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
    logprobs: list[dict[str, Any]] | None
    finish_reason: str
    completion_tokens: int
    tool_calls: list[ToolCallPlan] = field(default_factory=list)


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


def plan_answer(req: ChatRequest, *, server_seed: int, text: str | None = None) -> Answer:
    """The reply to ``req``: a pure function of the request, the seeds and ``text``.

    Raises `SchemaTooLarge` when a response schema or tool schema asks for too much.
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
        entries = (
            [logprob_entry(t, rng, req.top_logprobs) for t in tokens] if req.logprobs else None
        )
        choices.append(ChoicePlan(index, tokens, entries, finish, len(tokens)))
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
    return ChoicePlan(index, [], None, "tool_calls", used, calls)


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
                "logprobs": _logprobs(plan.logprobs),
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


def _logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if entries is None else {"content": entries, "refusal": None}


def stream_chunks(answer: Answer, *, id: str, created: int) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed reply, choices interleaved."""
    include_usage = answer.request.include_usage
    per_choice = [_choice_deltas(plan, answer.request) for plan in answer.choices]
    chunks: list[dict[str, Any]] = []
    for step in range(max(len(d) for d in per_choice)):
        for deltas in per_choice:
            if step < len(deltas):
                chunk = {
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": answer.request.model,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [deltas[step]],
                }
                if include_usage:
                    chunk["usage"] = None  # as OpenAI does, until the usage chunk
                chunks.append(chunk)
    if include_usage:
        chunks.append(
            {
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.request.model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [],
                "usage": answer.usage(),
            }
        )
    return chunks


def _finish(plan: ChoicePlan, req: ChatRequest) -> str:
    return "function_call" if plan.tool_calls and req.legacy_functions else plan.finish_reason


def _choice_deltas(plan: ChoicePlan, req: ChatRequest) -> list[dict[str, Any]]:
    i = plan.index
    out: list[dict[str, Any]] = []
    if plan.tool_calls and req.legacy_functions:
        call = plan.tool_calls[0]
        first = {"role": "assistant", "content": None, "refusal": None}
        out.append(_entry(i, first))
        out.append(_entry(i, {"function_call": {"name": call.name, "arguments": ""}}))
        out.extend(_entry(i, {"function_call": {"arguments": p}}) for p in call.fragments)
    elif plan.tool_calls:
        first = {"role": "assistant", "content": None, "refusal": None}
        out.append({"index": i, "delta": first, "logprobs": None, "finish_reason": None})
        for k, call in enumerate(plan.tool_calls):
            head = {
                "index": k,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            out.append(_entry(i, {"tool_calls": [head]}))
            for piece in call.fragments:
                out.append(
                    _entry(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
                )
    else:
        first = {"role": "assistant", "content": "", "refusal": None}
        out.append({"index": i, "delta": first, "logprobs": None, "finish_reason": None})
        entries = plan.logprobs
        for n, token in enumerate(plan.tokens):
            logprobs = None if entries is None else {"content": [entries[n]], "refusal": None}
            out.append(
                {
                    "index": i,
                    "delta": {"content": token},
                    "logprobs": logprobs,
                    "finish_reason": None,
                }
            )
    out.append({"index": i, "delta": {}, "logprobs": None, "finish_reason": _finish(plan, req)})
    return out


def _entry(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
