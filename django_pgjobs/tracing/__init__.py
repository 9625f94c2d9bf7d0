"""OpenTelemetry traces of jobs and workflows (the ``otel`` extra; docs/howto/observability.md).

- :mod:`.otel`: the one import of OpenTelemetry, guarded: without ``opentelemetry-api`` every
  function here returns at once;
- :mod:`.jobs`: a PRODUCER span around each enqueue, whose context the job keeps in its
  ``trace_context`` column, and a CONSUMER span around each run, child of that context;
- :mod:`.workflows`: a span per workflow run and per step that runs (replayed steps run no code
  and get none), and a PRODUCER span around ``start_workflow()``.

What it costs when nobody traces: an enqueue outside a span asks OpenTelemetry for the current
span and writes NULL; a worker whose process set no TracerProvider looks at the claimed job's
``trace_context`` (NULL) and the global provider, and starts nothing.
"""
