"""Folding chunks into a final completion, with the tool-call quirks of real servers."""

from __future__ import annotations

from typing import Any

import msgspec

from anyapi_async import (
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkAccumulator,
    ChunkChoice,
)
from anyapi_async._types import keep_response


def chunk(choices: list[dict[str, Any]], **extra: Any) -> ChatCompletionChunk:
    body = {"id": "c1", "model": "m", "created": 5, "choices": choices, **extra}
    return msgspec.convert(body, ChatCompletionChunk)


def fold(chunks: list[ChatCompletionChunk]) -> Any:
    acc = ChunkAccumulator()
    for c in chunks:
        acc.add(c)
    return acc.completion()


def tc(**kw: Any) -> dict[str, Any]:
    return {"index": 0, "delta": {"tool_calls": [kw]}}


def test_text_n2_usage_and_fingerprint() -> None:
    """Interleaved choices, an empty-choices usage chunk and system_fingerprint."""
    final = fold(
        [
            chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
            chunk([{"index": 1, "delta": {"role": "assistant", "content": "B"}}]),
            chunk([{"index": 0, "delta": {"content": "A"}}], system_fingerprint="fp_1"),
            chunk([{"index": 1, "delta": {"content": "b"}, "finish_reason": "length"}]),
            chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]),
            chunk([], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
        ]
    )
    assert [c.message.content for c in final.choices] == ["Aa", "Bb"]
    assert [c.finish_reason for c in final.choices] == ["stop", "length"]
    assert final.usage.total_tokens == 7
    assert (final.id, final.model, final.created, final.system_fingerprint) == (
        "c1",
        "m",
        5,
        "fp_1",
    )
    assert final.object == "chat.completion"


def test_tool_calls_merged_by_index() -> None:
    """id and name once, arguments in fragments, two parallel calls."""
    final = fold(
        [
            chunk(
                [tc(index=0, id="call_a", type="function", function={"name": "f", "arguments": ""})]
            ),
            chunk([tc(index=0, function={"arguments": '{"x"'})]),
            chunk(
                [
                    tc(
                        index=1,
                        id="call_b",
                        type="function",
                        function={"name": "g", "arguments": "{}"},
                    )
                ]
            ),
            chunk([tc(index=0, function={"arguments": ": 1}"})]),
            chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        ]
    )
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "f", '{"x": 1}'),
        ("call_b", "g", "{}"),
    ]
    assert final.choices[0].message.content is None


def test_repeated_id_and_name_are_not_concatenated() -> None:
    """Servers that repeat the full id and name in every fragment."""
    final = fold(
        [
            chunk(
                [tc(index=0, id="c", type="function", function={"name": "get", "arguments": "{"})]
            ),
            chunk(
                [tc(index=0, id="c", type="function", function={"name": "get", "arguments": "}"})]
            ),
        ]
    )
    call = final.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("c", "get", "{}")


def test_no_index_and_first_index_one() -> None:
    """Fragments without index follow ids; a first index of 1 is fine."""
    no_index = fold(
        [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{"}}]
                        },
                    }
                ]
            ),
            chunk([{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "}"}}]}}]),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"id": "b", "function": {"name": "g", "arguments": "[]"}}
                            ]
                        },
                    }
                ]
            ),
        ]
    )
    assert [(c.id, c.function.arguments) for c in no_index.choices[0].message.tool_calls] == [
        ("a", "{}"),
        ("b", "[]"),
    ]
    one = fold([chunk([tc(index=1, id="x", function={"name": "h", "arguments": "{}"})])])
    assert one.choices[0].message.tool_calls[0].id == "x"


def test_two_fragments_same_index_in_one_delta() -> None:
    """Two fragments for one index inside a single delta append in order."""
    final = fold(
        [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c",
                                    "function": {"name": "f", "arguments": '{"a":'},
                                },
                                {"index": 0, "function": {"arguments": "2}"}},
                            ]
                        },
                    }
                ]
            )
        ]
    )
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"a":2}'


def test_same_index_new_id_starts_new_call() -> None:
    """A server that numbers every parallel call 0 still gives separate calls."""
    final = fold(
        [
            chunk([tc(index=0, id="a", function={"name": "f", "arguments": "{}"})]),
            chunk([tc(index=0, id="b", function={"name": "g", "arguments": "{}"})]),
        ]
    )
    assert [c.id for c in final.choices[0].message.tool_calls] == ["a", "b"]


def test_legacy_function_call_logprobs_refusal_reasoning() -> None:
    """function_call deltas, logprob lists, refusal and reasoning accumulate."""
    lp = {"token": "x", "logprob": -0.1, "bytes": [120], "top_logprobs": []}
    final = fold(
        [
            chunk([{"index": 0, "delta": {"function_call": {"name": "f", "arguments": ""}}}]),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"function_call": {"arguments": "{}"}},
                        "logprobs": {"content": [lp]},
                    }
                ]
            ),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"refusal": "no", "reasoning_content": "r1", "reasoning": "s"},
                        "logprobs": {"content": [lp]},
                    }
                ]
            ),
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"refusal": "pe", "reasoning_content": "r2"},
                        "finish_reason": "function_call",
                    }
                ]
            ),
        ]
    )
    m = final.choices[0].message
    assert (m.function_call.name, m.function_call.arguments) == ("f", "{}")
    assert (m.refusal, m.reasoning_content, m.reasoning) == ("nope", "r1r2", "s")
    assert [e.token for e in final.choices[0].logprobs.content] == ["x", "x"]


def test_usage_on_every_chunk_last_wins() -> None:
    """Running usage totals on every chunk: the last one is kept."""
    final = fold(
        [
            chunk(
                [{"index": 0, "delta": {"content": "a"}}],
                usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            ),
            chunk(
                [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}],
                usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            ),
        ]
    )
    assert final.usage.completion_tokens == 2


class _CountedStr(str):
    """A text piece that counts the concatenations it takes part in."""

    joins = 0

    def __add__(self, other: str) -> str:
        _CountedStr.joins += 1
        return str.__add__(self, other)

    def __radd__(self, other: str) -> str:  # `text + piece` with a plain str on the left
        _CountedStr.joins += 1
        return str.__add__(other, self)


def test_accumulation_does_not_concatenate_per_delta() -> None:
    """Deltas are kept and joined once, so folding n of them copies the text once, not n times."""
    _CountedStr.joins = 0
    acc = ChunkAccumulator()
    n = 10_000
    for _ in range(n):
        delta = ChoiceDelta(content=_CountedStr("x"), reasoning_content=_CountedStr("r"))
        acc.add(ChatCompletionChunk(choices=[ChunkChoice(index=0, delta=delta)]))
    final = acc.completion()
    assert final.choices[0].message.content == "x" * n
    assert final.choices[0].message.reasoning_content == "r" * n
    assert _CountedStr.joins == 0
    assert "a" + _CountedStr("b") == "ab" and _CountedStr.joins == 1  # the counter works


def received(body: dict[str, Any]) -> ChatCompletionChunk:
    """A chunk decoded from its event's bytes, which it keeps, as a stream's chunks do."""
    raw = msgspec.json.encode(body)
    decoded = msgspec.json.decode(raw, type=ChatCompletionChunk)
    keep_response(decoded, raw)
    return decoded


def event(choices: list[dict[str, Any]], **extra: Any) -> ChatCompletionChunk:
    return received(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 5,
            "model": "m",
            "system_fingerprint": None,
            "provider": "Groq",
            "choices": choices,
            **extra,
        }
    )


def test_final_to_dict_is_the_whole_body() -> None:
    """Every named field (index 0, null refusal and logprobs), usage as sent with its
    extras, and the gateway's top-level extras from the chunks, later ones winning."""
    top = [{"token": "A", "logprob": -0.5, "bytes": [65]}]
    entry = {"token": "A", "logprob": -0.1, "bytes": [65], "top_logprobs": top}
    call = {"index": 0, "id": "call_1", "type": "function"}
    more = {"index": 0, "function": {"arguments": "{}"}}
    final = fold(
        [
            event([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
            event([{"index": 0, "delta": {"content": "A"}, "logprobs": {"content": [entry]}}]),
            event([{"index": 1, "delta": {"tool_calls": [{**call, "function": {"name": "f"}}]}}]),
            event([{"index": 1, "delta": {"tool_calls": [more]}}]),
            event([{"index": 1, "delta": {}, "finish_reason": "tool_calls"}]),
            event([{"index": 0, "delta": {}, "finish_reason": "stop"}], region="eu"),
            event(
                [],
                usage={
                    "prompt_tokens": 3,
                    "completion_tokens": 2,
                    "total_tokens": 5,
                    "cost": 0.25,
                    "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1},
                },
                citations=["https://example.org"],
                provider="Groq-2",
            ),
        ]
    )
    assert final.to_dict() == {
        "id": "c1",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A", "refusal": None},
                "logprobs": {"content": [entry], "refusal": None},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
        ],
        "usage": {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "cost": 0.25,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1},
        },
        "system_fingerprint": None,
        "provider": "Groq-2",
        "region": "eu",
        "citations": ["https://example.org"],
    }
    # It says no more than the completion's fields where they overlap.
    again = msgspec.json.decode(msgspec.json.encode(final.to_dict()), type=ChatCompletion)
    assert again == final


def test_final_to_dict_of_chunks_built_by_hand() -> None:
    """Without kept bodies the named fields are all there is, defaults and nulls included."""
    final = fold([chunk([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}])])
    assert final.to_dict() == {
        "id": "c1",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
