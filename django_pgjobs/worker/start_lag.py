"""How late this worker's rate-limited handlers begin after their claim counted them.

A rate limit holds where handlers begin only if the ledger counts each claim's starts at least
as late as they happen (:mod:`django_pgjobs.queries.rate_starts`). The database cannot see that
lag and the worker's clock need not agree with the database's, so the worker measures it on its
own clock, with what the claim returns: from sending the claim to the handler's start, less the
statement's time until its stamp. That also counts the claim's way to the database, so it is a
little more than the lag, never less. Each claim passes the largest lag of the recent ones.

That margin follows the recent lags, so one start can still be later (:func:`begins_too_late`):
such a handler does not begin, its job goes back, and its lag is measured all the same, so the
next claims' margin covers it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg

from django_pgjobs.queries import ClaimedJob
from django_pgjobs.worker.outcomes import job_fields

logger = logging.getLogger("django_pgjobs.worker")

# The recent starts whose largest lag is the margin: enough to cover the occasional slow one
# (a thread woken late, a commit waiting on the disk), few enough to follow a change.
RECENT = 64
# Headroom over the largest lag seen, for one a little larger than any recent one.
HEADROOM = 1.25
# No more for one lag this long (a loop stalled for a second, a slow import): it would cost the
# queue much of its rate for the next RECENT claims, while a start that late is not begun
# (begins_too_late) and costs only its own claim. Such lags in two claims are the worker's
# pace, not a stall: the margin then covers them, or each of its rate-limited jobs would be
# given back for ever (a worker far from its database, say).
MAX_MARGIN = 1.0
# Before any rate-limited start was measured (a worker's first rate-limited claim): this plus
# twice the connection's round trip, timed once (round_trip()): a worker far from the database
# (another zone, a proxy) lags by about its round trip more than one beside it, and the rest
# (a commit, a thread taking the job) is what a busy worker on the database's machine takes:
# up to 60 ms measured with the machine's two cores loaded twice over (handler threads, and
# child processes woken at once). A start later than the margin is not begun (begins_too_late),
# so a guess short of it costs those jobs a claim; a long one costs the first window as long.
FIRST_MARGIN = 0.1


class StartLag:
    """Written by handler threads as rate-limited jobs begin, read by the loop as it claims."""

    def __init__(self) -> None:
        # Each recent start's lag, with when its claim was sent (which tells claims apart).
        self._lags: deque[tuple[float, float]] = deque(maxlen=RECENT)
        self._lock = threading.Lock()
        self._round_trip: float | None = None  # seconds, once timed (see first_claim)

    def first_claim(self, conn: psycopg.Connection[Any]) -> None:
        """At the worker's first claim, before it: time the connection's round trip, for the
        margin of claims before any start was measured. One statement per worker."""
        if self._round_trip is None:
            self._round_trip = round_trip(conn)

    def began(self, job: ClaimedJob, *, began: float) -> None:
        """``job``'s handler began at ``began`` (monotonic). Only a rate-limited job's start is
        measured: one whose claim said when it was stamped (``stamp_after``, seconds after its
        statement started, which was sent at ``claim_sent``)."""
        if job.stamp_after is None or job.claim_sent is None:
            return
        with self._lock:
            lag = max(began - job.claim_sent - job.stamp_after, 0.0)
            self._lags.append((lag, job.claim_sent))

    def margin(self) -> float:
        """Seconds after its stamp the ledger should count this worker's next claim's starts."""
        with self._lock:
            if not self._lags:
                return min(FIRST_MARGIN + 2 * (self._round_trip or 0.0), MAX_MARGIN)
            largest, claim = max(self._lags)
            # Another claim's: one stall delays every job of its claim alike.
            second = max((lag for lag, sent in self._lags if sent != claim), default=0.0)
        return min(largest * HEADROOM, max(MAX_MARGIN, second * HEADROOM))


def begins_too_late(job: ClaimedJob, now: float) -> bool:
    """A rate-limited ``job`` whose handler would begin at ``now`` (monotonic), later than the
    ledger counted its start: beginning it could put one start too many in a window."""
    return job.begin_by is not None and now > job.begin_by


def checked_begin(job: ClaimedJob, announce: Callable[[float], None]) -> Callable[[float], bool]:
    """The ``begin`` hook of run_attempt for ``job``: a start :func:`begins_too_late` is
    refused; any other is announced (with its time) and goes ahead."""

    def begin(now: float) -> bool:
        if begins_too_late(job, now):
            return False
        announce(now)
        return True

    return begin


def log_begun_too_late(job: ClaimedJob, *, at: float) -> None:
    """``job`` was not begun at ``at``: :func:`begins_too_late`."""
    begin_by = job.begin_by or at
    late = at - begin_by
    # What its claim allowed, from the statement being sent to the counted start.
    allowed = begin_by - (job.claim_sent or begin_by)
    logger.warning(
        "Job %s %s was not started: it would have begun %.3fs after the time its queue's rate "
        "limit counted its start (%.3fs after its claim was sent), which could put one start "
        "too many in a window; it goes back to the queue (attempt not counted), and this "
        "worker's later claims allow for that lag",
        job.job_name, job.id, late, allowed, extra=job_fields(job, late=late),
    )  # fmt: skip


def round_trip(conn: psycopg.Connection[Any]) -> float:
    """Seconds a trivial statement takes there and back on ``conn``."""
    sent = time.monotonic()
    conn.execute("SELECT 1").fetchone()
    return time.monotonic() - sent
