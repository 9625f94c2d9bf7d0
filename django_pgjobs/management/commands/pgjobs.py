"""``manage.py pgjobs <status|list|retry|cancel|prune|enqueue>``: thin wrappers over the API."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from django_pgjobs.conf import conf
from django_pgjobs.database import command_database
from django_pgjobs.exceptions import JobNotFound, PgJobsError
from django_pgjobs.jobs import operations as jobs
from django_pgjobs.jobs import producer as enqueueing
from django_pgjobs.models import JobStatus, Schedule
from django_pgjobs.observability.status import QueueCounts, queue_status
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX as JOB_PREFIX
from django_pgjobs.schedules import crontab
from django_pgjobs.schedules.scheduler import run_schedule_now

_WHEN = "%Y-%m-%d %H:%M:%S"


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
        listing.add_argument("--limit", type=int, default=50)
        retry = sub.add_parser(
            "retry", help="Run a pending, cancelled or dead-lettered job again now."
        )
        retry.add_argument("job_id")
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
        add = sub.add_parser("enqueue", help="Add a job.")
        add.add_argument("job_name")
        add.add_argument("--payload", default="{}", help="JSON payload (default {}).")
        add.add_argument("--queue", default=None)
        add.add_argument("--priority", type=int, default=None)
        add.add_argument("--max-attempts", type=int, default=None)
        add.add_argument("--delay", type=float, default=None, metavar="SECONDS")
        add.add_argument("--key", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        for option in ("older_than", "delay"):
            if options.get(option) is not None and not options[option] >= 0:
                raise CommandError(
                    f"--{option.replace('_', '-')} must be a number of seconds >= 0."
                )
        try:
            command_database(options["database"])
            getattr(self, f"do_{options['action'].replace('-', '_')}")(options, options["database"])
        except PgJobsError as exc:
            raise CommandError(str(exc)) from exc

    def do_status(self, options: dict[str, Any], using: str | None) -> None:
        status = queue_status(using=using)
        columns = ("due", "scheduled", "running", "completed", "cancelled")
        self.stdout.write(f"{'queue':<20}" + "".join(f"{c:>11}" for c in columns))
        for queue, counts in sorted(status.queues.items()):
            self.stdout.write(
                f"{queue:<20}" + "".join(f"{getattr(counts, c):>11}" for c in columns)
            )
        if not status.queues:
            self.stdout.write("(no jobs)")
        total = QueueCounts(
            **{c: sum(getattr(q, c) for q in status.queues.values()) for c in columns}
        )
        self.stdout.write(f"{'total':<20}" + "".join(f"{getattr(total, c):>11}" for c in columns))
        self.stdout.write(f"dead letters: {status.dead_letters}")
        self.stdout.write(f"live workers: {len(status.live_workers)}")
        for worker in status.live_workers:
            self.stdout.write(
                f"  {worker.id} host={worker.hostname} pid={worker.pid} "
                f"queues={','.join(worker.queues) or 'all'} concurrency={worker.concurrency}"
            )
        lag = status.oldest_due_age
        self.stdout.write(
            "oldest due job: " + ("none" if lag is None else f"{timedelta(seconds=round(lag))} ago")
        )
        if status.workflows:
            self.stdout.write(
                "workflows: "
                + ", ".join(f"{state} {count}" for state, count in sorted(status.workflows.items()))
            )
        for name, count in status.unhandled.items():
            if name.startswith(JOB_PREFIX):
                version = name.removeprefix(JOB_PREFIX)
                self.stdout.write(
                    self.style.WARNING(
                        f"{count} workflow(s) pinned to code version {version!r}, which no worker "
                        "of this deployment runs: deploy that version, or move them with "
                        "`manage.py pgjobs_workflows resume ID --deployed`"
                    )
                )
                continue
            self.stdout.write(
                self.style.WARNING(f"due but no handler is registered for {name!r}: {count} job(s)")
            )

    def do_list(self, options: dict[str, Any], using: str | None) -> None:
        if options["status"] == "dead":
            self.stdout.write(
                f"{'id':<36}  {'state':<10} {'job':<30} {'queue':<12} tries  failed at  error"
            )
            for dead in jobs.list_dead_letter_jobs(
                queue=options["queue"],
                job_name=options["job_name"],
                limit=options["limit"],
                using=using,
            ):
                error = (dead.error or "").split("\n", 1)[0]
                self.stdout.write(
                    f"{dead.id}  dead       {dead.job_name:<30} {dead.queue:<12} "
                    f"{dead.attempt}/{dead.max_attempts}  {dead.failed_at:{_WHEN}}  {error}"
                )
            return
        self.stdout.write(
            f"{'id':<36}  {'state':<10} {'job':<30} {'queue':<12} tries  due at  error"
        )
        for job in jobs.list_jobs(
            status=options["status"],
            queue=options["queue"],
            job_name=options["job_name"],
            limit=options["limit"],
            using=using,
        ):
            error = (job.error or "").split("\n", 1)[0]
            progress = "" if job.progress is None else f" {job.progress}%"
            self.stdout.write(
                f"{job.id}  {job.status:<10} {job.job_name:<30} {job.queue:<12} "
                f"{job.attempt}/{job.max_attempts}{progress}  {job.scheduled_for:{_WHEN}}  {error}"
            )

    def do_retry(self, options: dict[str, Any], using: str | None) -> None:
        try:
            jobs.retry_job(options["job_id"], using=using)
            self.stdout.write(f"Job {options['job_id']} will run again now.")
        except JobNotFound as exc:
            if not exc.dead_lettered:
                raise
            new_id = jobs.retry_dead_letter_job(options["job_id"], using=using)
            self.stdout.write(f"Dead letter {options['job_id']} re-queued as job {new_id}.")

    def do_cancel(self, options: dict[str, Any], using: str | None) -> None:
        jobs.cancel_job(options["job_id"], using=using)
        self.stdout.write(f"Job {options['job_id']} cancelled.")

    def do_prune(self, options: dict[str, Any], using: str | None) -> None:
        deleted = jobs.prune_jobs(retention=options["older_than"], using=using)
        self.stdout.write(f"Pruned {deleted} finished jobs.")

    def do_schedules(self, options: dict[str, Any], using: str | None) -> None:
        schedules = list(Schedule.objects.using(using or conf.DATABASE).order_by("name"))
        if not schedules:
            self.stdout.write("(no schedules; a scheduler syncs code and settings ones at start)")
        now = timezone.now()
        for row in schedules:
            state = "enabled" if row.enabled else "disabled"
            if row.orphaned:
                state = f"not firing: its declaration was removed from {row.source}"
            self.stdout.write(f"{row.name}  [{row.cron}] {row.timezone}  -> {row.job_name}")
            self.stdout.write(f"    {state}; declared in {row.source}")
            last = "never" if row.last_run_at is None else f"{row.last_run_at:{_WHEN}%z}"
            self.stdout.write(f"    last tick: {last}")
            try:
                spec = crontab.parse(row.cron, timezone=row.timezone, start=row.start_at)
            except crontab.InvalidScheduleError as exc:
                self.stdout.write(f"    invalid: {exc}")
                continue
            after = max(now, row.start_at) if row.start_at else now
            upcoming = crontab.upcoming(spec, after, 5, end=row.end_at)
            tz = crontab.get_timezone(row.timezone)
            times = (
                ", ".join(f"{t.astimezone(tz):{_WHEN}%z}" for t in upcoming)
                or "none (window closed)"
            )
            self.stdout.write(f"    next: {times}")

    def do_run_schedule(self, options: dict[str, Any], using: str | None) -> None:
        job_id = run_schedule_now(options["name"], using=using)
        self.stdout.write(f"Schedule {options['name']} enqueued job {job_id} (manual run).")

    def do_enqueue(self, options: dict[str, Any], using: str | None) -> None:
        try:
            payload = json.loads(options["payload"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--payload is not valid JSON: {exc}") from exc
        job_id = enqueueing.enqueue(
            options["job_name"],
            payload,
            queue=options["queue"],
            priority=options["priority"],
            max_attempts=options["max_attempts"],
            scheduled_for=None if options["delay"] is None else timedelta(seconds=options["delay"]),
            key=options["key"],
            using=using,
        )
        self.stdout.write(str(job_id))
