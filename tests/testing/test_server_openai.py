"""The official openai SDK talks to LocalServer as to a real provider."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import openai
import pydantic
import pytest
from openai import AsyncOpenAI

from anyapi_async.testing import ErrorResponse, LocalServer

MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    }
]


@pytest.fixture
async def sdk(anyapi_server: LocalServer) -> AsyncIterator[AsyncOpenAI]:
    """An AsyncOpenAI client for the local server, no retries."""
    async with AsyncOpenAI(
        base_url=anyapi_server.base_url, api_key="sk-openai", max_retries=0
    ) as client:
        yield client


async def test_completion_with_logprobs_and_n(sdk: AsyncOpenAI) -> None:
    """A non-streaming reply with n=2 and logprobs parses into the SDK's models."""
    reply = await sdk.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, n=2, logprobs=True, top_logprobs=2, max_tokens=12
    )
    assert reply.model == "gpt-4o-mini" and len(reply.choices) == 2
    for choice in reply.choices:
        assert choice.finish_reason == "length"
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert "".join(e.token for e in choice.logprobs.content) == choice.message.content
        assert all(len(e.top_logprobs) == 2 for e in choice.logprobs.content)
    assert reply.usage is not None and reply.usage.completion_tokens == 24


async def test_stream_with_usage(sdk: AsyncOpenAI) -> None:
    """A stream parses chunk by chunk and ends with the usage chunk."""
    whole = await sdk.chat.completions.create(model="m", messages=MESSAGES)
    stream = await sdk.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    usage = None
    async with stream:
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            pieces.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert usage.total_tokens == whole.usage.total_tokens


async def test_stream_helper_accumulates_tool_calls(sdk: AsyncOpenAI) -> None:
    """The SDK's stream helper merges streamed tool-call fragments into valid JSON."""
    async with sdk.chat.completions.stream(
        model="m", messages=MESSAGES, tools=TOOLS, tool_choice="required"
    ) as stream:
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"
    assert isinstance(json.loads(call.function.arguments)["query"], str)


class Step(pydantic.BaseModel):
    explanation: str
    output: str


class MathReasoning(pydantic.BaseModel):
    steps: list[Step]
    final_answer: str
    confidence: Literal["low", "high"]


async def test_parse_structured_output(sdk: AsyncOpenAI) -> None:
    """chat.completions.parse with a pydantic model gets a parsed instance back."""
    reply = await sdk.chat.completions.parse(
        model="m", messages=MESSAGES, response_format=MathReasoning
    )
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, MathReasoning)
    assert parsed.steps and parsed.confidence in ("low", "high")


async def test_sdk_errors_and_request_id(sdk: AsyncOpenAI, anyapi_server: LocalServer) -> None:
    """Scripted errors become the SDK's exceptions, with the request id."""
    anyapi_server.queue(ErrorResponse(429, headers={"Retry-After": "1"}))
    with pytest.raises(openai.RateLimitError) as info:
        await sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.request_id == anyapi_server.requests[-1].request_id
    assert anyapi_server.requests[-1].headers["Authorization"] == "Bearer ***"
    models = await sdk.models.list()
    assert [m.id for m in models.data] == ["anyapi-local"]
