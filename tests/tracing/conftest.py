"""A TracerProvider of OpenTelemetry's SDK for each test that asks for ``spans``, exporting to
memory as each span ends, and the process put back to having none afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def set_global_provider(provider: TracerProvider | None) -> None:
    """OpenTelemetry lets a process set its provider once; a test sets its own, then puts back
    the unset state, as OpenTelemetry's own test helpers do (``reset_trace_globals``)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    if provider is not None:
        trace.set_tracer_provider(provider)


class Spans:
    """The spans the test's provider exported, by name."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return [s.name for s in self.all()]


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    set_global_provider(provider)
    yield Spans(exporter)
    provider.shutdown()
    set_global_provider(None)


@pytest.fixture
def tracer(spans: Spans) -> trace.Tracer:
    """The test's own tracer: its spans stand for the request (or command) that enqueues."""
    return trace.get_tracer("tests")
