"""Client CPU with OpenTelemetry instrumentation against the same client uninstrumented.

Run: ``python -m benchmarks.bench_otel [--reps 5] [--requests 2000] [--streams 20]``
(needs ``opentelemetry-sdk``: ``pip install -e '.[test]'``).

One process, one run: the benchmark server (``benchmarks/server.py``) in its own process,
then, per repetition and in a rotated order, each variant's measured phase: ``plain`` (an
uninstrumented client), ``otel`` (``instrument()`` with SDK providers whose exporters drop
everything: a `BatchSpanProcessor` with a no-op exporter, an in-memory metric reader that is
never read), ``otel-api-only`` (``instrument()`` with no providers and none set globally:
the API's default ones, which do nothing; what an application without an SDK gets, i.e.
the instrumentation's own cost), ``otel-per-chunk`` (``per_chunk_metrics=True``),
``otel-content`` (``capture_content=True``) and ``sdk-only``: the uninstrumented client,
and after each call the SDK calls one instrumented call makes (a span with a completion's
attributes, three histogram records) made by hand to the same providers, without any
instrumentation code: what the SDK alone costs in place, the bound for any
instrumentation. CPU is ``time.process_time()`` (all threads, so the span processor's
export thread counts) divided by requests or streamed chunks; the figures are medians over
repetitions, ratios are to ``plain`` of the same repetitions, ``added_us`` the median of
the per-repetition differences to ``plain``.

Cases: ``completion`` (non-streaming, concurrency 1), ``stream`` (1,000-chunk streams) and
``completion-offline``: the same non-streaming calls over a transport that hands back a
prebuilt response (no socket, no aiohttp), so the client's and the instrumentation's own
CPU show without the network's cost and noise. One JSON line per case and variant on
stdout, and a last ``sdk-floor`` line: the same SDK calls as ``sdk-only`` in a tight loop
with no client at all (everything stays in the CPU's caches, so it is lower than in place).
The targets: ``otel`` within 1.10x on non-streaming requests and 1.25x per streamed chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import anyapi_async
from anyapi_async import otel

from .payloads import ROUTES, completion_body
from .scenarios import request_params
from .server import spawn

VARIANTS = ("plain", "sdk-only", "otel-api-only", "otel", "otel-per-chunk", "otel-content")
CASES = ("completion", "stream", "completion-offline")
TARGETS = {"completion": 1.10, "stream": 1.25}
OFFLINE_URL = "http://127.0.0.1:9/v1"  # never connected to: the transport below answers


class _PrebuiltResponse:
    """What the client reads of a 200 response (`anyapi_async.Response`), from memory."""

    status = 200
    url = OFFLINE_URL + "/chat/completions"
    content_type = "application/json"

    def __init__(self, body: bytes, headers: Any) -> None:
        self.body = body
        self.headers = headers

    async def read(self, limit: int = 0) -> bytes:
        return self.body


class _PrebuiltTransport:
    """A `Transport` answering every request with the same completion, without a socket."""

    def __init__(self) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self.response = _PrebuiltResponse(
            json.dumps(completion_body(ROUTES["completion"])).encode(),
            CIMultiDictProxy(
                CIMultiDict({"Content-Type": "application/json", "x-request-id": "req_1"})
            ),
        )

    async def send(self, request: Any) -> Any:
        return self.response

    async def aclose(self) -> None:
        pass


def _providers() -> tuple[dict[str, Any], list[Any]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class NoopExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    return providers, [tracer_provider, meter_provider]


def _client(
    base_url: str, variant: str, providers: dict[str, Any], *, offline: bool = False
) -> anyapi_async.AsyncClient:
    client = anyapi_async.AsyncClient(
        api_key="sk-benchmark",
        base_url=OFFLINE_URL if offline else base_url,
        transport=_PrebuiltTransport() if offline else None,
    )
    if variant == "otel-api-only":
        otel.instrument(client)  # the global providers: the API's no-op ones here
    elif variant == "otel":
        otel.instrument(client, **providers)
    elif variant == "otel-per-chunk":
        otel.instrument(client, **providers, per_chunk_metrics=True)
    elif variant == "otel-content":
        otel.instrument(client, **providers, capture_content=True)
    return client


class _SdkCall:
    """What the OpenTelemetry SDK is asked to do for one call, made by hand, no client code:
    a span with the same attributes as a completion's, and the three histogram records
    (duration, input and output tokens)."""

    START: ClassVar[dict[str, Any]] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anyapi",
        "gen_ai.request.model": "completion",
        "server.address": "127.0.0.1",
        "server.port": 8000,
    }
    END: ClassVar[dict[str, Any]] = {
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.model": "completion",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 100,
        "anyapi.attempts": 1,
        "anyapi.request_id": "req_1",
    }

    def __init__(self, providers: dict[str, Any]) -> None:
        self.tracer = providers["tracer_provider"].get_tracer("floor")
        meter = providers["meter_provider"].get_meter("floor")
        self.duration = meter.create_histogram("floor.duration", unit="s")
        self.tokens = meter.create_histogram("floor.tokens", unit="{token}")
        self.metric = {**self.START, "gen_ai.response.model": "completion"}

    def __call__(self) -> None:
        span = self.tracer.start_span("chat completion", attributes=self.START)
        span.set_attributes(self.END)
        span.end()
        metric = self.metric
        self.duration.record(0.01, metric)
        self.tokens.record(20, {**metric, "gen_ai.token.type": "input"})
        self.tokens.record(100, {**metric, "gen_ai.token.type": "output"})


async def _completions(
    client: anyapi_async.AsyncClient, n: int, after: Callable[[], None] | None = None
) -> int:
    params = request_params(ROUTES["completion"])
    for _ in range(n):
        completion = await client.chat.completions.create(**params)
        assert completion.choices
        if after is not None:
            after()
    return n


async def _streams(
    client: anyapi_async.AsyncClient, n: int, after: Callable[[], None] | None = None
) -> int:
    params = request_params(ROUTES["stream"])
    chunks = 0
    for _ in range(n):
        stream = await client.chat.completions.create(**params)
        async with stream:
            async for _chunk in stream:
                chunks += 1
        if after is not None:
            after()
    return chunks


async def _phase(
    client: anyapi_async.AsyncClient, case: str, n: int, after: Callable[[], None] | None
) -> float:
    """CPU µs per unit (request or chunk) of one measured phase, after a short warm-up."""
    run = _streams if case == "stream" else _completions
    await run(client, max(1, n // 10), after)
    started = time.process_time()
    units = await run(client, n, after)
    return (time.process_time() - started) / units * 1e6


def _sdk_floor(sdk_call: _SdkCall, n: int = 5000) -> float:
    """CPU µs of `_SdkCall` alone, in a tight loop (everything stays in the CPU's caches)."""
    started = time.process_time()
    for _ in range(n):
        sdk_call()
    return (time.process_time() - started) / n * 1e6


async def _session(
    base_url: str, reps: int, requests: int, streams: int, offline: int
) -> dict[str, Any]:
    from opentelemetry import metrics, trace

    # otel-api-only stands for an application without an SDK: nothing set globally.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    providers, owned = _providers()
    sdk_call = _SdkCall(providers)
    clients = {v: _client(base_url, v, providers) for v in VARIANTS}
    stubbed = {v: _client(base_url, v, providers, offline=True) for v in VARIANTS}
    results: dict[str, dict[str, list[float]]] = {case: {v: [] for v in VARIANTS} for case in CASES}
    floors: list[float] = []
    try:
        for rep in range(reps):
            order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
            for case, n in zip(CASES, (requests, streams, offline), strict=True):
                for variant in order:
                    client = (stubbed if case == "completion-offline" else clients)[variant]
                    after = sdk_call if variant == "sdk-only" else None
                    results[case][variant].append(await _phase(client, case, n, after))
            floors.append(_sdk_floor(sdk_call))
            print(f"rep {rep + 1}/{reps} done", file=sys.stderr)
    finally:
        for client in (*clients.values(), *stubbed.values()):
            await client.aclose()
        for provider in owned:
            provider.shutdown()
    return {"results": results, "sdk_floor": floors}


def summarize(results: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for case, variants in results.items():
        plain = statistics.median(variants["plain"])
        for variant, runs in variants.items():
            median = statistics.median(runs)
            ratios = [r / p for r, p in zip(runs, variants["plain"], strict=True)]
            added = [r - p for r, p in zip(runs, variants["plain"], strict=True)]
            rows.append(
                {
                    "case": case,
                    "unit": "chunk" if case == "stream" else "request",
                    "variant": variant,
                    "cpu_us": round(median, 2),
                    "ratio": round(median / plain, 3),
                    "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                    # CPU added to the same calls uninstrumented (median over repetitions).
                    "added_us": round(statistics.median(added), 2),
                    "target": TARGETS.get(case) if variant == "otel" else None,
                    "runs": [round(r, 2) for r in runs],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument(
        "--requests", type=int, default=2000, help="non-streaming requests per phase"
    )
    parser.add_argument("--streams", type=int, default=20, help="1,000-chunk streams per phase")
    parser.add_argument(
        "--offline", type=int, default=5000, help="calls per completion-offline phase"
    )
    args = parser.parse_args(argv)
    proc, port = spawn()
    try:
        session = asyncio.run(
            _session(
                f"http://127.0.0.1:{port}/v1", args.reps, args.requests, args.streams, args.offline
            )
        )
    finally:
        proc.terminate()
        proc.wait(10)
    for row in summarize(session["results"]):
        print(json.dumps(row))
    floors = session["sdk_floor"]
    print(
        json.dumps(
            {
                "case": "sdk-floor",
                "unit": "call",
                "cpu_us": round(statistics.median(floors), 2),
                "runs": [round(f, 2) for f in floors],
            }
        )
    )


if __name__ == "__main__":
    main()
