"""The only writer of attempts' outcomes: completed, retried, buried, snoozed, cancelled, or lost
to fencing.

Handler threads only report (:meth:`Completer.finished`, :meth:`Completer.progressed`) into an
in-memory queue; the loop thread writes. Successes are batched (River's completer does the
same): written when ``FLUSH_BATCH`` are waiting, when the oldest has waited ``FLUSH_DELAY``, or
when no handler is busy, and a busy worker sends them right behind its claim, written while it
hands the claimed jobs to threads (:meth:`Completer.claim`; under flow control, just before
it). Failures and progress are written at once, one statement each, and so are the outcomes a
handler chose by raising (snoozed, cancelled: :mod:`.single_outcomes`). Anything not yet
written stays buffered across a database error and is written after the reconnect; fencing drops
it if the job moved on.

A write whose connection broke may have committed with only its reply lost: those outcomes are
checked against the rows before being called lost (:mod:`.in_doubt`).

A write never waits for a job row another transaction holds (queries.base.MINE): an outcome
that matched nothing whose attempt still holds its job is kept and written again (:meth:`_hold`),
while the loop goes on claiming and heartbeating and the rescue leaves the job to this worker.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from queue import Empty, SimpleQueue
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.prepared import preparing_cursor
from django_pgjobs.worker import lock_waits
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.behind import Behind
from django_pgjobs.worker.finished import Done, completion, endings_dropped, within_bytes
from django_pgjobs.worker.in_doubt import InDoubt
from django_pgjobs.worker.outcomes import Outcome, Written
from django_pgjobs.worker.progress_reports import Progress, ProgressReports
from django_pgjobs.worker.single_outcomes import SingleOutcomes

logger = logging.getLogger("django_pgjobs.worker")

# Given how many jobs a full claim took, the arguments of the claim to send behind it (those of
# queries.claim_jobs, with its own lease token), or None to send none (Claims.take).
Follow = Callable[[int], "dict[str, Any] | None"]

FLUSH_BATCH = 200
FLUSH_DELAY = 0.01
# An outcome whose row another transaction holds is written again after HELD_ROW_FIRST s, then
# doubling up to HELD_ROW_RETRY: most such locks last a statement (a workflow's send() holds its
# target's row FOR SHARE), a few as long as an application's transaction.
HELD_ROW_FIRST = 0.01
HELD_ROW_RETRY = 0.5
# One that waited lock_waits.LOCK_TIMEOUT for a lock and gave up is tried again after this: each
# try holds the loop for that long, so not often.
LOCK_WAIT_RETRY = 5.0


class Completer:
    """``on_written`` hears about each outcome as soon as it is committed, but for the
    completions a batch wrote, which ``on_completed`` hears of together (if given); ``wake``
    rings the loop when a progress report arrives."""

    def __init__(
        self,
        *,
        wake: Callable[[], None],
        on_written: Callable[[Written], None],
        on_completed: Callable[[list[queries.ClaimedJob]], None] | None = None,
    ) -> None:
        self._wake = wake
        self._on_written = on_written
        self._on_completed = on_completed
        self._events: SimpleQueue[Done | Progress] = SimpleQueue()
        self._done: list[Done] = []
        self._progress = ProgressReports()
        # An outcome arrived since the loop last took outcomes to write: their batch's clock
        # runs (due_in), so the ones after it need not wake the loop.
        self._signalled = False
        # Whether the last claim and the write of the successes behind it went through: if
        # not, the loop writes them on their own (a claim that keeps failing would hold them,
        # a write behind claims that keeps failing would be tried at every claim, unpaced).
        self._claims_took_them = True
        # Whether the last write behind a claim went through (may_claim_behind).
        self._written_behind = True
        # Attempts whose outcome was being written when the connection broke: the rows say
        # what became of them.
        self._doubt = InDoubt(on_written)
        self._single = SingleOutcomes(self._doubt)
        # The claim sent behind the last claim's successes, its reply read (claim_following).
        self.following: queries.ClaimBehind | None = None
        # One failed attempt written now, outside a batch (a running job handed back).
        self.fail = self._single.fail

    # Called from handler threads.

    def finished(self, job: queries.ClaimedJob, attempt: AttemptResult) -> bool:
        """Queue an attempt's outcome; True if it is the first since the loop last took
        outcomes to write (the loop then needs waking to start the batch's clock; waking it for
        every outcome of a busy worker was a wait and a wake-up per job)."""
        self._events.put(Done(job, attempt))
        first = not self._signalled
        self._signalled = True
        return first

    def progressed(self, job: queries.ClaimedJob, progress: int, message: str | None) -> None:
        self._events.put(Progress(job, progress, message))
        self._wake()

    # Called from the loop thread.

    def pending(self) -> bool:
        return bool(self._done or self._progress or not self._events.empty())

    def due_in(self, *, busy: int, now: float) -> float | None:
        """Seconds until the buffered outcomes should be written (0: now), None if none are.

        Progress reports and failures are due at once: they are rare and worth seeing."""
        self._collect()
        ready = self._ready(now)
        progress = self._progress.due_at()
        if (progress is not None and progress <= now) or not all(d.batched for d in ready):
            return 0.0
        if not ready:  # only outcomes and reports whose rows another transaction held
            held = [d.retry_at for d in self._done] + ([] if progress is None else [progress])
            return max(min(held) - now, 0.0) if held else None
        if len(ready) >= FLUSH_BATCH or busy == 0:
            return 0.0
        return max(FLUSH_DELAY - (now - ready[0].arrived), 0.0)

    def _ready(self, now: float) -> list[Done]:
        """The outcomes to write now: all but those waiting for a row another transaction held."""
        return [d for d in self._done if d.retry_at <= now]

    def write(self, conn: psycopg.Connection[Any]) -> None:
        """Write everything reported so far; a database error leaves the rest buffered."""
        self._collect(to_write=True)
        self._progress.write(conn, now=time.monotonic())
        self._settle_handed_back()
        ready = self._ready(time.monotonic())
        waited = self._write_successes(conn, within_bytes([d for d in ready if d.batched]))
        for done in [d for d in self._ready(time.monotonic()) if not d.batched]:
            if waited:
                break  # one lock wait a write at most: the rest go in the next one
            if done.succeeded:  # one whose workflow's wake-ups met a lock: written alone
                waited = self._write_successes(conn, [done])
                continue
            try:
                written = self._single.write(conn, done)  # a database error leaves it buffered
            except psycopg.errors.LockNotAvailable:
                # It waited lock_waits.LOCK_TIMEOUT for an application's lock (a workflow's
                # row, for the trigger of a bury): kept, and the loop goes on with its turn.
                self._done.remove(done)
                self._hold(done, delay=LOCK_WAIT_RETRY)
                waited = True
                continue
            self._done.remove(done)
            if not written:
                self._hold(done)

    def _write_successes(self, conn: psycopg.Connection[Any], done_ok: list[Done]) -> bool:
        """Write the successes ``done_ok`` in one batch; a database error leaves them buffered.
        True if it waited lock_waits.LOCK_TIMEOUT for a lock and gave up: only the wake-ups of
        the workflows they ended wait for one (their waiters' rows), so those are kept
        (:meth:`_lock_met`) and the rest written at once."""
        if not done_ok:
            return False
        args = completion(done_ok, bound=lock_waits.statement_bound(conn))
        try:
            completed = self._doubt.guarded(
                conn,
                [d.job for d in done_ok],
                lambda: queries.complete_jobs(conn.cursor(), **args),
                bounded=False,  # the statement bounds its own waits, where it has any
            )
        except psycopg.errors.LockNotAvailable:
            if args["endings"] is None:
                raise  # no ending's wake-up: the session's own lock_timeout, the loop's problem
            self._write_successes(conn, self._lock_met(done_ok))
            return True
        self._completed(conn, done_ok, completed)
        return False

    def _lock_met(self, done_ok: list[Done]) -> list[Done]:
        """A wake-up of a workflow one of ``done_ok`` ended met an application's lock: those
        that end a workflow are written alone from now on, one at a time (so the one whose
        waiter is held holds back no other), and one that was written alone waits
        LOCK_WAIT_RETRY before it is tried again (each try holds the loop). Returns the others,
        which wait for no lock."""
        plain = []
        for done in done_ok:
            if done.notes.workflow_ending is None:
                plain.append(done)
                continue
            self._done.remove(done)
            if done.alone or len(done_ok) == 1:
                self._hold(dataclasses.replace(done, alone=True), delay=LOCK_WAIT_RETRY)
            else:
                self._done.append(dataclasses.replace(done, alone=True))
        return plain

    def _hold(self, done: Done, *, delay: float | None = None) -> None:
        """Keep an outcome whose row another transaction held, to write it again shortly (after
        ``delay``, else backing off from HELD_ROW_FIRST to HELD_ROW_RETRY)."""
        if delay is None:
            delay = min(HELD_ROW_FIRST * 2**done.holds, HELD_ROW_RETRY)
        told = done.told or delay >= HELD_ROW_RETRY  # once, and not for a lock held briefly
        if told and not done.told:
            logger.info(
                "Job %s finished, but another transaction holds its row: its outcome is written "
                "once that transaction ends",
                done.job.id,
                extra={"job_id": str(done.job.id), "job_name": done.job.job_name},
            )
        retry_at = time.monotonic() + delay
        held = dataclasses.replace(done, retry_at=retry_at, holds=done.holds + 1, told=told)
        self._done.append(held)

    def claim(
        self,
        conn: psycopg.Connection[Any],
        *,
        then: Callable[[list[queries.ClaimedJob]], object] | None = None,
        follow: Follow | None = None,
        **claim: Any,
    ) -> list[queries.ClaimedJob]:
        """Claim jobs (see ``queries.claim_jobs``) and write the successes waiting for their
        batched write; ``then`` (the worker's dispatch) gets the jobs before this returns.

        The successes go right behind the claim (:mod:`.behind`): written while this thread
        makes the claim's rows into jobs and ``then`` hands them out. Under flow control they
        are written first (:meth:`_claim_after_writing`): the room they free counts in the
        claim. With ``follow``, the next claim may go behind them (see :data:`Follow`):
        :attr:`following` holds it, its reply read, for :meth:`claim_following`."""
        self.following = None
        self._collect(to_write=True)
        self._settle_handed_back()
        hint = claim.get("hint")
        self._claims_took_them = False  # until this claim and their write have gone through
        if hint is not None and hint.restricted:
            jobs = self._claim_after_writing(conn, claim)
            self._claims_took_them = True
            if then is not None:
                then(jobs)
            return jobs
        behind = Behind(self._doubt)

        def send(taken: int) -> None:
            self._send_behind(conn, behind, taken, follow)

        return self._hand_out(
            conn,
            behind,
            lambda: queries.claim_jobs(preparing_cursor(conn), **claim, meanwhile=send),
            then,
        )

    def claim_following(
        self,
        conn: psycopg.Connection[Any],
        following: queries.ClaimBehind,
        *,
        then: Callable[[list[queries.ClaimedJob]], object],
        follow: Follow | None,
    ) -> list[queries.ClaimedJob]:
        """The jobs of the claim that went behind the last successes (``following``, its reply
        read), handed to ``then``; the successes waiting now go behind it, and with ``follow``
        perhaps the next claim, as in :meth:`claim`. Raises the claim's error."""
        self.following = None
        behind = Behind(self._doubt)
        self._send_behind(conn, behind, following.taken(), follow)
        return self._hand_out(conn, behind, following.claimed, then)

    def _send_behind(
        self, conn: psycopg.Connection[Any], behind: Behind, taken: int, follow: Follow | None
    ) -> None:
        """Send the successes behind a claim that took ``taken`` jobs, and perhaps the next
        claim (``follow``). Those that finished while the claim ran go too."""
        self._collect(to_write=True)
        self._settle_handed_back()  # a hand-back succeeded too, but is no completion
        claim = None if follow is None else follow(taken)
        behind.send(conn, self._successes(), claim=claim)

    def _hand_out(
        self,
        conn: psycopg.Connection[Any],
        behind: Behind,
        claimed: Callable[[], list[queries.ClaimedJob]],
        then: Callable[[list[queries.ClaimedJob]], object] | None,
    ) -> list[queries.ClaimedJob]:
        """The claim's jobs (``claimed``: its rows made into jobs) handed to ``then`` while what
        went behind it is written; then its reply."""
        took = False
        try:
            jobs = claimed()
            took = True
            if then is not None:
                then(jobs)
        finally:
            # Read even when reading the claim's rows failed after the successes were sent: libpq
            # would otherwise refuse every later statement ("another command is already in
            # progress") on a connection that is not broken. At once if nothing was sent.
            written = behind.read(conn, self._completed, self._lock_met)
            self._claims_took_them = took and written
            self._written_behind = written
        self.following = behind.following
        return jobs

    def rides_on_claims(self) -> bool:
        """What waits to be written can wait for the next claim: successes only (failures,
        snoozes and progress are written at once), and the last claim took those it found."""
        return self._claims_took_them and self._only_successes()

    def may_claim_behind(self) -> bool:
        """Another claim may go behind the successes now: nothing else waits to be written,
        and the last write behind a claim went through (one that keeps failing is not sent
        again at every claim of a run of them)."""
        return self._written_behind and self._only_successes()

    def _only_successes(self) -> bool:
        self._collect()
        ready = self._ready(time.monotonic())
        return not self._progress and all(d.batched for d in ready)

    def _successes(self) -> list[Done]:
        return within_bytes([d for d in self._ready(time.monotonic()) if d.batched])

    def _claim_after_writing(
        self, conn: psycopg.Connection[Any], claim: dict[str, Any]
    ) -> list[queries.ClaimedJob]:
        """The flow-controlled claim, after the waiting successes are written in a transaction
        of their own: its counts see them completed, so the room they free counts; one whose
        row was held (skipped) still counts as running. Not behind the claim, where unwritten
        successes count as running and a limit binds sooner (benchmarks/README.md, the seventh
        round); nor in the claim's own statement, as they were: a statement that carries a
        batch is planned at every run (prepared.py), and the flow-controlled claim's planning
        was most of its cost, where alone it runs on one generic plan (the eighth round)."""
        self._write_successes(conn, self._successes())
        return queries.claim_jobs(preparing_cursor(conn), **claim)

    def _completed(
        self, conn: psycopg.Connection[Any], done: Sequence[Done], tokens: queries.Completed
    ) -> None:
        """The successes ``done`` were written (the attempts ``tokens``: by token, as a batch may
        hold a stale attempt of a job beside its new one): they leave the buffer, unless their
        row was held. Those written are handed on first, reading nothing: if the read about the
        others fails, only those stay buffered (one written would be written again, said lost)."""
        if len(tokens) == len(done):
            # Each written attempt comes back once: all of them were written (the usual case,
            # told apart without hashing a pair of UUIDs, a Python call each, per attempt).
            written, unmatched = list(done), []
        else:
            completed = set(tokens)
            written = [d for d in done if d.job.token in completed]
            unmatched = [d for d in done if d.job.token not in completed]
        if tokens.endings_dropped:
            endings_dropped(written, tokens.endings_dropped)
        # Out of the buffer in one pass (a remove() each compared dataclasses field by field
        # whenever an outcome held back sat ahead of them).
        gone = {id(d) for d in written}
        self._done = [d for d in self._done if id(d) not in gone]
        self._hand_on_completed([d.job for d in written])
        checked = [d.job.token for d in unmatched if d.job.token not in self._doubt]
        # One read for all of them; a database error leaves them all buffered.
        lost = set(queries.no_longer_held(conn.cursor(), tokens=checked)) if checked else set()
        for entry in unmatched:
            token = entry.job.token
            if token in checked and token not in lost:
                self._done.remove(entry)
                self._hold(entry)  # its row was held, not taken from it
                continue
            # Read first (an in-doubt one is checked against its row): if that read fails, the
            # entry is still buffered, still in doubt.
            recorded = self._doubt.record(conn, Written(entry.job, Outcome.LOST), checked=True)
            self._done.remove(entry)
            if not recorded:
                self._hold(entry)  # in doubt, and still ours: that write did not commit

    def _hand_on_completed(self, jobs: list[queries.ClaimedJob]) -> None:
        """Hand on the jobs a completion matched (recorded each, in one call when
        ``on_completed`` is given). One whose earlier write lost its reply is out of doubt: this
        write matched its attempt, so that one had not committed."""
        self._doubt.cleared(jobs)
        if self._on_completed is not None:
            if jobs:
                self._on_completed(jobs)
            return
        for job in jobs:
            self._on_written(Written(job, Outcome.COMPLETED))

    def _settle_handed_back(self) -> None:
        """Attempts their handler gave back (and wrote): only the worker's bookkeeping is left."""
        for done in [d for d in self._done if d.handed_back is not None]:
            self._on_written(Written(done.job, Outcome.HANDED_BACK, delay=done.handed_back or 0.0))
        self._done = [d for d in self._done if d.handed_back is None]

    def _collect(self, *, to_write: bool = False) -> None:
        """Move what handler threads reported into the buffer; ``to_write``: the loop is about
        to write it, so the next outcome starts a new batch (see :meth:`finished`)."""
        if to_write:
            self._signalled = False
        while True:
            try:
                event = self._events.get_nowait()
            except Empty:
                return
            if isinstance(event, Progress):
                self._progress.add(event)
            else:
                self._done.append(event)
