"""``manage.py pgjobs_worker``: parse options, run a :class:`~django_pgjobs.worker.loop.Worker`."""

from __future__ import annotations

import gc
import os
import sys
from argparse import ArgumentParser
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from django_pgjobs.conf import conf
from django_pgjobs.database import (
    HANDLER_NAME,
    command_database,
    process_connections_named,
    require_migrated,
)
from django_pgjobs.exceptions import PgJobsError, WorkerIdInUse
from django_pgjobs.jobs.registry import registry
from django_pgjobs.metrics import EXPORTER_SCOPES, require_prometheus_client
from django_pgjobs.observability.display import in_number, printable
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX
from django_pgjobs.setting_errors import poll_interval_error
from django_pgjobs.worker.loop import Worker
from django_pgjobs.worker.process import configure_logging
from django_pgjobs.worker.runners import POOLS
from django_pgjobs.workflows.registry import workflows

if TYPE_CHECKING:
    from django_pgjobs.metrics.exporter import Exporter
    from django_pgjobs.metrics.worker import WorkerMetrics


def _queues(value: str) -> list[str]:
    return [q.strip() for q in value.split(",") if q.strip()]


# Allocations between two collections of the young objects while the worker runs (Python's
# default is 700): see Command._serve.
YOUNG_COLLECTION = 10_000


class Command(BaseCommand):
    help = "Run jobs from the PostgreSQL queue until stopped (SIGTERM/SIGINT drain gracefully)."
    # Warn at start-up instead of failing every claim on a table that does not exist yet.
    requires_migrations_checks = True

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--queues", type=_queues, default=None, help="Comma-separated queues (default: all)."
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help=f"Handler threads (default: PGJOBS['CONCURRENCY'], {conf.CONCURRENCY}).",
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=None,
            help="Seconds between polls when no NOTIFY arrives.",
        )
        parser.add_argument("--burst", action="store_true", help="Run what is due now, then exit.")
        parser.add_argument(
            "--max-jobs", type=int, default=None, help="Exit after claiming this many jobs."
        )
        parser.add_argument(
            "--worker-id",
            default=None,
            help="Name shown in pgjobs_workers (default: host-pid-random).",
        )
        parser.add_argument(
            "--database", default=None, help="Database alias (default: PGJOBS['DATABASE'])."
        )
        parser.add_argument(
            "--no-scheduler", action="store_true", help="Do not fire schedules from this worker."
        )
        parser.add_argument(
            "--pool",
            choices=POOLS,
            default="thread",
            help="Where handlers run: in the worker's threads (default), or each thread's in a "
            "child process of its own, killed at a timeout.",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            metavar="PORT",
            help="Serve Prometheus metrics on this port: the worker's counters and histograms "
            "and the database gauges (0: any free port; needs the metrics extra).",
        )
        parser.add_argument(
            "--metrics-address",
            default=None,
            metavar="ADDRESS",
            help="Address the metrics port listens on (default 127.0.0.1: this host only).",
        )
        parser.add_argument(
            "--metrics-scope",
            choices=EXPORTER_SCOPES,
            default=None,
            help="What the metrics port serves: 'all' (default), this worker's metrics and the "
            "database gauges; 'worker', this process's metrics only, no database read per "
            "scrape (with many workers, scrape the database gauges from one place instead).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.")
        if options["max_jobs"] is not None and options["max_jobs"] < 1:
            raise CommandError("--max-jobs must be at least 1.")
        poll_interval_error(options["poll_interval"])
        if options["queues"] is not None and not options["queues"]:
            raise CommandError(
                "--queues was given but names no queue; omit it to serve all queues."
            )
        metrics = self._metrics(
            options["metrics_port"], options["metrics_address"], options["metrics_scope"]
        )
        try:
            # Refuse a database `migrate` has not fully upgraded: every claim would fail on a
            # missing table or column, and the loop would retry it for ever.
            require_migrated(command_database(options["database"]))
        except PgJobsError as exc:
            raise CommandError(printable(exc)) from exc
        configure_logging(options["verbosity"])
        worker = Worker(
            queues=options["queues"],
            concurrency=options["concurrency"],
            poll_interval=options["poll_interval"],
            worker_id=options["worker_id"],
            max_jobs=options["max_jobs"],
            using=options["database"],
            # A burst drains the queue and exits: no place to wait for schedule ticks.
            scheduler=not options["no_scheduler"] and not options["burst"],
            pool=options["pool"],
            metrics=metrics,
        )
        # Before any handler connects: the process's Django connections name the worker too.
        with process_connections_named(f"{HANDLER_NAME} {worker.worker_id}"):
            self._serve(worker, metrics, options)

    def _serve(
        self, worker: Worker, metrics: WorkerMetrics | None, options: dict[str, Any]
    ) -> None:
        """Start the metrics port if asked, run the worker until it stops, say what it did."""
        exporter = self._start_exporter(worker, metrics, options)
        # A workflow's runner is registered as a job too (pgjobs.workflow:<version>): name the
        # workflows instead of that internal name.
        names = [name for name in registry.names() if not name.startswith(WORKFLOW_JOB_PREFIX)]
        flows = [definition.name for definition in workflows.all()]
        # -v 0 is quiet: warnings and errors only. Except the port --metrics-port 0 chose,
        # which nothing else says.
        quiet = options["verbosity"] < 1
        if not quiet or options["metrics_port"] == 0:
            self.stdout.write(
                f"pgjobs worker {worker.worker_id}: queues={','.join(worker.queues) or 'all'} "
                f"concurrency={worker.concurrency} pool={worker.pool} handlers={len(names)} "
                f"({', '.join(names) or 'none'}) workflows={len(flows)} "
                f"({', '.join(flows) or 'none'})"
                + ("" if exporter is None else f" metrics={exporter.url}")
            )
            self.stdout.flush()  # a supervisor (or a test) reading a pipe learns the port now
        # The start-up checks (pending migrations) opened this thread's Django connection; the
        # worker never uses it, so it would sit idle as long as the process lives.
        connections.close_all()
        # What is loaded by now (Django, the project, its handlers) lives as long as the
        # worker: frozen out of the garbage collector's way while it runs, so that the full
        # collections the objects of thousands of jobs a second set off no longer walk all of
        # it each time (a default drain of no-op jobs: +6-8%, benchmarks/README.md). Collected
        # first: garbage frozen would stay; thawed after, for a caller that goes on. And the
        # young objects are collected every YOUNG_COLLECTION allocations, not every 700: a job
        # allocates tens of objects, most freed at once by their counts, so the default walked
        # the young ones every few dozen jobs (11% of a default drain's time; 3% at 10,000).
        restore_signals = worker.install_signal_handlers()
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], YOUNG_COLLECTION), *thresholds[1:])
        try:
            stats = worker.run(burst=options["burst"])
        except WorkerIdInUse as exc:
            raise CommandError(printable(exc)) from exc
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            restore_signals()
            if exporter is not None:
                exporter.close()
        # What ended, then what went back to the queue (the last three only when there were any).
        said = [
            f"{stats.completed} completed", f"{stats.retried} retried",
            f"{stats.buried} dead-lettered", f"{stats.released} released",
        ] + [f"{n} {word}" for n, word in ((stats.cancelled, "cancelled"),
                                          (stats.snoozed, "snoozed"),
                                          (stats.handed_back,
                                           in_number("workflow run(s) waiting", stats.handed_back)))
             if n]  # fmt: skip
        if not quiet:
            self.stdout.write(f"pgjobs worker {worker.worker_id} stopped: {', '.join(said)}")
        status = 0
        if worker.stop_reason is not None:
            # It stopped by itself: exit non-zero, so a supervisor starts a fresh process.
            self.stderr.write(f"pgjobs worker {worker.worker_id}: {worker.stop_reason}")
            status = 1
        if worker.abandoned or worker.abandoned_threads:
            # Handler threads that outlived the grace period or their timeout cannot be joined;
            # their jobs are already handed back or failed, so leave without waiting for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        if status:
            sys.exit(status)

    def _metrics(
        self, port: int | None, address: str | None, scope: str | None
    ) -> WorkerMetrics | None:
        """The worker's metrics, if --metrics-port asks for them; refused before anything runs
        when prometheus_client is missing."""
        if port is None:
            if address is not None:
                raise CommandError("--metrics-address needs --metrics-port.")
            if scope is not None:
                raise CommandError("--metrics-scope needs --metrics-port.")
            return None
        if not 0 <= port <= 65535:
            raise CommandError(f"--metrics-port must be a port number (0 to 65535); got {port}.")
        try:
            require_prometheus_client()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        from django_pgjobs.metrics.worker import WorkerMetrics

        return WorkerMetrics()

    def _start_exporter(
        self, worker: Worker, metrics: WorkerMetrics | None, options: dict[str, Any]
    ) -> Exporter | None:
        if metrics is None:
            return None
        from django_pgjobs.metrics.exporter import DEFAULT_ADDRESS, start_exporter

        metrics.watch(slots=worker.concurrency, busy=lambda: worker.busy_slots)
        port, address = options["metrics_port"], options["metrics_address"] or DEFAULT_ADDRESS
        try:
            return start_exporter(
                metrics,
                port=port,
                address=address,
                using=worker.alias,
                database=options["metrics_scope"] != "worker",
            )
        except OSError as exc:
            worker.close()  # its wake-up pipe, for a caller that goes on (call_command)
            raise CommandError(f"Cannot serve metrics on {address} port {port}: {exc}") from exc
