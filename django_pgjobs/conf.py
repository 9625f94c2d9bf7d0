"""Typed, live access to the ``PGJOBS`` settings dict.

Values are read from ``django.conf.settings`` on every access so ``override_settings`` works in
tests. Validation lives in :mod:`django_pgjobs.checks`; here a malformed value falls back to
nothing clever: it is returned as given and the system check reports it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from django.conf import settings

# Thresholds of ``pgjobs health``, the dashboard's health section and the metrics' warnings
# (docs/howto/observability.md, "PostgreSQL health"). ``PGJOBS["HEALTH"]`` is merged over these,
# so a project sets only those it changes.
HEALTH_DEFAULTS: Final[dict[str, Any]] = {
    # A table warns when this fraction of its rows is dead (autovacuum starts at 20% of the live
    # rows, a sixth of all; well past that, it is not keeping up or cannot remove them) ...
    "DEAD_RATIO": 0.3,
    # ... and at least this many are dead: 3 dead of 4 rows is 75%, and nothing to act on.
    "DEAD_ROWS": 10_000,
    # A table warns when this fraction of its heap is estimated to hold no live row ...
    "BLOAT_RATIO": 0.5,
    # ... and that space is at least this many bytes (1 GiB).
    "BLOAT_BYTES": 1024**3,
    # A session or prepared transaction holding back vacuum this long warns: at thousands of
    # jobs a second, five minutes of a queue's dead rows is already millions ...
    "XMIN_AGE_SECONDS": 300.0,
    # ... and any holder this many transactions behind: the measure for those whose start
    # PostgreSQL does not show (replication slots, other roles' sessions).
    "XMIN_AGE_TRANSACTIONS": 1_000_000,
    # The database's or a table's age in transaction IDs (and in multixacts) that warns: 2.5
    # times autovacuum_freeze_max_age's default, where freezing has fallen behind; PostgreSQL
    # stops assigning IDs at about 2,100 million.
    "XID_AGE": 500_000_000,
}

DEFAULTS: Final[dict[str, Any]] = {
    # Attempts a job gets before it moves to the dead-letter table (the seed's maxRetries).
    "MAX_ATTEMPTS": 3,
    # The largest job payload enqueue accepts, in bytes of JSON (None: no limit). A payload is
    # read whole by every claim, list and admin page that touches its job; 1 MiB (the limit of
    # Google Cloud Tasks; Amazon SQS allows 256 KiB) is far above ids and parameters, and far
    # below what slows a worker. Larger data belongs in a table or a file, its id in the payload.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # Base of the exponential backoff, in seconds: 1, 2, 4, 8 ... (the seed's retryDelayMs / 1000).
    "RETRY_DELAY": 1.0,
    # No retry waits longer than this, however many attempts came before.
    "RETRY_DELAY_MAX": 3600.0,
    # Spread each retry delay by up to +/- this fraction so a burst of failures (a dependency's
    # outage) does not come back in step: 10% moves a 1 s retry by up to 100 ms, and one at
    # RETRY_DELAY_MAX (an hour) down by up to six minutes, never past it (backoff_delay), as
    # Celery's retry_jitter and River spread theirs by default.
    "RETRY_JITTER": 0.1,
    # How often an idle worker looks for due jobs when no NOTIFY arrives (the seed's 5 s).
    "POLL_INTERVAL": 5.0,
    # Ignore LISTEN/NOTIFY and only poll: for PgBouncer in transaction mode, which drops LISTEN.
    "POLL_ONLY": False,
    # A running job whose worker has been silent this long is rescued by another worker.
    "LEASE_SECONDS": 60.0,
    # How often a worker renews its leases and its row in pgjobs_workers.
    "HEARTBEAT_SECONDS": 10.0,
    # Completed and cancelled jobs are deleted this long after they finished.
    "RETENTION": timedelta(days=1),
    # Finished workflows (with their steps, messages and events) are deleted this long after
    # they ended. Longer than RETENTION: a workflow's history is what fork_workflow reuses.
    "WORKFLOW_RETENTION": timedelta(days=7),
    # How often each worker runs the prune sweep.
    "PRUNE_INTERVAL": 300.0,
    # Handler threads per worker process.
    "CONCURRENCY": 4,
    # Most jobs a worker claims beyond its free handler threads (0: none). It claims only
    # about 50 ms of work ahead, judged from how long its recent jobs took, so this matters for
    # many short jobs (fewer, bigger claims) and never hoards long ones.
    "PREFETCH": 500,
    # On SIGTERM, how long running handlers get to finish before their jobs are handed back.
    "SHUTDOWN_GRACE": 30.0,
    # Seconds an attempt may run when neither the job, its handler nor its queue sets a timeout;
    # past it the attempt fails with JobTimeout (retried or dead-lettered as usual). Finite by
    # default: the heartbeat renews a running attempt's lease for as long as its handler runs,
    # so without a limit one hung handler (a socket read with no timeout) holds its job and its
    # thread for ever, unseen by the rescue. An hour is far past what a web-triggered job takes,
    # and long jobs say so with timeout=. None: no limit.
    "TIMEOUT": 3600.0,
    # The database alias the queue tables live in.
    "DATABASE": "default",
    # The alias workers, schedulers and waits LISTEN on, when DATABASE goes through a pooler in
    # transaction mode (PgBouncer): one that connects straight to the same PostgreSQL database.
    # None: DATABASE itself (nowhere under POLL_ONLY).
    "LISTEN_DATABASE": None,
    # The code version new workflows are pinned to (a release id, a git SHA). None: a digest of
    # the source of the modules that define workflows. Workers only resume their own version.
    "APP_VERSION": None,
    # Schedules declared in settings: {"name": {"cron": "0 2 * * *", "job": "report", ...}}.
    "SCHEDULES": {},
    # Queues' flow control: {"mail": {"concurrency": 5, "rate_limit": 100, "rate_period": 60}}.
    # Defaults an operator can override in the admin or the CLI (see docs/howto/queues.md).
    "QUEUES": {},
    # Thresholds of the PostgreSQL health warnings: {"XMIN_AGE_SECONDS": 600, ...}.
    "HEALTH": HEALTH_DEFAULTS,
    # Seconds the database figures of the metrics (manage.py pgjobs metrics, the view, a
    # worker's exporter) are reused before they are read again; every scraper of a process
    # shares them. 10 s: a scrape every 15 s reads the database at most once per scrape, and
    # several scrapers at once (two Prometheus servers, a reload) add nothing. 0: read each time.
    "METRICS_CACHE_SECONDS": 10.0,
    # The bearer token that opens the metrics view (Authorization: Bearer <token>) to a scraper
    # without a staff login. None: staff users only.
    "METRICS_TOKEN": None,
}


def seconds(value: Any) -> float:
    """A number of seconds, given as a number or a timedelta."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class PgJobsSettings:
    """Attribute access to ``settings.PGJOBS`` merged over :data:`DEFAULTS`."""

    def raw(self) -> dict[str, Any]:
        value = getattr(settings, "PGJOBS", {})
        return value if isinstance(value, dict) else {}

    def get(self, name: str) -> Any:
        return self.raw().get(name, DEFAULTS[name])

    @property
    def MAX_ATTEMPTS(self) -> int:
        return int(self.get("MAX_ATTEMPTS"))

    @property
    def MAX_PAYLOAD_BYTES(self) -> int | None:
        value = self.get("MAX_PAYLOAD_BYTES")
        return None if value is None else int(value)

    @property
    def RETRY_DELAY(self) -> float:
        return seconds(self.get("RETRY_DELAY"))

    @property
    def RETRY_DELAY_MAX(self) -> float:
        return seconds(self.get("RETRY_DELAY_MAX"))

    @property
    def RETRY_JITTER(self) -> float:
        return float(self.get("RETRY_JITTER"))

    @property
    def POLL_INTERVAL(self) -> float:
        return seconds(self.get("POLL_INTERVAL"))

    @property
    def POLL_ONLY(self) -> bool:
        return bool(self.get("POLL_ONLY"))

    @property
    def LEASE_SECONDS(self) -> float:
        return seconds(self.get("LEASE_SECONDS"))

    @property
    def HEARTBEAT_SECONDS(self) -> float:
        return seconds(self.get("HEARTBEAT_SECONDS"))

    @property
    def RETENTION(self) -> float:
        return seconds(self.get("RETENTION"))

    @property
    def WORKFLOW_RETENTION(self) -> float:
        return seconds(self.get("WORKFLOW_RETENTION"))

    @property
    def PRUNE_INTERVAL(self) -> float:
        return seconds(self.get("PRUNE_INTERVAL"))

    @property
    def CONCURRENCY(self) -> int:
        return int(self.get("CONCURRENCY"))

    @property
    def PREFETCH(self) -> int:
        return int(self.get("PREFETCH"))

    @property
    def SHUTDOWN_GRACE(self) -> float:
        return seconds(self.get("SHUTDOWN_GRACE"))

    @property
    def TIMEOUT(self) -> float | None:
        value = self.get("TIMEOUT")
        return None if value is None else seconds(value)

    @property
    def DATABASE(self) -> str:
        return str(self.get("DATABASE"))

    @property
    def LISTEN_DATABASE(self) -> str | None:
        value = self.get("LISTEN_DATABASE")
        return None if value is None else str(value)

    @property
    def APP_VERSION(self) -> str | None:
        value = self.get("APP_VERSION")
        return None if value is None else str(value)

    @property
    def HEALTH(self) -> dict[str, Any]:
        """The health thresholds: the given ones over :data:`HEALTH_DEFAULTS`."""
        value = self.get("HEALTH")
        return {**HEALTH_DEFAULTS, **(value if isinstance(value, dict) else {})}

    @property
    def METRICS_CACHE_SECONDS(self) -> float:
        return seconds(self.get("METRICS_CACHE_SECONDS"))

    @property
    def METRICS_TOKEN(self) -> str | None:
        """None for anything but a non-empty str: an empty token (``os.environ.get(...,"")`` of
        a variable not set) must close the view's token door, never open it to an empty token,
        and ``True`` or ``1`` must not open it to "True" or "1" (pgjobs.E004 reports them)."""
        value = self.get("METRICS_TOKEN")
        return value if isinstance(value, str) and value else None


conf = PgJobsSettings()
