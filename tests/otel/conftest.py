"""OpenTelemetry fixtures: SDK providers with in-memory exporters, passed per test.

The global providers are never set, so tests cannot leak telemetry into each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import anyapi_async as aa
from anyapi_async.otel import instrument
from anyapi_async.testing import LocalServer

from ..conftest import API_KEY


class Telemetry:
    """The providers of one test and what they exported."""

    def __init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))

    def providers(self) -> dict[str, Any]:
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        """The one span exported so far (fails if there is not exactly one)."""
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[Any]:
        """Data points of metric ``name`` collected now."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        return [p for p in self.points(name) if isinstance(p, HistogramDataPoint)]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def attrs_of(item: Any) -> dict[str, Any]:
    """The attributes of a span, event, log record or data point as a plain dict."""
    return dict(item.attributes or {})


@pytest.fixture(autouse=True)
def default_semconv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the default names (tests of the opt-in set it themselves)."""
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.shutdown()


@pytest.fixture
async def otel_client(
    server: LocalServer, no_backoff: list[float], telemetry: Telemetry
) -> AsyncIterator[aa.AsyncClient]:
    """An instrumented client for the local server (content capture off)."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        yield instrument(c, **telemetry.providers())
