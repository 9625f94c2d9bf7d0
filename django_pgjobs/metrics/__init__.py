"""Prometheus metrics, through ``prometheus_client`` (the ``metrics`` extra).

Two kinds, served in three places (docs/howto/observability.md#metrics lists every metric):

- **Database gauges** (:mod:`.collector`, read by :mod:`.readings`): jobs by queue and state,
  dead letters, the oldest due job's age, live workers and busy slots, schedules, workflows,
  queue limits. Computed at scrape time by bounded statements and reused for
  ``PGJOBS["METRICS_CACHE_SECONDS"]``: the same from any process, so served by
  ``manage.py pgjobs metrics``, the view (:mod:`.views`) and a worker's exporter alike.
- **Worker counters and histograms** (:mod:`.worker`): runs by outcome, failures, retries,
  rescues, run durations, start latency, this worker's slots. Only a process that runs jobs has
  them, so only a worker's exporter (``pgjobs_worker --metrics-port``) serves them; with
  ``--metrics-scope worker`` it serves only them (and the process's), without the gauges.

Nothing here imports ``prometheus_client`` until asked: ``import django_pgjobs`` never needs it.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

MISSING = "prometheus_client is not installed: pip install django-pgjobs[metrics]"
# What a worker's port serves (``pgjobs_worker --metrics-scope``): everything (the default), or
# the process's own metrics without the database gauges (no read of the database per scrape).
EXPORTER_SCOPES = ("all", "worker")


def require_prometheus_client() -> None:
    """Raise ImproperlyConfigured saying how to install it, if ``prometheus_client`` is not
    importable."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ImproperlyConfigured(MISSING) from None


def database_text(*, using: str | None = None) -> str:
    """The database gauges in Prometheus' text format, read now (or from the process's cache):
    what ``manage.py pgjobs metrics`` prints."""
    require_prometheus_client()
    from prometheus_client import generate_latest

    from django_pgjobs.metrics.collector import database_registry

    return generate_latest(database_registry(using=using)).decode()
