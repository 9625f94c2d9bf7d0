"""When the worker's loop claims, how many jobs it asks for, and how long it may sleep. Pure:
times are passed in, so every decision is tested without a database or a clock.

What the loop knows between claims is four facts: whether a claim may find work now, when the
next job it knows of becomes due, how long jobs have been taking, and how many handler threads
are busy (the last one the loop passes in: handler threads change it).
"""

from __future__ import annotations

from dataclasses import dataclass

# Prefetch: claim enough beyond the free slots to keep them busy this long, judged from how long
# recent jobs took (at most PGJOBS["PREFETCH"] jobs): many short jobs per claim, no hoarding of
# long ones that another worker could start now.
PREFETCH_HORIZON = 0.05
# A due job the claim skipped is held back (a limit, or a row lock of another transaction):
# look again after this, then after twice as long each time a recheck takes nothing, up to the
# poll interval (a job no worker can run, such as a key's head without a handler, is otherwise
# claimed for four times a second for ever). A claim that takes jobs, a NOTIFY or an attempt
# of ours ending starts again from here.
LOCKED_ROW_RECHECK = 0.25
# A burst worker with nothing running exits once its held-back rechecks have taken nothing for
# this long: what holds the job back (another worker's job at a limit, an application's lock,
# a key's head no worker can run) may last for ever. Not while a rate window of a queue with
# due jobs is known to open (a burst drains a rate-limited queue at its rate).
BURST_HELD_BACK_EXIT = 5.0
# Claim this long after a rate window frees room: the database's clock and ours differ by the
# round trip, and a claim a little early finds no room and waits another recheck.
RATE_ROOM_MARGIN = 0.002


@dataclass
class Pacing:
    concurrency: int
    poll_interval: float
    # A claim may find work: at start, after a NOTIFY or a poll, after a full batch, or after a
    # job came back due at once. False after a short batch: the queue is drained for now.
    maybe_work: bool = True
    # Monotonic time when the next pending job this worker could run becomes due, if known.
    next_due: float | None = None
    # Moving average of handler run time, for sizing prefetch (None until a job ran).
    average_run: float | None = None
    # A job is due now that the last claim did not take: held back by a queue's limit, or
    # row-locked by another transaction. Burst mode waits for it (drained() is False) until
    # BURST_HELD_BACK_EXIT after held_back_since.
    held_back: bool = False
    # When the rechecks of held-back jobs that took nothing began (None: the last claim took
    # jobs, or a NOTIFY or an outcome of ours came since), and how long the next one waits.
    held_back_since: float | None = None
    recheck: float = LOCKED_ROW_RECHECK
    # A rate window of a queue with due jobs has room at this time (None: none is known).
    rate_room_at: float | None = None
    # Claim again once fewer attempts than this are held (claim_size; read by handler threads
    # to know when to wake the loop). Without prefetch, as soon as a thread is free.
    refill_at: int = 0

    def __post_init__(self) -> None:
        self.refill_at = self.concurrency

    def record_run(self, seconds: float) -> None:
        average = self.average_run
        self.average_run = seconds if average is None else 0.8 * average + 0.2 * seconds

    def prefetch(self, limit: int) -> int:
        """How many jobs to claim beyond the free slots: about PREFETCH_HORIZON seconds of work
        at the recent pace, at most ``limit``; none until a job has shown how long jobs take."""
        if self.average_run is None or limit == 0:
            return 0
        per_slot = PREFETCH_HORIZON / max(self.average_run, 1e-4)
        return min(limit, int(self.concurrency * per_slot))

    def claim_size(
        self, *, busy: int, prefetch_limit: int, left: int | None, restricted: bool = False
    ) -> int:
        """How many jobs to claim now (0: do not claim). ``busy`` threads are running or have a
        job queued; ``prefetch_limit`` caps :meth:`prefetch` (0: none); ``left`` is what
        ``--max-jobs`` still allows (None: no limit); ``restricted``: flow control applied at
        the last claim."""
        ahead = self.prefetch(prefetch_limit)
        # With jobs claimed ahead, the next claim goes out while half of them still wait for
        # a thread: its round trip (and the completions riding in it) overlaps the handlers'
        # work. Claiming only once every thread was free left the handlers idle for each
        # claim and the database idle while they ran: a drain of no-op jobs kept each of the
        # worker and its server process half busy. Not under flow control: a rate-limited job
        # is claimed only for a free thread (queries.flow), so a claim while every thread was
        # busy took only other queues' jobs, and the rate-limited ones waited for all of them.
        self.refill_at = self.concurrency + (0 if restricted else ahead // 2)
        if busy >= self.refill_at or not self.maybe_work:
            return 0  # every thread busy: claim again when one frees, in a bigger batch
        size = self.concurrency + ahead - busy
        return size if left is None else max(min(size, left), 0)

    def behind(self, *, taken: int, busy: int, prefetch_limit: int, left: int | None) -> int:
        """How many jobs the claim sent behind a full one of ``taken`` may take (Claims.take):
        a claim's worth (its threads plus the prefetch) of what holding at most its threads plus
        twice the prefetch leaves room for, ``busy`` threads running or having a job queued
        before those ``taken`` are handed out; ``left`` and ``prefetch_limit`` as in
        :meth:`claim_size`.

        None while that room is less than half the prefetch: a claim costs a round trip and the
        server's fixed work whatever it takes, and the loop claims again as threads free up.
        Sized by the room, not by the claim before it: sized so, the claims behind shrank claim
        after claim to what the room allowed once and stayed there (two workers drained 60,000
        jobs in 366-414 claims instead of about 140, 24% slower; benchmarks/README.md). The
        bound is the threads plus twice the prefetch, not twice both: after a loop claim of a
        few long jobs, a claim's worth behind it would queue a thread's worth more behind jobs
        that run for seconds, where the prefetch keeps 50 ms of work waiting."""
        ahead = self.prefetch(prefetch_limit)
        room = self.concurrency + 2 * ahead - busy - taken
        if ahead == 0 or 2 * room < ahead:
            return 0
        if left is not None:
            room = min(room, left - taken)
        return max(min(self.concurrency + ahead, room), 0)

    def claimed(self, *, asked: int, got: int) -> bool:
        """After a claim: a full batch means there may be more. Returns True when the batch was
        short, and the loop should look up when the next job is due (:meth:`due_in`)."""
        self.maybe_work = got == asked
        if got:
            self.recheck_soon()
        return not self.maybe_work

    def due_in(self, seconds: float | None, *, now: float, room_in: float | None = None) -> None:
        """After a short claim: the next pending job is due in ``seconds`` (None: there is
        none). A job due already that the claim did not take is held back (a queue's limit, or
        a row lock of another transaction): look again shortly rather than spin on it, later
        each time a look takes nothing (up to the poll interval), or as soon as a rate window
        of a queue with due jobs has room (``room_in`` seconds), if that is sooner."""
        self.held_back = seconds is not None and seconds <= 0
        self.rate_room_at = None
        if seconds is None or seconds > 0:
            self.recheck_soon()
            if seconds is None:
                self.next_due = None
            else:
                self.next_due = now + max(seconds, min(self.recheck, self.poll_interval))
            return
        if self.held_back_since is None:
            self.held_back_since = now
        else:
            self.recheck = min(2 * self.recheck, self.poll_interval)
        wait = min(self.recheck, self.poll_interval)
        if room_in is not None:
            self.rate_room_at = now + room_in + RATE_ROOM_MARGIN
            wait = min(wait, room_in + RATE_ROOM_MARGIN)
        exit_in = self.held_back_since + BURST_HELD_BACK_EXIT - now
        if exit_in > 0:
            wait = min(wait, exit_in)  # a burst worker looks once more when it may exit
        self.next_due = now + wait

    def recheck_soon(self) -> None:
        """Something may have freed a held-back job: its next recheck waits LOCKED_ROW_RECHECK
        again, and burst mode's patience with it starts over."""
        self.held_back_since = None
        self.recheck = LOCKED_ROW_RECHECK

    def attempt_ended(self) -> None:
        """An attempt of ours ended: the room it held may be what a held-back job waits for."""
        self.recheck_soon()

    def requeued(self, delay: float, *, now: float) -> None:
        """One of our jobs went back to pending (a retry, a workflow waiting) due in ``delay``."""
        if delay <= 0:
            self.maybe_work = True
            return
        due = now + delay
        self.next_due = due if self.next_due is None else min(self.next_due, due)

    def notified(self) -> None:
        self.maybe_work = True
        self.recheck_soon()

    def polled(self, *, now: float) -> None:
        """A wait timed out: poll (the fallback when NOTIFY is unavailable, or a job we know of
        became due)."""
        self.maybe_work = True
        if self.next_due is not None and self.next_due <= now:
            self.next_due = None

    def idle_timeout(self, *, now: float, duties_in: float) -> float:
        """How long an idle loop may wait: until a poll, a background duty, or a known due job."""
        timeout = min(self.poll_interval, duties_in)
        if self.next_due is not None:
            timeout = min(timeout, self.next_due - now)
        return max(timeout, 0.0)

    def drained(self, *, now: float) -> bool:
        """Nothing is known to be claimable now (burst mode's exit, with nothing running): no
        job is due, or those due were held back through BURST_HELD_BACK_EXIT of rechecks that
        took nothing, with no rate window about to open for them."""
        if self.maybe_work:
            return False
        if self.held_back:
            return (
                self.rate_room_at is None
                and self.held_back_since is not None
                and now - self.held_back_since >= BURST_HELD_BACK_EXIT
            )
        return self.next_due is None or self.next_due > now
