"""The one place django-pgjobs imports OpenTelemetry: whether the API is installed, the
library's tracer, spans opened and closed the same way everywhere, and the carrier a job keeps.

Only ``opentelemetry-api`` is needed (the ``otel`` extra); the SDK and exporters are the
application's to set up. A job carries the W3C trace context only, whatever propagators the
application configured (see :func:`carrier`). Without the API, :data:`INSTALLED` is False and
every function here returns at once: the rest of the package never touches OpenTelemetry itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from django_pgjobs import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the `otel` extra is not installed: nothing is traced
    INSTALLED = False
else:
    INSTALLED = True

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

Kind = Literal["producer", "consumer", "internal"]
# Attribute values as OpenTelemetry takes them.
Attributes = Mapping[str, str | bool | int | float]

# (provider, its tracer): a tracer is cheap to keep and not free to make, and an application
# (or a test) may set the global provider after a first span.
_tracer: tuple[Any, Tracer] | None = None


def in_span() -> bool:
    """A span is current here (the request's, a command's, a handler's): an enqueue joins its
    trace. False without the API, and outside any span, which costs a context look-up."""
    return INSTALLED and trace.get_current_span().get_span_context().is_valid


def recording() -> bool:
    """The current span records (a TracerProvider is set and sampled it): a span inside it,
    a workflow's or a step's, would record too."""
    return INSTALLED and trace.get_current_span().is_recording()


def configured() -> bool:
    """The application set a TracerProvider (the SDK's, say). Until then the API's own proxy
    makes spans that record nothing: a job enqueued outside a trace then runs without one.

    Asked for every job a worker runs, so it reads the provider the API keeps, as the API's
    own proxy does: until a provider is set, ``get_tracer_provider()`` looks for
    ``OTEL_PYTHON_TRACER_PROVIDER`` in the environment at each call (2 µs, a few percent of a
    no-op job). That variable, set, makes the API build its provider at the first call."""
    if not INSTALLED:
        return False
    provider = getattr(trace, "_TRACER_PROVIDER", _NOT_KEPT)
    if provider is _NOT_KEPT or (provider is None and _PROVIDER_IN_ENVIRONMENT):
        provider = trace.get_tracer_provider()  # an API that keeps it elsewhere: the slow way
    return provider is not None and not isinstance(provider, _DEFAULT_PROVIDERS)


def _the_tracer() -> Tracer:
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer("django_pgjobs", __version__))
    return _tracer[1]


def carrier() -> str | None:
    """The current span's W3C ``traceparent`` and ``tracestate``, as JSON text; None when
    there is none. Written by the W3C propagator itself, not the global one: the global one
    also writes ``baggage`` (by default), which may carry user data (an e-mail, a tenant) that
    would then sit in the jobs table, readable by whoever reads it, and that no span needs to
    link a run to its enqueue."""
    written: dict[str, str] = {}
    _W3C.inject(written)
    return json.dumps(written, separators=(",", ":")) if written else None


def _extracted(text: str | None) -> Context:
    """The context a job's ``trace_context`` carries, on an empty context (never the running
    thread's: a job's run belongs to the trace that enqueued it, or starts one). Read by the
    W3C propagator only, as :func:`carrier` writes: a ``baggage`` key written by SQL (or by an
    older version) is not attached to the run. Anything that is not a JSON object of strings
    carries nothing."""
    empty = otel_context.Context()
    if text is None:
        return empty
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        return empty
    if not isinstance(found, dict):
        return empty
    strings = {k: v for k, v in found.items() if isinstance(v, str)}
    try:
        return _W3C.extract(strings, context=empty)
    except Exception:  # a propagator that chokes on what SQL wrote: the run starts a trace
        return empty


@contextmanager
def span(
    name: str, kind: Kind, attributes: Attributes, *, carried: str | None = None
) -> Iterator[Span]:
    """A span made current for the ``with`` block and ended after it. An ``Exception`` out of
    the block is recorded and sets the status to ERROR; a ``BaseException`` that is control
    flow (a workflow suspending) passes unrecorded.

    A consumer span's parent is the context ``carried`` (a job's ``trace_context``), which it
    also links to, as OpenTelemetry's messaging conventions ask of a message's processing: a
    link always, and the parent when one message is processed. Without a carried context it
    starts a trace of its own. Producer and internal spans are children of the current span.
    """
    links = None
    context = None
    if kind == "consumer":
        context = _extracted(carried)
        linked = trace.get_current_span(context).get_span_context()
        links = [trace.Link(linked)] if linked.is_valid else None
    started = _the_tracer().start_span(
        name,
        context=context,
        kind=_KINDS[kind],
        attributes=attributes,
        links=links,
    )
    with trace.use_span(
        started, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            yield started
        except Exception as exc:
            record(started, exc)
            failed(started, f"{type(exc).__name__}: {exc}", class_path(exc))
            raise


def current() -> Span | None:
    """The current span if it records, else None."""
    if not INSTALLED:
        return None
    found = trace.get_current_span()
    return found if found.is_recording() else None


def record(target: Span, exc: BaseException) -> None:
    """An ``exception`` event on ``target``: the class, message and traceback."""
    target.record_exception(exc)


def failed(target: Span, description: str, error_type: str | None) -> None:
    """Status ERROR, with the semantic conventions' ``error.type`` (the exception's class)."""
    if error_type is not None:
        target.set_attribute("error.type", error_type)
    target.set_status(trace.Status(trace.StatusCode.ERROR, description))


def class_path(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def flush() -> None:
    """Export what the provider still holds (a process about to end without running its
    ``atexit`` hooks, as a ``--pool process`` child does). No-op without one that flushes."""
    if not INSTALLED:
        return
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush()


_NOT_KEPT = object()
_PROVIDER_IN_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ

if INSTALLED:
    _W3C = TraceContextTextMapPropagator()
    _DEFAULT_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    _KINDS = {
        "producer": trace.SpanKind.PRODUCER,
        "consumer": trace.SpanKind.CONSUMER,
        "internal": trace.SpanKind.INTERNAL,
    }
