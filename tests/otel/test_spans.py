"""One CLIENT span per call, with the GenAI conventions' attributes, against the local server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes

import anyapi_async as aa
from anyapi_async import otel
from anyapi_async.testing import ErrorResponse, JSONResponse, LocalServer, RawResponse

from ..conftest import API_KEY, completion_body
from .conftest import Telemetry, attrs_of

MSGS: list[Any] = [{"role": "user", "content": "hello"}]


async def test_non_streamed_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A completion gives one CLIENT span named after the model, with request and response facts."""
    completion = await otel_client.chat.completions.create(
        model="gpt-test",
        messages=MSGS,
        max_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop="END",
        n=2,
        seed=7,
    )
    span = telemetry.span()
    attrs = attrs_of(span)
    assert span.name == "chat gpt-test"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "anyapi"
    assert attrs["gen_ai.request.model"] == "gpt-test"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.request.seed"] == 7
    assert "gen_ai.request.stream" not in attrs
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == server.port
    assert attrs["gen_ai.response.id"] == completion.id
    assert attrs["gen_ai.response.model"] == completion.model
    assert attrs["gen_ai.response.finish_reasons"] == tuple(
        c.finish_reason for c in completion.choices
    )
    assert completion.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attrs["anyapi.attempts"] == 1
    assert attrs["anyapi.request_id"] == server.requests[-1].request_id
    assert "gen_ai.input.messages" not in attrs  # content capture is opt-in


async def test_cache_and_reasoning_tokens(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """Cached and reasoning token counts become their own usage attributes when reported."""
    body = completion_body("hi")
    body["usage"] = {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 20},
        "completion_tokens_details": {"reasoning_tokens": 8},
    }
    server.queue(JSONResponse(body))
    await otel_client.chat.completions.create(model="m", messages=MSGS)
    attrs = attrs_of(telemetry.span())
    assert attrs["gen_ai.usage.input_tokens"] == 30
    assert attrs["gen_ai.usage.output_tokens"] == 12
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 20
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 8


class _Recorder(Sampler):
    """Records the attributes a sampler is given when each span starts."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.seen.append({"name": name, **dict(attributes or {})})
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "recorder"


async def test_sampler_sees_the_conventions_attributes_at_start(
    server: LocalServer, no_backoff: list[float]
) -> None:
    """Model, provider, operation and server are known when the span starts."""
    sampler = _Recorder()
    provider = TracerProvider(sampler=sampler)
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, tracer_provider=provider)
        await c.chat.completions.create(model="m1", messages=MSGS)
    provider.shutdown()
    assert len(sampler.seen) == 1
    seen = sampler.seen[0]
    assert seen["name"] == "chat m1"
    assert seen["gen_ai.request.model"] == "m1"
    assert seen["gen_ai.operation.name"] == "chat"
    assert seen["gen_ai.provider.name"] == "anyapi"
    assert seen["server.address"] == "127.0.0.1" and seen["server.port"] == server.port


async def test_retried_call_is_one_span(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer, no_backoff: list[float]
) -> None:
    """Two 503s then success: one span with three attempts and a retry event per retry."""
    server.queue(ErrorResponse(503), ErrorResponse(503))
    await otel_client.chat.completions.create(model="m", messages=MSGS)
    assert len(server.requests) == 3
    span = telemetry.span()
    attrs = attrs_of(span)
    assert attrs["anyapi.attempts"] == 3
    assert attrs["anyapi.retry.wait"] == pytest.approx(sum(no_backoff))
    retries = [e for e in span.events if e.name == "anyapi.retry"]
    assert [attrs_of(e)["anyapi.attempt"] for e in retries] == [1, 2]
    assert all(attrs_of(e)["error.type"] == "503" for e in retries)
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in attrs


async def test_failed_call_sets_error_type_and_status(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """A 400 ends the span with error.type "400" and an ERROR status."""
    server.queue(ErrorResponse(400, "bad things"))
    with pytest.raises(aa.BadRequestError):
        await otel_client.chat.completions.create(model="m", messages=MSGS)
    span = telemetry.span()
    attrs = attrs_of(span)
    assert attrs["error.type"] == "400"
    assert attrs["anyapi.attempts"] == 1
    assert span.status.status_code is StatusCode.ERROR
    assert "BadRequestError" in (span.status.description or "")
    durations = telemetry.histogram("gen_ai.client.operation.duration")
    assert [attrs_of(p)["error.type"] for p in durations] == ["400"]


async def test_html_error_status_is_one_short_line(
    otel_client: aa.AsyncClient, telemetry: Telemetry, server: LocalServer
) -> None:
    """An HTML error page: the status description is its status and title, not the page."""
    style = "body { color: red; } " * 200
    page = f"<html><head><title>502 Bad Gateway</title><style>{style}</style></head></html>"
    server.queue(RawResponse(page, status=400))
    with pytest.raises(aa.BadRequestError):
        await otel_client.chat.completions.create(model="m", messages=MSGS)
    description = telemetry.span().status.description or ""
    assert description.startswith("BadRequestError: Error code: 400 Bad Request (an HTML page")
    assert "'502 Bad Gateway'" in description
    assert "color" not in description and "\n" not in description
    assert len(description) < 400


async def test_connection_error_type_is_the_class(
    telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """Nothing listening: error.type is the exception class, after every attempt."""
    server = LocalServer()
    await server.start()
    base_url = server.base_url
    await server.aclose()  # the port is now closed
    async with aa.AsyncClient(api_key=API_KEY, base_url=base_url, max_retries=1) as c:
        otel.instrument(c, **telemetry.providers())
        with pytest.raises(aa.APIConnectionError):
            await c.chat.completions.create(model="m", messages=MSGS)
    attrs = attrs_of(telemetry.span())
    assert attrs["error.type"] == "APIConnectionError"
    assert attrs["anyapi.attempts"] == 2


async def test_other_paths_get_no_span(otel_client: aa.AsyncClient, telemetry: Telemetry) -> None:
    """GET /models is not a GenAI operation: no span."""
    await otel_client.models.list()
    assert telemetry.spans() == []


async def test_copies_share_instrumentation_and_uninstrument_stops_it(
    otel_client: aa.AsyncClient, telemetry: Telemetry
) -> None:
    """with_options copies are traced too; uninstrument() stops tracing for all of them."""
    copy = otel_client.with_options(timeout=30)
    await copy.chat.completions.create(model="m", messages=MSGS)
    assert len(telemetry.spans()) == 1
    assert otel.is_instrumented(copy)
    otel.uninstrument(copy)
    assert not otel.is_instrumented(otel_client)
    await otel_client.chat.completions.create(model="m", messages=MSGS)
    assert len(telemetry.spans()) == 1


async def test_instrument_twice_replaces(otel_client: aa.AsyncClient, telemetry: Telemetry) -> None:
    """Instrumenting again replaces the first instrumentation: still one span per call."""
    second = Telemetry()
    otel.instrument(otel_client, **second.providers())
    await otel_client.chat.completions.create(model="m", messages=MSGS)
    assert telemetry.spans() == []
    assert len(second.spans()) == 1
    second.shutdown()


async def test_the_key_never_reaches_telemetry(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """With content capture on, no span, event or metric attribute holds the API key."""
    server.queue(ErrorResponse(503))
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers(), capture_content="span_and_event")
        await c.chat.completions.create(model="m", messages=MSGS)
        stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
        async with stream:
            async for _ in stream:
                pass
    dumped = [s.to_json() for s in telemetry.spans()]
    dumped += [r.to_json() for r in telemetry.log_exporter.get_finished_logs()]
    assert len(dumped) == 4
    assert all(API_KEY not in text and "Bearer" not in text for text in dumped)


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.anyapi.ai", "anyapi"),
        ("api.openai.com", "openai"),
        ("my-resource.openai.azure.com", "azure.ai.openai"),
        ("api.deepseek.com", "deepseek"),
        ("api.groq.com", "groq"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.x.ai", "x_ai"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("us-central1-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("127.0.0.1", "anyapi"),
        ("notapi.openai.com.example", "anyapi"),
    ],
)
def test_provider_for_known_hosts(host: str, provider: str) -> None:
    """Known hosts map to the conventions' well-known values; others are "anyapi"."""
    assert otel.provider_for(host) == provider


async def test_provider_name_override_and_openai_attributes(
    server: LocalServer, telemetry: Telemetry, no_backoff: list[float]
) -> None:
    """provider_name= replaces the guess; "openai" adds the openai.* attributes."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        otel.instrument(c, **telemetry.providers(), provider_name="openai")
        await c.chat.completions.create(model="m", messages=MSGS, service_tier="flex")
    attrs = attrs_of(telemetry.span())
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["openai.api.type"] == "chat_completions"
    assert attrs["openai.request.service_tier"] == "flex"


def test_instrument_refuses_other_objects() -> None:
    """instrument() names what it was given when it is not a client."""
    with pytest.raises(TypeError, match="AsyncClient, not str"):
        otel.instrument("client")  # type: ignore[type-var]


def test_capture_content_value_is_checked() -> None:
    """An unknown capture_content value is refused with the accepted ones listed."""
    with pytest.raises(ValueError, match="span_and_event"):
        otel.instrument(
            aa.AsyncClient(api_key="k", base_url="http://127.0.0.1:9/v1"),
            capture_content="everything",  # type: ignore[arg-type]
        )
