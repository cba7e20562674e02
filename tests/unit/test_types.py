"""Decoding real-world shaped bodies from several providers."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from anyapi_async import ChatCompletion, ChatCompletionChunk
from anyapi_async._decode import CHUNK_DECODER, COMPLETION_DECODER, decode_lenient

FIXTURES = Path(__file__).parent.parent / "fixtures"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_openai_logprobs_and_tool_calls() -> None:
    """An OpenAI body with tool calls, logprobs and usage details decodes fully."""
    c = COMPLETION_DECODER.decode(load("openai_logprobs_tools.json"))
    ch = c.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.tool_calls is not None
    call = ch.message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")
    assert msgspec.json.decode(call.function.arguments) == {"city": "Paris"}
    assert ch.logprobs is not None and ch.logprobs.content is not None
    entry = ch.logprobs.content[0]
    assert (entry.token, entry.bytes) == ("Hi", [72, 105])
    assert [t.token for t in entry.top_logprobs] == ["Hi", "Hello"]
    assert entry.top_logprobs[1].bytes is None
    assert c.usage is not None and c.usage.total_tokens == 25
    assert c.usage.prompt_tokens_details is not None
    assert c.usage.prompt_tokens_details.cached_tokens == 0
    assert c.system_fingerprint == "fp_abc"


def test_gateway_extra_fields_and_reasoning() -> None:
    """Unknown provider fields are ignored; reasoning and cost are kept."""
    c = COMPLETION_DECODER.decode(load("anyapi_extra_fields.json"))
    m = c.choices[0].message
    assert (m.content, m.reasoning, m.reasoning_content) == ("42", "Let me think.", "Let me think.")
    assert c.usage is not None and c.usage.cost == pytest.approx(0.00012)
    assert c.system_fingerprint is None


def test_legacy_function_call() -> None:
    """The legacy function_call message decodes."""
    c = COMPLETION_DECODER.decode(load("legacy_function_call.json"))
    fc = c.choices[0].message.function_call
    assert fc is not None and (fc.name, fc.arguments) == ("lookup", '{"q": "x"}')


def test_nulls_and_float_created_use_the_lenient_pass() -> None:
    """null for non-nullable fields and a float 'created' decode on the slow path."""
    body = load("nulls_and_floats.json")
    with pytest.raises(msgspec.ValidationError):
        COMPLETION_DECODER.decode(body)
    c = decode_lenient(body, ChatCompletion)
    assert (c.id, c.created, c.choices[0].index) == ("", 1731000002, 0)
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == "hi"


def _first_delta(chunk: ChatCompletionChunk) -> tuple[object, ...]:
    choice = chunk.choices[0]
    delta = choice.delta
    calls = [(c.index, c.type, c.function and c.function.arguments) for c in delta.tool_calls or []]
    return (chunk.id, choice.index, delta.role, delta.content, delta.reasoning_content, calls)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # content_filter_results on a choice, content null, no role
        (
            b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":'
            b'[{"index":0,"delta":{"content":null},"content_filter_results":{},'
            b'"finish_reason":null}]}',
            ("c", 0, None, None, None, []),
        ),
        # tool-call delta without type, Groq x_groq, usage on every chunk
        (
            b'{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
            b'{"arguments":"{\\"a"}}]}}],"x_groq":{"id":"req_1"},"usage":{"prompt_tokens":1,'
            b'"completion_tokens":1,"total_tokens":2}}',
            ("c", 0, None, None, None, [(0, None, '{"a')]),
        ),
        # missing id/created/object, provider field
        (
            b'{"provider":"Together","choices":[{"index":1,"delta":{"reasoning_content":"hm"}}]}',
            ("", 1, None, None, "hm", []),
        ),
    ],
)
def test_provider_chunks_decode(raw: bytes, expected: tuple[object, ...]) -> None:
    """Provider quirks in chunks decode on the fast path into the values they carry."""
    chunk = CHUNK_DECODER.decode(raw)
    assert _first_delta(chunk) == expected
    assert chunk.object == "chat.completion.chunk"  # the default when a provider leaves it out


def test_azure_prompt_filter_chunk() -> None:
    """Azure's first chunk (no choices, prompt_filter_results, object "") decodes as empty."""
    raw = (
        b'{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
        b'[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false}}}]}'
    )
    chunk = CHUNK_DECODER.decode(raw)
    assert (chunk.choices, chunk.object, chunk.usage, chunk.error) == ([], "", None, None)


def test_error_code_int_or_str() -> None:
    """error.code decodes as an int (AnyAPI) or a string (OpenAI)."""
    a = msgspec.json.decode(b'{"error":{"message":"m","code":402}}', type=ChatCompletion)
    b = msgspec.json.decode(b'{"error":{"message":"m","code":"rate_limit"}}', type=ChatCompletion)
    assert a.error is not None and a.error.code == 402
    assert b.error is not None and b.error.code == "rate_limit"


def test_content_as_list_of_parts() -> None:
    """content given as typed parts (Mistral reasoning models) becomes text and reasoning."""
    body = (
        b'{"id":"m","object":"chat.completion","created":1,"model":"magistral",'
        b'"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
        b'"content":[{"type":"thinking","thinking":[{"type":"text","text":"Let me see."}]},'
        b'{"type":"text","text":"The answer "},{"type":"text","text":"is 4."}]}}]}'
    )
    with pytest.raises(msgspec.ValidationError):
        COMPLETION_DECODER.decode(body)
    c = decode_lenient(body, ChatCompletion)
    m = c.choices[0].message
    assert (m.content, m.reasoning_content) == ("The answer is 4.", "Let me see.")
    chunk = decode_lenient(
        b'{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"hi"}]}}]}',
        ChatCompletionChunk,
    )
    assert chunk.choices[0].delta.content == "hi"


def test_tool_arguments_sent_as_an_object() -> None:
    """Tool-call arguments sent as a JSON object become the usual JSON string."""
    body = (
        b'{"id":"o","object":"chat.completion","created":1,"model":"llama",'
        b'"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",'
        b'"tool_calls":[{"id":"c1","type":"function","function":{"name":"f",'
        b'"arguments":{"city":"Paris"}}}]}}]}'
    )
    c = decode_lenient(body, ChatCompletion)
    calls = c.choices[0].message.tool_calls
    assert calls is not None
    assert msgspec.json.decode(calls[0].function.arguments) == {"city": "Paris"}
