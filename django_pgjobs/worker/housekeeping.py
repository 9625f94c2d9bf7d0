"""A worker's background duties, run from its loop between claims.

- heartbeat: renew this worker's row and the leases of the attempts it holds;
- rescue: hand back running jobs whose worker stopped heartbeating, and forget such workers
  (held back for a while after this worker starts, after it was cut off from the database, and
  after the database server restarted: see :meth:`Housekeeper.hold_rescue`);
- prune: delete finished jobs past RETENTION and finished workflows past WORKFLOW_RETENTION,
  a few batches at a time.

Every worker does all three; each statement skips rows another worker is handling, so any number
can run them at once and the work is shared without a leader.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.utils import timezone

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.exceptions import WorkerIdInUse
from django_pgjobs.jobs.operations import prune_finished
from django_pgjobs.jobs.registry import registry
from django_pgjobs.observability.display import counted, printable
from django_pgjobs.observability.explanation import rescue_hold_seconds
from django_pgjobs.queries.rescue import Rescued
from django_pgjobs.queues.control import write_declared
from django_pgjobs.worker import lock_waits
from django_pgjobs.worker.ahead import ahead_lease

logger = logging.getLogger("django_pgjobs.worker")

# After a sweep gave up on a dying workflow's lock, sweeps leave such jobs for this long.
DYING_HELD_RETRY = 30.0

# Each prune pass deletes at most this many batches, so a huge backlog never delays heartbeats.
PRUNE_BATCHES_PER_PASS = 10
WORKFLOW_PRUNE_BATCH = 1000


@dataclass
class HousekeepingReport:
    # held attempts whose jobs are no longer theirs (rescued or cancelled)
    lost: list[queries.Token] = field(default_factory=list)
    rescued: int = 0  # jobs of dead workers handed back to pending
    rescued_buried: int = 0  # ... or to the dead letters (that was their last attempt)
    rescued_unstarted: int = 0  # claimed ahead and never started: back, attempt not counted
    # The first few of the rescued jobs and of the dead workers that held them (NAMED of each),
    # and how many dead workers held them in all.
    rescued_job_ids: tuple[uuid.UUID, ...] = ()
    dead_worker_ids: tuple[str, ...] = ()
    dead_workers: int = 0
    rescued_dead: tuple[queries.DeadLettered, ...] = ()  # each job it buried, for the signals
    pruned: int = 0
    # When the heartbeat that renewed the held leases was sent (monotonic); None: none ran.
    renewed_at: float | None = None
    given_back: int = 0  # jobs claimed ahead that waited too long, given back (slots.housekeep)

    @property
    def rescued_total(self) -> int:
        return self.rescued + self.rescued_buried + self.rescued_unstarted

    def log(self) -> None:
        """Rescues and pruning; the jobs no longer ours are the loop's to log (once each)."""
        if self.rescued_total:
            held = "dead workers"
            if self.dead_worker_ids:
                held = counted(self.dead_workers, "dead worker") + (
                    f" ({_first(self.dead_worker_ids, self.dead_workers)})"
                )
            jobs = counted(self.rescued_total, "job")
            if self.rescued_job_ids:
                ids = [str(job_id) for job_id in self.rescued_job_ids]
                jobs += f" ({_first(ids, self.rescued_total)})"
            logger.warning(
                "Rescued %s of %s: %s dead-lettered, %s never started",
                jobs,
                held,
                self.rescued_buried,
                self.rescued_unstarted,
                extra={
                    "rescued": self.rescued_total,
                    "dead_lettered": self.rescued_buried,
                    "never_started": self.rescued_unstarted,
                    "job_ids": [str(job_id) for job_id in self.rescued_job_ids],
                    "dead_worker_ids": list(self.dead_worker_ids),
                    "dead_workers": self.dead_workers,
                },
            )
        if self.pruned:
            logger.info("Pruned %s past the retention window", counted(self.pruned, "finished job"))


def _first(names: Sequence[str], total: int) -> str:
    """``a, b, c and 4 more``: the names given, and how many of ``total`` they leave out."""
    more = total - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def sync_queues(conn: psycopg.Connection[Any]) -> None:
    """Write PGJOBS["QUEUES"] into pgjobs_queues as the worker starts: every claim reads the
    limits from there (an invalid declaration is left out: pgjobs.E013 reports it)."""
    changed = write_declared(conn.cursor())
    if changed:
        logger.info("Synced %s from PGJOBS['QUEUES']", counted(changed, "queue"))


class Housekeeper:
    def __init__(self, *, worker_id: str, queues: Sequence[str], concurrency: int) -> None:
        self.worker_id = worker_id
        self._row = {
            "id": worker_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": json.dumps(list(queues)),
            "concurrency": concurrency,
            # Tells this process's row from another's under the same id: see register.
            "instance_token": str(uuid.uuid4()),
        }
        self.registered = False
        self._rescue_from = 0.0  # no rescue before this (monotonic): see hold_rescue
        # Until then (monotonic), sweeps leave the jobs of dying workflows (see _rescue).
        self._dying_held_until = 0.0
        self._next_heartbeat = 0.0
        self._next_prune = 0.0  # prune once at start, then every PRUNE_INTERVAL

    @property
    def silent_seconds(self) -> float:
        """How long a worker may go without a heartbeat before it counts as dead."""
        return max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS)

    def register_once(self, conn: psycopg.Connection[Any]) -> None:
        """:meth:`register`, unless this worker holds its id already (a reconnect)."""
        if not self.registered:
            self.register(conn)

    def register(self, conn: psycopg.Connection[Any]) -> None:
        """Take this worker's id, or raise :class:`WorkerIdInUse` if a live worker has it.

        Two processes under one id would renew each other's row and, after a reconnect, could
        not tell their claims apart. Only the row of a silent worker is taken over (a restart
        under a fixed ``--worker-id`` after a crash waits until the dead process's row is
        silent; a clean stop deletes it at once). The process is known by its random instance
        token, never by host name and pid, which two containers can share.
        """
        # The job names it claims, as its claims name them (explain_job reads them): taken
        # now, once the apps have registered every handler and workflow runner.
        self._row["handlers"] = json.dumps(registry.names())
        if queries.register_worker(
            conn.cursor(), worker=self._row, silent_seconds=self.silent_seconds
        ):
            self.registered = True
            sync_queues(conn)
            return
        holder = queries.find_worker(conn.cursor(), worker_id=self.worker_id)
        where = (
            f" (host {printable(holder.hostname)}, pid {holder.pid}, last heartbeat "
            f"{holder.silent_for:.1f}s ago)"
            if holder
            else ""
        )
        raise WorkerIdInUse(
            f"Worker id {self.worker_id!r} belongs to a live worker{where}. Give each worker "
            "its own --worker-id, or omit it for a unique one; a worker that died frees its id "
            f"after {self.silent_seconds:g}s without a heartbeat."
        )

    @property
    def instance_token(self) -> str:
        return str(self._row["instance_token"])

    def heartbeat_soon(self) -> None:
        """Renew at the next opportunity (after a reconnect, the lease may be running out)."""
        self._next_heartbeat = 0.0

    @property
    def hold_seconds(self) -> float:
        """How long a worker that may have been cut off needs to come back and renew: a lease's
        length, and at least its longest pause between reconnects plus a heartbeat."""
        return rescue_hold_seconds()  # explain_job tells of the same hold

    def hold_rescue(self) -> None:
        """Rescue nothing for :attr:`hold_seconds` from now.

        The worker loop calls this when it starts (a supervisor restarting a worker that exited
        during an outage: the others, cut off too, are reconnecting) and when it is back from
        being cut off (the first worker back used to rescue live workers' jobs 25-80 ms before
        they reconnected, and those jobs ran twice). Their leases ran out meanwhile through no
        fault of theirs. A restart of the database server holds every rescuer, however long it
        has run, the same time in database time (``queries.rescue_expired_leases``). A burst
        worker, which exits once the queue is drained, does not hold: it rescues what expired
        while the server was up, and leaves the rest to long-running workers.
        """
        self._rescue_from = time.monotonic() + self.hold_seconds
        self.heartbeat_soon()

    def back_from_outage(self) -> None:
        """This worker was cut off from the database and is back: so, perhaps, are the others."""
        self.hold_rescue()

    def seconds_until_due(self, *, renew_by: float | None = None) -> float:
        """Seconds until a duty is due; ``renew_by``: when held leases need renewing early
        (monotonic: a job claimed ahead has a short one, see :mod:`.ahead`)."""
        now = time.monotonic()
        due = min(self._next_heartbeat, self._next_prune)
        return max(min(due, renew_by if renew_by is not None else due) - now, 0.0)

    def heartbeat_due(self, *, renew_by: float | None = None) -> bool:
        now = time.monotonic()
        return now >= self._next_heartbeat or (renew_by is not None and now >= renew_by)

    def _rescue(self, conn: psycopg.Connection[Any]) -> Rescued:
        """The rescue sweep, its lock waits bounded: burying a dead worker's workflow job fires
        a trigger that can wait for an application's lock on the workflow. Past the bound the
        sweep runs again without those jobs, so every other dead worker's jobs still come
        back, and the loop goes on with its turn; they wait for a later sweep."""
        sweep = functools.partial(
            queries.rescue_expired_leases,
            server_up_for=self.hold_seconds,
            time_zone=timezone.get_current_timezone_name(),
            silent_seconds=self.silent_seconds,
        )
        if time.monotonic() >= self._dying_held_until:
            try:
                with lock_waits.bounded(conn):
                    return sweep(conn.cursor())
            except psycopg.errors.LockNotAvailable:
                # Not tried again at every heartbeat: each try holds the loop that long.
                self._dying_held_until = time.monotonic() + DYING_HELD_RETRY
                logger.warning(
                    "The rescue waited %s for a lock another transaction holds on a workflow "
                    "whose job it moves to the dead letters; rescuing the rest now, such jobs "
                    "in %gs",
                    lock_waits.LOCK_TIMEOUT,
                    DYING_HELD_RETRY,
                )
        with lock_waits.bounded(conn):
            return sweep(conn.cursor(), pass_dying_workflows=True)

    def run_due(
        self,
        conn: psycopg.Connection[Any],
        held: Sequence[queries.Token],
        *,
        started: Sequence[tuple[queries.Token, float]] = (),
        heartbeat: bool,
    ) -> HousekeepingReport:
        """Run the duties that are due; the heartbeat (and the rescue after it) when the caller
        found it due (:meth:`heartbeat_due`, which it asks before reading every held attempt for
        ``held`` and ``started``), or forces it. ``started``: held attempts whose handler has
        begun, with how many seconds ago."""
        report = HousekeepingReport()
        now = time.monotonic()
        if heartbeat:
            report.renewed_at = now
            report.lost = queries.heartbeat(
                conn.cursor(),
                worker=self._row,
                tokens=held,
                lease_seconds=conf.LEASE_SECONDS,
                started=started,
                ahead_lease_seconds=ahead_lease(),
            )
            if now >= self._rescue_from:
                rescued = self._rescue(conn)
                report.rescued, report.rescued_buried = rescued.retried, rescued.buried
                report.rescued_unstarted = rescued.unstarted
                report.rescued_job_ids, report.dead_worker_ids = rescued.job_ids, rescued.worker_ids
                report.dead_workers = rescued.workers
                report.rescued_dead = rescued.dead_letters
                queries.delete_stale_workers(conn.cursor(), silent_seconds=self.silent_seconds)
            self._next_heartbeat = now + conf.HEARTBEAT_SECONDS
        if now >= self._next_prune:
            pruned = prune_finished(
                conn.cursor(), retention=conf.RETENTION, max_batches=PRUNE_BATCHES_PER_PASS
            )
            workflows = queries.prune_finished_workflows(
                conn.cursor(), older_than_seconds=conf.WORKFLOW_RETENTION
            )
            queries.prune_queue_starts(conn.cursor())
            report.pruned = pruned.deleted + workflows
            more = pruned.more or workflows >= WORKFLOW_PRUNE_BATCH
            # More left: continue at the next pass. Else wait an interval; the jitter keeps a
            # fleet started together from pruning in lockstep.
            interval = 0.0 if more else conf.PRUNE_INTERVAL * random.uniform(0.9, 1.1)
            self._next_prune = now + interval
        return report
