"""Deterministic response content: what the server sends and what every client must rebuild.

Stdlib only, so a worker importing it loads nothing a client would not. The server turns
these dicts into bytes once at start-up; workers only need the `Expected` outcome of a route.
The shapes follow OpenAI's chat-completions responses: ``chat.completion`` objects and
``chat.completion.chunk`` events with ``stream_options={"include_usage": true}`` (every
chunk carries ``"usage": null``; a last chunk with no choices carries the usage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "CREATED",
    "MODEL",
    "ROUTES",
    "Expected",
    "Outcome",
    "Route",
    "completion_body",
    "expected",
    "stream_events",
]

CREATED = 1_732_000_000
MODEL = "gpt-4o-mini-2024-07-18"
FINGERPRINT = "fp_0ba0d124f1"
TOP_LOGPROBS = 5

# Realistic BPE-ish pieces, a few of them multi-byte UTF-8.
_PIECES = (
    " The| stream| of| tokens| arrives|,| one| piece| at| a| time|.| Each| chunk| carries| text"
    "| and| sometimes| log| probabilities| for| the| model|'s| choice| café| —| naïve| 東京| 🙂"
    "|\n\n| quick| brown| fox| jumps| over| lazy| dog| benchmark| client"
)
VOCAB = tuple(_PIECES.split("|"))


class Outcome(NamedTuple):
    """What a client rebuilt from one response: text, logprob tokens, tool calls."""

    text: str
    tokens: list[str]
    tool_calls: list[tuple[str, str, str]]


Expected = Outcome


@dataclass(frozen=True)
class Route:
    """One server response, chosen by the request's ``model`` field.

    ``chunks`` counts every event before ``[DONE]`` (role chunk, content, finish, usage).
    Paced routes write the first ``burst`` events at once, then one every ``pace_ms``.
    """

    name: str
    stream: bool
    chunks: int = 0
    tokens: int = 0
    logprobs: bool = False
    tools: bool = False
    pace_ms: float = 0.0
    burst: int = 2


ROUTES: dict[str, Route] = {
    r.name: r
    for r in (
        Route("completion", stream=False, tokens=100),
        Route("completion-logprobs", stream=False, tokens=200, logprobs=True),
        Route("stream", stream=True, chunks=1000),
        Route("stream-logprobs", stream=True, chunks=1000, logprobs=True),
        Route("stream-tools", stream=True, chunks=1000, tools=True),
        Route("stream-paced", stream=True, chunks=500, pace_ms=2.0),
        Route("stream-paced-short", stream=True, chunks=100, pace_ms=2.0),
        Route("ttfc", stream=True, chunks=8, pace_ms=1.0),
        Route("stream-concurrent", stream=True, chunks=20, pace_ms=25.0),
        # The shortest stream (role, finish and usage chunks): the fixed cost in callcount.py.
        Route("stream-3", stream=True, chunks=3),
    )
}


def _token(i: int) -> str:
    return VOCAB[(i * 7 + 3) % len(VOCAB)]


def _logprob_entry(i: int) -> dict[str, Any]:
    token = _token(i)
    top = []
    for k in range(TOP_LOGPROBS):
        alt = token if k == 0 else _token(i + 11 * k)
        top.append(
            {
                "token": alt,
                "logprob": -round(0.0001 + ((i * 37 + k * 101) % 1000) / 97.0 * (k + 1), 6),
                "bytes": list(alt.encode()),
            }
        )
    return {
        "token": token,
        "logprob": top[0]["logprob"],
        "bytes": list(token.encode()),
        "top_logprobs": top,
    }


def _tool_arguments(call: int, size: int) -> str:
    # A JSON object of realistic look, at least ``size`` characters long.
    items = []
    i = 0
    while True:
        items.append(
            f'{{"sku":"SKU-{call}{i:05d}","name":"Item {i} — {_token(i).strip() or "x"}",'
            f'"qty":{i % 7 + 1},"price":{(i * 313) % 10000 / 100}}}'
        )
        text = f'{{"order_id":"ord_{call}","currency":"EUR","items":[{",".join(items)}]}}'
        if len(text) >= size:
            return text
        i += 1


def _split(text: str, parts: int) -> list[str]:
    size, extra = divmod(len(text), parts)
    out, pos = [], 0
    for k in range(parts):
        n = size + (1 if k < extra else 0)
        out.append(text[pos : pos + n])
        pos += n
    return out


_TOOLS = (("call_Xq3vB8mK2pL9dR7tY1wZ", "create_order"), ("call_Hn5cF2jW8sQ4gT6kV0aE", "get_stock"))


def _content_count(route: Route) -> int:
    # Role chunk + content chunks + finish chunk + usage chunk = route.chunks.
    return route.chunks - 3


def expected(route: Route) -> Outcome:
    """The text, logprob tokens and tool calls a client must rebuild from ``route``."""
    if route.tools:
        per_call = (route.chunks - 4) // 2
        calls = [
            (call_id, name, _tool_arguments(k, per_call * 4))
            for k, (call_id, name) in enumerate(_TOOLS)
        ]
        return Outcome("", [], calls)
    n = route.tokens if not route.stream else _content_count(route)
    tokens = [_token(i) for i in range(n)]
    return Outcome("".join(tokens), tokens if route.logprobs else [], [])


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 38,
        "completion_tokens": completion_tokens,
        "total_tokens": 38 + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body(route: Route) -> dict[str, Any]:
    """A ``chat.completion`` object for a non-streaming route."""
    exp = expected(route)
    logprobs = None
    if route.logprobs:
        logprobs = {
            "content": [_logprob_entry(i) for i in range(route.tokens)],
            "refusal": None,
        }
    return {
        "id": f"chatcmpl-{route.name}-B9mXq2LkP7vR",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": exp.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(route.tokens),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def stream_events(route: Route) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streaming route, without ``[DONE]``."""
    head = {
        "id": f"chatcmpl-{route.name}-C4nYw8MhQ1sT",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }

    def chunk(
        delta: dict[str, Any], logprobs: Any = None, finish: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice], "usage": None}

    events: list[dict[str, Any]] = []
    if route.tools:
        exp = expected(route)
        per_call = (route.chunks - 4) // 2
        for k, (call_id, name, arguments) in enumerate(exp.tool_calls):
            header: dict[str, Any] = {
                "tool_calls": [
                    {
                        "index": k,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
            if k == 0:
                header = {"role": "assistant", "content": None, **header, "refusal": None}
            events.append(chunk(header))
            for piece in _split(arguments, per_call):
                events.append(
                    chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
                )
        finish = "tool_calls"
        completion_tokens = 2 * per_call
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        n = _content_count(route)
        for i in range(n):
            lp = {"content": [_logprob_entry(i)], "refusal": None} if route.logprobs else None
            events.append(chunk({"content": _token(i)}, lp))
        finish = "stop"
        completion_tokens = n
    events.append(chunk({}, None, finish))
    events.append({**head, "choices": [], "usage": _usage(completion_tokens)})
    assert len(events) == route.chunks, (route.name, len(events))
    return events
