"""The user-level work every client does with what it receives, written once for all.

Chunks and completions of the floor, anyapi_async and openai share attribute names
(``choices``, ``delta.content``, ``logprobs.content[i].token``, ``tool_calls[k].function``),
so the same code collects from each and no client gets a cheaper loop than another.
"""

from __future__ import annotations

import time
from typing import Any

from .payloads import Outcome

__all__ = ["Collector", "completion_outcome"]


class Collector:
    """Collects choice 0's text, its logprob tokens and its tool calls from chunks."""

    __slots__ = ("calls", "first", "texts", "tokens")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.tokens: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.first = 0.0

    def add(self, chunk: Any) -> None:
        if not self.first:
            self.first = time.perf_counter()
        for choice in chunk.choices:
            delta = choice.delta
            content = delta.content
            if content:
                self.texts.append(content)
            logprobs = choice.logprobs
            if logprobs is not None and logprobs.content:
                self.tokens.extend([entry.token for entry in logprobs.content])
            tool_calls = delta.tool_calls
            if tool_calls:
                for call in tool_calls:
                    entry = self.calls.get(call.index)
                    function = call.function
                    if entry is None:
                        name = function.name if function is not None else None
                        entry = self.calls[call.index] = [call.id or "", name or "", []]
                    if function is not None and function.arguments:
                        entry[2].append(function.arguments)

    def outcome(self) -> Outcome:
        calls = [(c[0], c[1], "".join(c[2])) for _, c in sorted(self.calls.items())]
        return Outcome("".join(self.texts), self.tokens, calls)


def completion_outcome(completion: Any) -> Outcome:
    """The outcome of a non-streaming completion (or a helper's final completion)."""
    choice = completion.choices[0]
    message = choice.message
    tokens: list[str] = []
    if choice.logprobs is not None and choice.logprobs.content:
        tokens = [entry.token for entry in choice.logprobs.content]
    calls = [
        (call.id, call.function.name, call.function.arguments) for call in message.tool_calls or ()
    ]
    return Outcome(message.content or "", tokens, calls)
