"""Metrics: the conventions' histograms, their advised buckets, low-cardinality attributes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyapi_async as aa
from anyapi_async import otel
from anyapi_async.testing import ErrorResponse, LocalServer

from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "hello"}]
LOW_CARDINALITY = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "server.address",
    "server.port",
    "error.type",
    "gen_ai.token.type",
}


async def test_duration_and_token_usage(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """One duration record per call; token usage per token type, with the advised buckets."""
    completion = await otel_client.chat.completions.create(model="m", messages=MSGS)
    assert completion.usage is not None
    (duration,) = telemetry.histogram("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert tuple(duration.explicit_bounds) == otel.DURATION_BUCKETS
    attrs = attrs_of(duration)
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anyapi",
        "gen_ai.request.model": "m",
        "gen_ai.response.model": completion.model,
        "server.address": "127.0.0.1",
        "server.port": server.port,
    }
    tokens = {
        attrs_of(p)["gen_ai.token.type"]: p
        for p in telemetry.histogram("gen_ai.client.token.usage")
    }
    assert set(tokens) == {"input", "output"}
    assert tokens["input"].sum == completion.usage.prompt_tokens
    assert tokens["output"].sum == completion.usage.completion_tokens
    assert tuple(tokens["input"].explicit_bounds) == otel.TOKEN_BUCKETS
    assert telemetry.histogram("gen_ai.client.operation.time_to_first_chunk") == []


async def test_no_token_usage_without_usage(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A failed call records its duration with error.type, and no token usage."""
    server.queue(ErrorResponse(422))
    with contextlib.suppress(aa.UnprocessableEntityError):
        await otel_client.chat.completions.create(model="m", messages=MSGS)
    (duration,) = telemetry.histogram("gen_ai.client.operation.duration")
    assert attrs_of(duration)["error.type"] == "422"
    assert telemetry.histogram("gen_ai.client.token.usage") == []


async def test_metric_attributes_stay_low_cardinality(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """Metric points never carry ids, request ids or content."""
    await otel_client.chat.completions.create(model="m", messages=MSGS, seed=3)
    stream = await otel_client.chat.completions.create(model="m", messages=MSGS, stream=True)
    async with stream:
        async for _ in stream:
            pass
    names = (
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    )
    points = {name: telemetry.histogram(name) for name in names}
    assert all(points.values())  # every instrument recorded
    for point in (p for found in points.values() for p in found):
        assert set(attrs_of(point)) <= LOW_CARDINALITY


def test_importing_the_package_loads_no_opentelemetry() -> None:
    """`import anyapi_async` and an uninstrumented call leave OpenTelemetry unimported."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        import anyapi_async
        from anyapi_async.testing import ANY_MODEL, LocalServer

        async def main():
            async with LocalServer(models=ANY_MODEL) as s:
                c = anyapi_async.AsyncClient(api_key="k", base_url=s.base_url)
                async with c:
                    msgs = [{"role": "user", "content": "x"}]
                    await c.chat.completions.create(model="m", messages=msgs)

        asyncio.run(main())
        print([m for m in sys.modules if m.startswith(("opentelemetry", "anyapi_async.otel"))])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_docs_example_prints_spans() -> None:
    """docs/observability.md's first example runs and prints both spans to the console."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.count('"name": "chat gpt-5"') == 2
    assert '"gen_ai.request.stream": true' in out.stdout
    assert '"gen_ai.usage.output_tokens"' in out.stdout
