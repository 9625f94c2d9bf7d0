"""``manage.py pgjobs_scheduler``: run only the scheduler (workers run one too, by default)."""

from __future__ import annotations

import signal
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from django_pgjobs.database import (
    SCHEDULER_NAME,
    command_database,
    process_connections_named,
    require_migrated,
)
from django_pgjobs.exceptions import PgJobsError
from django_pgjobs.observability.display import counted, printable
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.setting_errors import poll_interval_error


class Command(BaseCommand):
    help = "Fire due schedule ticks as jobs until stopped. Safe to run any number of copies."
    requires_migrations_checks = True

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database", default=None, help="Database alias (default: PGJOBS['DATABASE'])."
        )
        parser.add_argument(
            "--poll-interval", type=float, default=None, help="Longest sleep between checks."
        )
        parser.add_argument("--once", action="store_true", help="Fire what is due now, then exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        poll_interval_error(options["poll_interval"])
        try:
            # Refuse a database `migrate` has not fully upgraded: every claim would fail on a
            # missing table or column, and the loop would retry it for ever.
            require_migrated(command_database(options["database"]))
        except PgJobsError as exc:
            raise CommandError(printable(exc)) from exc
        # The start-up checks opened this thread's Django connection; the scheduler uses its own,
        # so it would sit idle as long as the process lives. One opened later (a handler's
        # partition key read from the database) says whose it is.
        connections.close_all()
        scheduler = Scheduler(using=options["database"], poll_interval=options["poll_interval"])
        with process_connections_named(SCHEDULER_NAME):
            self._serve(scheduler, once=options["once"])

    def _serve(self, scheduler: Scheduler, *, once: bool) -> None:
        if once:
            report = scheduler.run_once()
            scheduler.close()
            self.stdout.write(
                f"Enqueued {counted(report.enqueued, 'job')}; skipped "
                f"{counted(report.skipped, 'missed tick')}."
            )
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            scheduler.request_stop()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write("pgjobs scheduler running")
        try:
            scheduler.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("pgjobs scheduler stopped")
