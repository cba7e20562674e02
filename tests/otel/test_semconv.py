"""Which convention names are emitted: the default ones, or the latest behind the opt-in.

``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` (a comma-separated list) gives
the latest GenAI conventions (semantic-conventions-genai v0.1.0) and not the previous ones;
without it the names stay those emitted so far (semantic-conventions v1.41.0).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async import otel
from anyapi_async.testing import ErrorResponse, JSONResponse, LocalServer

from ..conftest import API_KEY, completion_body
from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "hello"}]
OLD_METRICS = (
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.time_to_first_chunk",
    "gen_ai.client.operation.time_per_output_chunk",
)
NEW_METRICS = (
    "gen_ai.client.inference.duration",
    "gen_ai.client.inference.time_to_first_chunk",
    "gen_ai.client.inference.time_per_output_chunk",
    "gen_ai.client.inference.usage.input_tokens",
    "gen_ai.client.inference.usage.output_tokens",
    "gen_ai.client.inference.usage.cache_read.input_tokens",
    "gen_ai.client.inference.usage.reasoning.output_tokens",
    "gen_ai.client.inference.operation.input_tokens",
    "gen_ai.client.inference.operation.output_tokens",
)
USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 5},
    "completion_tokens_details": {"reasoning_tokens": 4},
}


@pytest.mark.parametrize(
    ("value", "latest"),
    [
        (None, False),
        ("", False),
        ("http", False),
        ("gen_ai_latest_experimental", True),
        ("http, gen_ai_latest_experimental ,database", True),
        ("GEN_AI_LATEST_EXPERIMENTAL", False),
        ("gen_ai_latest_experimental/dup", False),
    ],
)
def test_opt_in_value_is_a_comma_separated_list(value: str | None, latest: bool) -> None:
    """Only the exact gen_ai_latest_experimental item of the list opts in."""
    assert otel.latest_experimental(value) is latest


@pytest.fixture
def latest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")


async def _client(server: LocalServer, telemetry: Telemetry, **options: Any) -> aa.AsyncClient:
    client = aa.AsyncClient(api_key=API_KEY, base_url=server.base_url)
    return otel.instrument(client, **telemetry.providers(), **options)


@pytest.fixture
async def traced(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> AsyncIterator[aa.AsyncClient]:
    """An instrumented client made after the test's environment is set."""
    async with await _client(server, telemetry, capture_content=True) as c:
        yield c


async def _one_of_each(client: aa.AsyncClient, server: LocalServer) -> None:
    """A completion with detailed usage, then a stream that asks for usage."""
    server.queue(JSONResponse({**completion_body(), "usage": USAGE}))
    await client.chat.completions.create(model="m", messages=MSGS, extra_body={"top_k": 40.0})
    stream = await client.chat.completions.create(
        model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    async with stream:
        async for _ in stream:
            pass


def _names(telemetry: Telemetry) -> set[str]:
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    return {
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


async def test_default_emits_the_previous_names(
    traced: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """Without the opt-in: the names emitted so far, none of the latest ones."""
    await _one_of_each(traced, server)
    names = _names(telemetry)
    assert set(OLD_METRICS) <= names
    assert not names & set(NEW_METRICS)
    completion_span = telemetry.spans()[0]
    attrs = attrs_of(completion_span)
    assert attrs["gen_ai.request.top_k"] == 40.0 and type(attrs["gen_ai.request.top_k"]) is float
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["finish_reason"] == "stop"


@pytest.mark.usefixtures("latest")
async def test_opt_in_emits_the_latest_names_only(
    traced: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """gen_ai_latest_experimental: the latest metric names, and none of the previous ones."""
    await _one_of_each(traced, server)
    names = _names(telemetry)
    assert set(NEW_METRICS) <= names
    assert not names & set(OLD_METRICS)
    (duration,) = [
        p
        for p in telemetry.histogram("gen_ai.client.inference.duration")
        if attrs_of(p)["gen_ai.response.model"] == "m" and p.count == 2
    ]
    assert tuple(duration.explicit_bounds) == otel.DURATION_BUCKETS
    assert attrs_of(duration)["gen_ai.operation.name"] == "chat"
    assert "error.type" not in attrs_of(duration)


@pytest.mark.usefixtures("latest")
async def test_opt_in_token_counters_and_histograms(
    traced: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """Usage counters by gen_ai.token.modality (audio apart), per-operation histograms."""
    server.queue(JSONResponse({**completion_body(), "usage": USAGE}))
    await traced.chat.completions.create(model="m", messages=MSGS)

    def sums(name: str) -> dict[str, float]:
        return {
            attrs_of(p)["gen_ai.token.modality"]: p.value for p in telemetry.points(name)
        }

    assert sums("gen_ai.client.inference.usage.input_tokens") == {"audio": 5, "unknown": 25}
    assert sums("gen_ai.client.inference.usage.output_tokens") == {"unknown": 12}
    assert sums("gen_ai.client.inference.usage.cache_read.input_tokens") == {"unknown": 8}
    assert sums("gen_ai.client.inference.usage.reasoning.output_tokens") == {"unknown": 4}
    (inputs,) = telemetry.histogram("gen_ai.client.inference.operation.input_tokens")
    (outputs,) = telemetry.histogram("gen_ai.client.inference.operation.output_tokens")
    assert (inputs.sum, outputs.sum) == (30, 12)
    assert tuple(inputs.explicit_bounds) == otel.TOKEN_BUCKETS
    assert "gen_ai.token.modality" not in attrs_of(inputs)
    assert "gen_ai.token.type" not in attrs_of(inputs)


@pytest.mark.usefixtures("latest")
async def test_opt_in_failed_call_records_zero_tokens_with_its_error(
    traced: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A failed call counts 0 tokens (unknown modality); the histograms carry error.type."""
    server.queue(ErrorResponse(422))
    with contextlib.suppress(aa.UnprocessableEntityError):
        await traced.chat.completions.create(model="m", messages=MSGS)
    (counted,) = telemetry.points("gen_ai.client.inference.usage.input_tokens")
    assert counted.value == 0
    assert attrs_of(counted)["gen_ai.token.modality"] == "unknown"
    (per_operation,) = telemetry.histogram("gen_ai.client.inference.operation.output_tokens")
    assert (per_operation.count, per_operation.sum) == (1, 0)
    assert attrs_of(per_operation)["error.type"] == "422"
    (duration,) = telemetry.histogram("gen_ai.client.inference.duration")
    assert attrs_of(duration)["error.type"] == "422"


@pytest.mark.usefixtures("latest")
async def test_opt_in_span_attributes(
    traced: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """top_k is an int; output messages leave finish_reason to gen_ai.response.finish_reasons;
    system instructions keep their text parts only."""
    await traced.chat.completions.create(
        model="m",
        messages=MSGS,
        extra_body={
            "top_k": 40.0,
            "instructions": [{"type": "text", "text": "be brief"}, {"type": "x"}],
        },
    )
    await traced.chat.completions.create(model="m", messages=MSGS, extra_body={"top_k": 0.5})
    first, second = telemetry.spans()
    attrs = attrs_of(first)
    assert attrs["gen_ai.request.top_k"] == 40 and type(attrs["gen_ai.request.top_k"]) is int
    assert "gen_ai.request.top_k" not in attrs_of(second)
    output = json.loads(attrs["gen_ai.output.messages"])
    assert "finish_reason" not in output[0] and output[0]["role"] == "assistant"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert json.loads(attrs["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "be brief"}
    ]


async def test_default_keeps_every_system_instruction_part(
    traced: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """Without the opt-in, system instructions keep all their parts, as before."""
    await traced.chat.completions.create(
        model="m",
        messages=MSGS,
        extra_body={"instructions": [{"type": "text", "text": "be brief"}, {"type": "x"}]},
    )
    parts = json.loads(attrs_of(telemetry.span())["gen_ai.system_instructions"])
    assert [part["type"] for part in parts] == ["text", "x"]


@pytest.mark.usefixtures("latest")
async def test_opt_in_stream_metrics(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """Streams record the latest time-to-first-chunk and per-chunk names, per chunk too."""
    async with await _client(server, telemetry, per_chunk_metrics=True) as c:
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            chunks = [chunk async for chunk in stream]
    (ttfc,) = telemetry.histogram("gen_ai.client.inference.time_to_first_chunk")
    assert ttfc.count == 1
    per_chunk = telemetry.histogram("gen_ai.client.inference.time_per_output_chunk")
    assert sum(p.count for p in per_chunk) == len(chunks) - 1
    # A stream that did not ask for usage counts 0 input tokens, under "unknown".
    (counted,) = telemetry.points("gen_ai.client.inference.usage.input_tokens")
    assert (counted.value, attrs_of(counted)["gen_ai.token.modality"]) == (0, "unknown")
