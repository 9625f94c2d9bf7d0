"""``manage.py pgjobs ACTION``: status, list, explain, retry, requeue-dead, cancel, prune,
enqueue, schedules, run-schedule, queues, pause, resume, queue-limits, health and metrics, thin
wrappers over the API.

Every line goes through :func:`~django_pgjobs.observability.display.printable` (stored text is
shown escaped, never as control characters) and every time through
:func:`~django_pgjobs.observability.display.local_time` (``TIME_ZONE``, offset shown).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_pgjobs.database import command_database
from django_pgjobs.exceptions import JobNotFound, PgJobsError
from django_pgjobs.jobs import operations as jobs
from django_pgjobs.jobs import producer as enqueueing
from django_pgjobs.jobs.registry import registry
from django_pgjobs.jobs.short_ids import job_id_named
from django_pgjobs.jobs.validation import MAX_TIMEOUT, MIN_TIMEOUT
from django_pgjobs.management.output import aligned, reader_may_leave
from django_pgjobs.metrics import database_text
from django_pgjobs.models import JobStatus
from django_pgjobs.observability.connections import connection_counts
from django_pgjobs.observability.display import counted, in_number, local_time, printable
from django_pgjobs.observability.explain import explain_job
from django_pgjobs.observability.health import database_health
from django_pgjobs.observability.health_report import health_report
from django_pgjobs.observability.queues import (
    LIMIT_OPTIONS,
    pause_said,
    queue_limits_said,
    queue_views,
)
from django_pgjobs.observability.schedules import schedule_views
from django_pgjobs.observability.status import queue_status
from django_pgjobs.observability.status_report import status_report
from django_pgjobs.queues import control as queue_control
from django_pgjobs.schedules.scheduler import run_schedule_now
from django_pgjobs.setting_errors import MAX_STORED_SECONDS


class Command(BaseCommand):
    help = "Inspect and operate the job queue."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database", default=None, help="Database alias (default: PGJOBS['DATABASE'])."
        )
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("status", help="Counts by queue and status, dead letters, workers, lag.")
        listing = sub.add_parser("list", help="Recent jobs, newest first.")
        listing.add_argument("--status", choices=[*JobStatus.values, "dead"], default=None)
        listing.add_argument("--queue", default=None)
        listing.add_argument("--job-name", default=None)
        listing.add_argument(
            "--exception",
            default=None,
            help="Dead letters whose error is this class (--status dead).",
        )
        listing.add_argument("--limit", type=int, default=50)
        explain = sub.add_parser(
            "explain", help="Why a job (or dead letter) is not running: what holds it back."
        )
        explain.add_argument("job_id")
        retry = sub.add_parser(
            "retry", help="Run a pending, cancelled or dead-lettered job again now."
        )
        retry.add_argument("job_id")
        requeue = sub.add_parser(
            "requeue-dead", help="Requeue every matching dead letter (under its own id), in one go."
        )
        requeue.add_argument("--job-name", default=None)
        requeue.add_argument("--queue", default=None)
        requeue.add_argument(
            "--exception", default=None, help="Error class, e.g. ValueError or shop.PaymentError."
        )
        requeue.add_argument(
            "--all", action="store_true", help="Requeue every dead letter (no filter given)."
        )
        requeue.add_argument(
            "--dry-run", action="store_true", help="Only say how many would be requeued."
        )
        cancel = sub.add_parser("cancel", help="Cancel a pending or running job.")
        cancel.add_argument("job_id")
        prune = sub.add_parser("prune", help="Delete finished jobs older than RETENTION now.")
        prune.add_argument(
            "--older-than", type=float, default=None, metavar="SECONDS", help="Override RETENTION."
        )
        sub.add_parser("schedules", help="Schedules with their next five fire times.")
        run_schedule = sub.add_parser(
            "run-schedule", help="Enqueue a schedule's job now (manual run)."
        )
        run_schedule.add_argument("name")
        sub.add_parser("queues", help="Queues: paused or not, limits, running and due jobs.")
        pause = sub.add_parser("pause", help="Pause a queue: it accepts jobs and starts none.")
        pause.add_argument("queue")
        resume = sub.add_parser("resume", help="Resume a paused queue.")
        resume.add_argument("queue")
        limits = sub.add_parser(
            "queue-limits",
            help="Change a queue's limits (those given; 'none' removes one), overriding "
            "PGJOBS['QUEUES'] until --reset.",
        )
        limits.add_argument("queue")
        for option, kind in LIMIT_OPTIONS.items():
            limits.add_argument(f"--{option.replace('_', '-')}", metavar=kind, default=None)
        limits.add_argument(
            "--reset", action="store_true", help="Back to PGJOBS['QUEUES'] (no limits if absent)."
        )
        sub.add_parser(
            "health",
            help="PostgreSQL health of the queue's tables: dead rows, bloat, vacuum held back, "
            "XID age; exits 1 when something warns.",
        )
        sub.add_parser(
            "metrics", help="The database gauges in Prometheus' text format (the metrics extra)."
        )
        add = sub.add_parser("enqueue", help="Add a job.")
        add.add_argument("job_name")
        add.add_argument("--payload", default="{}", help="JSON payload (default {}).")
        add.add_argument("--queue", default=None)
        add.add_argument("--priority", type=int, default=None)
        add.add_argument("--max-attempts", type=int, default=None)
        add.add_argument("--delay", type=float, default=None, metavar="SECONDS")
        add.add_argument("--key", default=None)
        add.add_argument("--partition-key", default=None)
        add.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
        # An option is taken only as spelled: argparse would read `--worker 3` as the
        # worker concurrency option, a limit the operator never named.
        for action in sub.choices.values():
            action.allow_abbrev = False

    def handle(self, *args: Any, **options: Any) -> None:
        for option in ("older_than", "delay"):
            # At most a century: a time computed from more is out of the tables' range (and
            # past timedelta's, an OverflowError; infinity, a ValueError).
            if options.get(option) is not None and not 0 <= options[option] <= MAX_STORED_SECONDS:
                raise CommandError(
                    f"--{option.replace('_', '-')} must be a number of seconds from 0 to "
                    f"{MAX_STORED_SECONDS} (100 years); got {options[option]:g}."
                )
        timeout = options.get("timeout") if options["action"] == "enqueue" else None
        if timeout is not None and not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
            raise CommandError(
                f"--timeout takes seconds from {MIN_TIMEOUT} to {MAX_TIMEOUT:.0f} (a year), "
                f"e.g. 60; got {timeout:g}."
            )
        if options.get("exception") and options["action"] == "list" and options["status"] != "dead":
            raise CommandError("--exception filters dead letters: add --status dead.")
        try:
            command_database(options["database"])
            with reader_may_leave(self.stdout._out):
                action = getattr(self, f"do_{options['action'].replace('-', '_')}")
                action(options, options["database"])
        except PgJobsError as exc:
            raise CommandError(printable(exc)) from exc

    def say(self, line: str, style: Callable[[str], str] | None = None) -> None:
        """Write one line of output; stored text in it is shown escaped."""
        shown = printable(line).rstrip()
        self.stdout.write(shown if style is None else style(shown))

    def do_status(self, options: dict[str, Any], using: str | None) -> None:
        report = status_report(queue_status(using=using), connection_counts(using=using))
        for line, warns in report:
            self.say(line, self.style.WARNING if warns else None)

    def do_list(self, options: dict[str, Any], using: str | None) -> None:
        # Columns as wide as what they show (management.output.aligned): job names and queues
        # are the application's, up to 200 characters, and a fixed width let a long one push
        # the rest of its row out of line.
        header = ["id", "state", "job", "queue", "tries"]
        if options["status"] == "dead":
            rows: list[list[str]] = [[*header, "failed at", "error"]]
            for dead in jobs.list_dead_letter_jobs(
                queue=options["queue"],
                job_name=options["job_name"],
                exception=options["exception"],
                limit=options["limit"],
                using=using,
            ):
                rows.append(
                    [str(dead.id), "dead", dead.job_name, dead.queue,
                     f"{dead.attempt}/{dead.max_attempts}", local_time(dead.failed_at),
                     _first_line(dead.error)]
                )  # fmt: skip
            for line in aligned(rows):
                self.say(line)
            return
        rows = [[*header, "progress", "due at", "error"]]
        keys: list[str | None] = [None]
        for job in jobs.list_jobs(
            status=options["status"],
            queue=options["queue"],
            job_name=options["job_name"],
            limit=options["limit"],
            using=using,
        ):
            progress = "" if job.progress is None else f"{job.progress}%"
            rows.append(
                [str(job.id), job.status, job.job_name, job.queue,
                 f"{job.attempt}/{job.max_attempts}", progress, local_time(job.scheduled_for),
                 _first_line(job.error)]
            )  # fmt: skip
            keys.append(job.partition_key)
        for line, key in zip(aligned(rows), keys, strict=True):
            self.say(line)
            if key is not None:
                # A line of its own, under the job's state: the columns stay as scripts read them.
                self.say(f"{'':<38}partition key: {key}")

    def do_explain(self, options: dict[str, Any], using: str | None) -> None:
        said = explain_job(options["job_id"], using=using)
        key = "" if said.partition_key is None else f", partition key {said.partition_key}"
        self.say(f"Job {said.job_id} ({said.job_name}, queue {said.queue}{key}): {said.status}")
        self.say(f"  {said.blocker.label}: {said.message}")
        if said.until is not None:
            self.say(f"  until: {local_time(said.until)}")
        if said.blocking_job_ids:
            self.say(f"  in its way: {', '.join(map(str, said.blocking_job_ids))}")
        if said.worker_id is not None:
            self.say(f"  worker: {said.worker_id}")

    def do_retry(self, options: dict[str, Any], using: str | None) -> None:
        named = job_id_named(options["job_id"], using=using)  # a short id too, as explain's
        try:
            jobs.retry_job(named, using=using)
            self.say(f"Job {named} will run again now.")
        except JobNotFound as exc:
            if not exc.dead_lettered:
                raise
            job_id = jobs.retry_dead_letter_job(named, using=using)
            self.say(f"Dead letter {named} re-queued as job {job_id}.")

    def do_requeue_dead(self, options: dict[str, Any], using: str | None) -> None:
        filters = {k: options[k] for k in ("job_name", "queue", "exception")}
        if not any(filters.values()) and not options["all"]:
            raise CommandError(
                "Name what to requeue (--job-name, --queue, --exception), or pass --all to "
                "requeue every dead letter."
            )
        done = jobs.requeue_dead_letter_jobs(**filters, dry_run=options["dry_run"], using=using)
        shown = ", ".join(map(str, done.job_ids))
        letters = f"{done.count} {in_number('dead letter(s)', done.count)}"
        if options["dry_run"]:
            self.say(f"{letters} would be requeued (dry run: nothing changed).")
        elif done.count == len(done.job_ids):
            self.say(f"Requeued {letters} as {in_number('job(s)', done.count)}: {shown or 'none'}.")
        else:
            self.say(f"Requeued {letters} as jobs; the first: {shown}.")

    def do_cancel(self, options: dict[str, Any], using: str | None) -> None:
        named = job_id_named(options["job_id"], using=using)  # a short id too, as explain's
        jobs.cancel_job(named, using=using)
        self.say(f"Job {named} cancelled.")

    def do_prune(self, options: dict[str, Any], using: str | None) -> None:
        deleted = jobs.prune_jobs(retention=options["older_than"], using=using)
        self.say(f"Pruned {deleted} finished jobs.")

    def do_schedules(self, options: dict[str, Any], using: str | None) -> None:
        views = schedule_views(using=using)
        if not views:
            self.say("(no schedules)")
        for view in views:
            self.say(f"{view.name}  [{view.cron}] {view.timezone}  -> {view.job_name}")
            self.say(f"    {_SCHEDULE_STATES[view.state].format(source=view.source)}")
            last = "never" if view.last_run_at is None else local_time(view.last_run_at)
            self.say(f"    last tick: {last}")
            if view.state == "orphaned":
                continue
            if view.problem is not None:
                self.say(f"    invalid: {view.problem}")
                continue
            label = "next (if enabled)" if view.state == "disabled" else "next"
            times = ", ".join(map(local_time, view.upcoming)) or "none (window closed)"
            self.say(f"    {label}: {times}")

    def do_run_schedule(self, options: dict[str, Any], using: str | None) -> None:
        job_id = run_schedule_now(options["name"], using=using)
        self.say(f"Schedule {options['name']} enqueued job {job_id} (manual run).")

    def do_queues(self, options: dict[str, Any], using: str | None) -> None:
        queue_control.sync_declared_queues(using=using)  # settings deployed since workers started
        views = queue_views(using=using)
        if not views:
            self.say("(no queues)")
        for view in views:
            state = "PAUSED" if view.paused else "active"
            self.say(
                f"{view.name}  {state}  running={view.running} due={view.due}"
                f"{'  (changed by an operator)' if view.overridden else ''}"
            )
            self.say(f"    {view.limits or 'no limits'}")

    def do_pause(self, options: dict[str, Any], using: str | None) -> None:
        queue_control.sync_declared_queues(using=using)  # a pause the settings declare counts
        changed = queue_control.pause_queue(options["queue"], using=using)
        self.say(pause_said(options["queue"], paused=True, changed=changed, using=using))

    def do_resume(self, options: dict[str, Any], using: str | None) -> None:
        queue_control.sync_declared_queues(using=using)
        changed = queue_control.resume_queue(options["queue"], using=using)
        self.say(pause_said(options["queue"], paused=False, changed=changed, using=using))

    def do_queue_limits(self, options: dict[str, Any], using: str | None) -> None:
        given = {o: options[o] for o in LIMIT_OPTIONS if options[o] is not None}
        self.say(queue_limits_said(options["queue"], given, reset=options["reset"], using=using))

    def do_health(self, options: dict[str, Any], using: str | None) -> None:
        health = database_health(using=using)
        for line, warns in health_report(health):
            self.say(line, self.style.WARNING if warns else None)
        if health.warnings:
            # For cron and monitoring checks: a non-zero status when anything warns.
            raise CommandError(f"{counted(len(health.warnings), 'health warning')}.", returncode=1)

    def do_metrics(self, options: dict[str, Any], using: str | None) -> None:
        try:
            text = database_text(using=using)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        # As prometheus_client wrote it, byte for byte: a collector parses it, and it escapes
        # what the format requires (a label value may hold any other character, U+2028 or a
        # tab among them, which a terminal-safe rewrite would break).
        self.stdout.write(text, ending="")

    def do_enqueue(self, options: dict[str, Any], using: str | None) -> None:
        try:
            payload = json.loads(options["payload"])
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and an integer past Python's digit limit;
            # RecursionError, nesting deeper than the interpreter's limit.
            raise CommandError(f"--payload is not JSON Python can read: {exc}") from exc
        job_id = enqueueing.enqueue(
            options["job_name"],
            payload,
            queue=options["queue"],
            priority=options["priority"],
            max_attempts=options["max_attempts"],
            scheduled_for=None if options["delay"] is None else timedelta(seconds=options["delay"]),
            key=options["key"],
            partition_key=options["partition_key"],
            timeout=options["timeout"],
            using=using,
        )
        if registry.get(options["job_name"]) is None:
            # Still enqueued: the handler may live in code deployed elsewhere (another service's
            # workers). But a typo would wait forever, so say so.
            self.stderr.write(
                printable(
                    f"Warning: no handler is registered for {options['job_name']!r} in this "
                    "code base; the job waits until a worker that has one claims it."
                ),
                self.style.WARNING,
            )
        self.say(str(job_id))


_SCHEDULE_STATES = {
    "enabled": "enabled; declared in {source}",
    "disabled": "disabled; declared in {source}",
    "orphaned": "not firing: its declaration was removed from {source}",
    "unsynced": (
        "declared in {source}, not synced yet: a worker's scheduler (or pgjobs_scheduler) "
        "adds it when it starts"
    ),
}


def _first_line(error: str | None) -> str:
    return (error or "").split("\n", 1)[0]
