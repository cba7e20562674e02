"""Batch and job requests (one span each, progress metrics) and opt-in content capture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import anyapi_async as aa
from anyapi_async import otel
from anyapi_async.testing import ErrorResponse, LocalServer

from ..batch.conftest import FakeClock
from ..conftest import API_KEY
from .conftest import Telemetry, attrs_of

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
HISTORY: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "rainy, 14C"},
]


def _request(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"q{i}",
        "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
    }


async def test_batch_request_is_one_span_around_its_429_retry(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """A batch of three with one 429: three spans, the 429'd one counting it and two attempts."""
    server.queue(ErrorResponse(429, headers={"Retry-After": "0"}))
    clock = FakeClock()
    limiter = aa.RateLimiter(rpm=6000, clock=clock, sleep=clock.sleep)
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers())
        async with c.chat.completions.batch(
            [_request(i) for i in range(3)], concurrency=1, limiter=limiter
        ) as run:
            results = [r async for r in run]
    assert all(r.ok for r in results)
    spans = telemetry.spans()
    assert len(spans) == 3  # the inner HTTP calls join their request's span
    by_id = {attrs_of(s)["anyapi.batch.custom_id"]: attrs_of(s) for s in spans}
    assert set(by_id) == {"q0", "q1", "q2"}
    first = by_id["q0"]
    assert first["anyapi.rate_limited"] == 1
    assert first["anyapi.attempts"] == 2
    assert first["anyapi.batch.index"] == 0
    assert first["anyapi.rate_limit.wait"] >= 0
    assert first["gen_ai.request.model"] == "m"
    assert "error.type" not in first
    assert all(by_id[k]["anyapi.attempts"] == 1 for k in ("q1", "q2"))
    done = telemetry.points("anyapi.batch.requests")
    assert sum(p.value for p in done) == 3
    assert {attrs_of(p)["anyapi.batch.outcome"] for p in done} == {"ok"}
    assert sum(p.value for p in telemetry.points("anyapi.batch.rate_limited")) == 1
    assert sum(p.value for p in telemetry.points("anyapi.batch.in_flight")) == 0
    waits = telemetry.histogram("anyapi.batch.rate_limit.wait")
    assert sum(p.count for p in waits) == 3


async def test_failed_batch_request_span(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """A batch request that fails ends its span with the error and counts as an error."""
    server.queue(ErrorResponse(400, "no"))
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers())
        async with c.chat.completions.batch([_request(0)]) as run:
            results = [r async for r in run]
    assert not results[0].ok
    span = telemetry.span()
    assert attrs_of(span)["error.type"] == "400"
    assert span.status.status_code is StatusCode.ERROR
    done = telemetry.points("anyapi.batch.requests")
    assert [(attrs_of(p)["anyapi.batch.outcome"], p.value) for p in done] == [("error", 1)]
    assert attrs_of(done[0])["error.type"] == "400"


async def test_jsonl_job_has_a_span_per_line(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float], tmp_path: Path
) -> None:
    """run_jsonl_job with an instrumented client: one span per input line, named by custom_id."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(_request(i)) + "\n" for i in range(4)))
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers())
        summary = await aa.run_jsonl_job(source, tmp_path / "out.jsonl", client=c)
    assert summary.succeeded == 4
    ids = sorted(attrs_of(s)["anyapi.batch.custom_id"] for s in telemetry.spans())
    assert ids == ["q0", "q1", "q2", "q3"]
    assert sum(p.value for p in telemetry.points("anyapi.batch.requests")) == 4


# --- content capture ------------------------------------------------------------------------


async def test_content_is_not_captured_by_default(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """Without capture_content (or the variable), no message, tool or reply is recorded."""
    await otel_client.chat.completions.create(model="m", messages=HISTORY, tools=TOOLS)
    attrs = attrs_of(telemetry.span())
    assert not any(
        k in attrs
        for k in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.definitions")
    )
    assert telemetry.log_exporter.get_finished_logs() == ()


async def test_content_on_spans(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """capture_content=True: history, tools and reply as the conventions' JSON on the span."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers(), capture_content=True)
        completion = await c.chat.completions.create(model="m", messages=HISTORY, tools=TOOLS)
    attrs = attrs_of(telemetry.span())
    inputs = json.loads(str(attrs["gen_ai.input.messages"]))
    assert inputs == [
        {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 14C"}],
        },
    ]
    assert json.loads(str(attrs["gen_ai.tool.definitions"])) == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    outputs = json.loads(str(attrs["gen_ai.output.messages"]))
    message = completion.choices[0].message
    assert outputs[0]["role"] == "assistant"
    assert outputs[0]["finish_reason"] == completion.choices[0].finish_reason
    if message.content is not None:
        assert {"type": "text", "content": message.content} in outputs[0]["parts"]
    for call in message.tool_calls or ():
        assert call.function.name in {p.get("name") for p in outputs[0]["parts"]}
    assert "gen_ai.system_instructions" not in attrs  # system messages stay in the history


async def test_streamed_output_is_captured(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """A streamed reply is accumulated into gen_ai.output.messages."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers(), capture_content="span")
        async with c.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ) as s:
            text = "".join([t async for t in s.text_deltas()])
    outputs = json.loads(str(attrs_of(telemetry.span())["gen_ai.output.messages"]))
    assert outputs == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
    ]


async def test_system_instructions_beside_the_history(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """Instructions sent outside the messages (extra_body) become gen_ai.system_instructions."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers(), capture_content=True)
        await c.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"instructions": "Answer in French."},
        )
    attrs = attrs_of(telemetry.span())
    assert json.loads(str(attrs["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Answer in French."}
    ]


@pytest.mark.parametrize(
    ("value", "on_span", "as_event"),
    [
        ("true", True, False),
        ("SPAN_ONLY", True, False),
        ("event_only", False, True),
        ("SPAN_AND_EVENT", True, True),
        ("false", False, False),
        ("NO_CONTENT", False, False),
    ],
)
async def test_capture_from_the_environment(
    server: LocalServer,
    telemetry: Telemetry,
    no_backoff: list[float],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    on_span: bool,
    as_event: bool,
) -> None:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT turns capture on, where asked."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers())
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    span = telemetry.span()
    assert ("gen_ai.input.messages" in attrs_of(span)) is on_span
    logs = telemetry.log_exporter.get_finished_logs()
    assert len(logs) == (1 if as_event else 0)
    if as_event:
        record = logs[0].log_record
        assert record.event_name == "gen_ai.client.inference.operation.details"
        assert record.trace_id == span.context.trace_id
        assert record.span_id == span.context.span_id
        attrs = attrs_of(record)
        assert attrs["gen_ai.input.messages"][0]["parts"][0]["content"] == "hi"
        assert attrs["gen_ai.output.messages"][0]["role"] == "assistant"
        assert attrs["gen_ai.request.model"] == "m"
