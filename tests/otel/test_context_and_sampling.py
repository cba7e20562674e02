"""The call's span as the current one, and what spans no one records still give.

Spans started while a call runs (an HTTP client's, say; here a hook's) are children of the
call's span; spans the sampler drops, or a no-op tracer, still give the full metrics, and the
cached metric attribute sets keep each outcome apart.
"""

from __future__ import annotations

import contextlib
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider, SpanContext

import anyapi_async as aa
from anyapi_async import otel
from anyapi_async.testing import ErrorResponse, JSONResponse, LocalServer

from ..conftest import API_KEY, completion_body
from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "hello"}]


class _SeesContext(aa.Hooks):
    """Starts a span of its own on each attempt, and notes the span current then."""

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer("nested")
        self.current: list[SpanContext] = []

    def on_request(self, info: aa.AttemptInfo) -> None:
        self.current.append(trace.get_current_span().get_span_context())
        self.tracer.start_span("nested").end()


def _by_name(telemetry: Telemetry) -> dict[str, Any]:
    return {s.name: s for s in telemetry.spans()}


async def test_spans_started_inside_a_call_are_its_children(
    server: LocalServer, telemetry: Telemetry
) -> None:
    hook = _SeesContext(telemetry.tracer_provider)
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[hook]) as c:
        otel.instrument(c, **telemetry.providers())
        await c.chat.completions.create(model="m", messages=MSGS)
        assert trace.get_current_span() is trace.INVALID_SPAN  # restored after the call
    spans = _by_name(telemetry)
    call, nested = spans["chat m"], spans["nested"]
    assert nested.parent is not None
    assert nested.parent.span_id == call.context.span_id
    assert hook.current == [call.context]


async def test_spans_inside_a_batch_request_are_its_children(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    hook = _SeesContext(telemetry.tracer_provider)
    request = {"custom_id": "q0", "body": {"model": "m", "messages": MSGS}}
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[hook]) as c:
        otel.instrument(c, **telemetry.providers())
        async with c.chat.completions.batch([request]) as run:
            results = [r async for r in run]
    assert results[0].ok
    spans = _by_name(telemetry)
    item, nested = spans["chat m"], spans["nested"]
    assert attrs_of(item)["anyapi.batch.custom_id"] == "q0"
    assert nested.parent is not None
    assert nested.parent.span_id == item.context.span_id


async def test_dropped_span_still_gives_full_metrics_and_context(
    server: LocalServer, telemetry: Telemetry
) -> None:
    """A span the sampler drops: no span exported, the same metrics, its context current."""
    exporter = InMemorySpanExporter()
    dropping = TracerProvider(sampler=ALWAYS_OFF)
    dropping.add_span_processor(SimpleSpanProcessor(exporter))
    hook = _SeesContext(dropping)
    try:
        async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[hook]) as c:
            otel.instrument(c, tracer_provider=dropping, meter_provider=telemetry.meter_provider)
            completion = await c.chat.completions.create(model="m", messages=MSGS)
    finally:
        dropping.shutdown()
    assert exporter.get_finished_spans() == ()
    # The dropped span's own (unsampled) context is current: downstream is told not to sample.
    (seen,) = hook.current
    assert seen.is_valid
    assert not seen.trace_flags.sampled
    (duration,) = telemetry.histogram("gen_ai.client.operation.duration")
    assert attrs_of(duration)["gen_ai.response.model"] == completion.model
    assert attrs_of(duration)["gen_ai.request.model"] == "m"
    assert completion.usage is not None
    tokens = {
        attrs_of(p)["gen_ai.token.type"]: p.sum
        for p in telemetry.histogram("gen_ai.client.token.usage")
    }
    assert tokens == {
        "input": completion.usage.prompt_tokens,
        "output": completion.usage.completion_tokens,
    }


async def test_no_op_tracer_leaves_the_current_span_and_records_metrics(
    server: LocalServer, telemetry: Telemetry
) -> None:
    """With a no-op tracer, spans started inside the call see the caller's span as parent."""
    hook = _SeesContext(telemetry.tracer_provider)
    outer_tracer = telemetry.tracer_provider.get_tracer("app")
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[hook]) as c:
        otel.instrument(
            c, tracer_provider=NoOpTracerProvider(), meter_provider=telemetry.meter_provider
        )
        with outer_tracer.start_as_current_span("outer") as outer:
            await c.chat.completions.create(model="m", messages=MSGS)
    spans = _by_name(telemetry)
    assert set(spans) == {"outer", "nested"}
    assert spans["nested"].parent is not None
    assert spans["nested"].parent.span_id == outer.get_span_context().span_id
    assert len(telemetry.histogram("gen_ai.client.operation.duration")) == 1


async def test_each_outcome_keeps_its_own_metric_points(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """Cached attribute sets: models, response models and error types stay apart."""
    server.queue(JSONResponse({**completion_body(), "model": "served-a"}))
    server.queue(JSONResponse({**completion_body(), "model": "served-b"}))
    server.queue(JSONResponse({**completion_body(), "model": "served-a"}))
    server.queue(ErrorResponse(422))
    server.queue(ErrorResponse(400))
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers())
        for model in ("m1", "m1", "m2"):
            await c.chat.completions.create(model=model, messages=MSGS)
        for _ in range(2):
            with contextlib.suppress(aa.APIStatusError):
                await c.chat.completions.create(model="m1", messages=MSGS)
    points = {
        (
            attrs_of(p)["gen_ai.request.model"],
            attrs_of(p).get("gen_ai.response.model"),
            attrs_of(p).get("error.type"),
        ): p.count
        for p in telemetry.histogram("gen_ai.client.operation.duration")
    }
    assert points == {
        ("m1", "served-a", None): 1,
        ("m1", "served-b", None): 1,
        ("m2", "served-a", None): 1,
        ("m1", None, "422"): 1,
        ("m1", None, "400"): 1,
    }
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["chat m1", "chat m1", "chat m2", "chat m1", "chat m1"]
    assert [attrs_of(s).get("error.type") for s in spans] == [None, None, None, "422", "400"]


async def test_a_model_that_is_not_a_string_counts_as_none(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """A batch body whose model is a list (unhashable) still gets its span, without a model."""
    request = {"custom_id": "q0", "body": {"model": ["m"], "messages": MSGS}}
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers())
        async with c.chat.completions.batch([request]) as run:
            results = [r async for r in run]
    span = telemetry.span()
    assert span.name == "chat"
    assert "gen_ai.request.model" not in attrs_of(span)
    assert attrs_of(span)["anyapi.batch.custom_id"] == "q0"
    assert len(results) == 1
