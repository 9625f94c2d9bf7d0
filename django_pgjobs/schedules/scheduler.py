"""The scheduler: turns due schedule ticks into jobs, each tick exactly once.

Any number of schedulers may run (one inside every ``pgjobs_worker`` by default, or standalone
``pgjobs_scheduler``): the tick statement's compare-and-set on ``next_run_at`` lets exactly one
of them fire each tick (see :mod:`django_pgjobs.queries.schedules`). Time is the database's
``now()``, so schedulers on hosts with skewed clocks agree. A scheduler sleeps until the next
tick is due, and wakes at once when a schedule is created or its timing edited (NOTIFY).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.database import LISTEN_NAME, SCHEDULER_NAME, connect, queue_database
from django_pgjobs.exceptions import InvalidJobError, JobNotFound
from django_pgjobs.jobs.options import resolve_options, resolve_partition_key
from django_pgjobs.jobs.producer import enqueue
from django_pgjobs.jobs.registry import registry
from django_pgjobs.listening import Listening
from django_pgjobs.models import CatchUp, Schedule
from django_pgjobs.observability.display import local_time
from django_pgjobs.queries.schedules import tick_key
from django_pgjobs.schedules.crontab import InvalidScheduleError, Spec, next_tick, parse
from django_pgjobs.schedules.declarations import declarations, sync_schedules
from django_pgjobs.schedules.validation import FIRE_TIME_KEY, tick_payload
from django_pgjobs.stored_json import UndecodableJSON, decode_json
from django_pgjobs.worker.wakeup import Wakeup

logger = logging.getLogger("django_pgjobs.scheduler")

# Under the "skip" policy, a tick reached less than this late still fires; older ones are missed.
MISFIRE_GRACE = timedelta(seconds=60)
# A schedule row that cannot run (bad data, a job with no handler, a failing insert) is left
# alone this long before it is tried again, so it neither spins the loop nor floods the log.
QUARANTINE_SECONDS = 60.0
_ONE_TICK_BACK = timedelta(microseconds=1)
_ERROR_BACKOFF = (0.5, 1.0, 2.0, 5.0)


@dataclass
class TickReport:
    """What one pass did: jobs enqueued, ticks skipped as missed, ticks another scheduler won."""

    enqueued: int = 0
    skipped: int = 0
    lost_races: int = 0
    initialised: int = 0


def missed_ticks(
    spec: Spec,
    *,
    since: datetime,
    now: datetime,
    policy: str,
    limit: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[list[datetime], int]:
    """The ticks in [since, now] to fire under ``policy``, oldest first, and how many are skipped.

    Walks back from ``now`` so that a long outage costs only the ticks it keeps.
    """
    keep: list[datetime] = []
    skipped = 0
    moment = spec.latest_at_or_before(min(now, end) if end else now)
    floor = max(since, start) if start else since
    while moment >= floor:
        if policy == CatchUp.SKIP and moment <= now - MISFIRE_GRACE:
            skipped += 1
            break  # older ticks are all missed; counting them is not worth the walk
        if (policy == CatchUp.LATEST and keep) or (policy == CatchUp.ALL and len(keep) >= limit):
            skipped += 1
            break
        keep.append(moment)
        try:
            moment = spec.latest_at_or_before(moment - _ONE_TICK_BACK)
        except OverflowError:  # the tick before is before year 1: there is none
            break
    return sorted(keep), skipped


def first_fire(
    spec: Spec, *, now: datetime, start: datetime | None, end: datetime | None
) -> datetime | None:
    # None when the schedule is over (past its end, or past the last time stored: next_tick).
    return next_tick(spec, max(now, start - _ONE_TICK_BACK) if start else now, end=end)


class Scheduler:
    def __init__(
        self,
        *,
        using: str | None = None,
        poll_interval: float | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.alias = queue_database(using)
        # What its connection says in pg_stat_activity: a worker's scheduler names the worker.
        self.application_name = f"{SCHEDULER_NAME} {worker_id}" if worker_id else SCHEDULER_NAME
        self.poll_interval = poll_interval if poll_interval is not None else conf.POLL_INTERVAL
        self._stop = threading.Event()
        self._wakeup = Wakeup()
        self._conn: psycopg.Connection[Any] | None = None
        # On the statement connection, or on one to LISTEN_DATABASE (django_pgjobs.listening).
        self._listening = Listening(
            self.alias,
            channels=(queries.SCHEDULES_CHANNEL,),
            application_name=f"{LISTEN_NAME} scheduler {worker_id or ''}".rstrip(),
            who="The scheduler",
            log=logger,
        )
        self._synced = False
        self._quarantined: dict[int, float] = {}  # schedule id -> monotonic time to retry

    def run_once(self, *, now: datetime | None = None) -> TickReport:
        """Sync declarations (first time), then fire every due tick. ``now`` overrides the
        database clock for the catch-up decision (tests simulate outages with it)."""
        conn = self._ensure_connected()
        if not self._synced:
            synced = sync_schedules(conn.cursor())
            logger.info(
                "Synced schedules: %s created, %s updated, %s no longer declared",
                synced.created, synced.updated, synced.orphaned,
            )  # fmt: skip
            self._synced = True
        db_now, rows = queries.due_schedules(conn.cursor(), skip=self._skipped())
        report = TickReport()
        for row in rows:
            try:
                self._tick(conn, row, now or db_now, report)
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    raise
                self._quarantine(row, exc)
            except Exception as exc:
                # One schedule's bad data must never stop the others.
                self._quarantine(row, exc)
        return report

    def _skipped(self) -> list[int]:
        now = time.monotonic()
        self._quarantined = {k: v for k, v in self._quarantined.items() if v > now}
        return list(self._quarantined)

    def _quarantine(self, row: dict[str, Any], reason: object) -> None:
        self._quarantined[row["id"]] = time.monotonic() + QUARANTINE_SECONDS
        logger.error(
            "Schedule %r cannot run (%s); trying again in %ss",
            row["name"],
            reason,
            QUARANTINE_SECONDS,
        )

    def run(self) -> None:
        """Fire ticks until :meth:`request_stop`; sleeps until the next one is due."""
        errors = 0
        try:
            while not self._stop.is_set():
                try:
                    self.run_once()
                    errors = 0
                    assert self._conn is not None
                    until = queries.seconds_until_next_schedule(
                        self._conn.cursor(), skip=self._skipped()
                    )
                    timeout = (
                        self.poll_interval if until is None else min(until, self.poll_interval)
                    )
                    listening = None if conf.POLL_ONLY else self._listening.connection()
                    self._wakeup.wait(timeout, conn=listening, queues=())
                except psycopg.Error as exc:
                    errors += 1
                    logger.error("Database error in the scheduler: %s; retrying", exc)
                    self._drop_connection_if_broken()
                    self._stop.wait(_ERROR_BACKOFF[min(errors, len(_ERROR_BACKOFF)) - 1])
        finally:
            self.close()
            self._wakeup.close()

    def request_stop(self) -> None:
        self._stop.set()
        self._wakeup.ring()

    def close(self) -> None:
        self._listening.close()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _ensure_connected(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = connect(self.alias, application_name=self.application_name)
            if not conf.POLL_ONLY:
                try:
                    self._listening.attach(conn)
                except psycopg.Error:
                    conn.close()
                    raise
            self._conn = conn
        return self._conn

    def _drop_connection_if_broken(self) -> None:
        self._listening.dropped()
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()

    def _tick(
        self, conn: psycopg.Connection[Any], row: dict[str, Any], now: datetime, report: TickReport
    ) -> None:
        name = row["name"]
        try:
            spec = parse(row["cron"], timezone=row["timezone"], start=row["start_at"])
        except InvalidScheduleError as exc:
            self._quarantine(row, exc)
            return
        handler = registry.get(row["job_name"])
        if handler is None:
            self._quarantine(row, f"job {row['job_name']!r} has no handler here")
            return
        if row["next_run_at"] is None:
            first = first_fire(spec, now=now, start=row["start_at"], end=row["end_at"])
            if first is not None and queries.set_next_run(
                conn.cursor(), row=row, next_run_at=first
            ):
                report.initialised += 1
            return
        ticks, skipped = missed_ticks(
            spec,
            since=row["next_run_at"],
            now=now,
            policy=row["catch_up"],
            limit=row["catch_up_limit"],
            start=row["start_at"],
            end=row["end_at"],
        )
        payload = decode_json(row["payload"])
        if isinstance(payload, UndecodableJSON):
            self._quarantine(row, f"its payload cannot be decoded: {payload.error}")
            return
        if not isinstance(payload, dict):
            self._quarantine(row, "its payload is not a JSON object")
            return
        # An empty queue in a row written by SQL or the ORM means "the job's own", as NULL does.
        options = resolve_options(
            handler.name, queue=row["queue"] or None, priority=row["priority"]
        )
        stamps = [t.astimezone(UTC).isoformat() for t in ticks]
        payloads = [tick_payload(payload, stamp) for stamp in stamps]
        try:
            # The schedule's own key, else the handler's (a callable asked per tick).
            partition_keys = [
                resolve_partition_key(handler.name, p, row["partition_key"]) for p in payloads
            ]
        except InvalidJobError as exc:
            self._quarantine(row, f"its jobs' partition key: {exc}")
            return
        fired = queries.fire_tick(
            conn.cursor(),
            schedule_id=row["id"],
            expected_next_run_at=row["next_run_at"],
            next_run_at=first_fire(spec, now=now, start=row["start_at"], end=row["end_at"]),
            last_run_at=ticks[-1] if ticks else None,
            job={"job_name": handler.name, **vars(options)},
            fire_times=ticks,
            payloads=[json.dumps(p) for p in payloads],
            keys=[tick_key(name, stamp) for stamp in stamps],
            partition_keys=partition_keys,
        )
        if not fired.advanced:
            report.lost_races += 1
            return
        ids = fired.job_ids
        report.enqueued += len(ids)
        report.skipped += skipped
        if ids:
            logger.info(
                "Schedule %r fired %s tick%s, latest %s",
                name,
                len(ids),
                "" if len(ids) == 1 else "s",
                local_time(ticks[-1]),
            )
        if skipped:
            logger.warning(
                "Schedule %r skipped missed ticks (catch-up policy %r)", name, row["catch_up"]
            )


def run_schedule_now(name: str, *, using: str | None = None) -> Any:
    """Enqueue a schedule's job now, outside its timing: a manual run, not a tick.

    The job's payload carries the current time as its fire time and ``"manual": true``;
    ``last_run_at`` and ``next_run_at`` are not touched. A schedule declared in code or settings
    that no scheduler has written to the table yet (a test's database) runs from its
    declaration.
    """
    from django.utils import timezone

    alias = queue_database(using)
    row = Schedule.objects.using(alias).filter(name=name).first()
    if row is not None:
        job_name, payload, queue, priority = row.job_name, row.payload, row.queue, row.priority
        partition_key = row.partition_key
    else:
        declared = next((d for d in declarations() if d.name == name), None)
        if declared is None:
            raise JobNotFound(f"No schedule named {name!r}.")
        job_name, payload = declared.job_name, declared.payload
        queue, priority = declared.queue, declared.priority
        partition_key = declared.partition_key
    # A row written by SQL; the scheduler quarantines it the same way.
    if isinstance(payload, UndecodableJSON):
        raise InvalidJobError(
            f"Schedule {name!r} cannot run: its payload cannot be decoded ({payload.error})."
        )
    if not isinstance(payload, dict):
        raise InvalidJobError(f"Schedule {name!r} cannot run: its payload is not a JSON object.")
    payload = {**payload, FIRE_TIME_KEY: timezone.now().isoformat(), "manual": True}
    return enqueue(
        job_name,
        payload,
        queue=queue or None,
        priority=priority,
        partition_key=partition_key,
        using=alias,
    )
