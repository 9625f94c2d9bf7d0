"""Jobs claimed ahead (prefetch): a short lease until they start, given back when they wait.

A worker claims more jobs than it has free threads when recent jobs were short, so each claim
carries many. Such a job has not started, and two things keep it from being stranded:

- its lease is short (:func:`ahead_lease`, 5 s) until the heartbeat records its start, so when its
  worker dies it comes back within seconds, not after a whole lease; the worker renews before
  that lease is half gone (:func:`renew_by`);
- one still waiting for a thread after half that lease is given back (:func:`waited_too_long`):
  the jobs were longer than the recent ones the prefetch was sized by, and another worker may be
  idle. Its attempt is undone, as at shutdown.

A job with less than half its short lease left when a thread takes it is not started
(:func:`too_late_to_start`): the loop is late renewing (it stalled), and the rescue could hand
the job to another worker before its start is recorded. A job that does start has at least half
that lease left, and the heartbeat that records its start is due at once (:func:`renew_by`): its
loop would have to stall for that half (2.5 s) on top for another worker to take it over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.worker.inflight import InFlight
from django_pgjobs.worker.outcomes import job_fields

logger = logging.getLogger("django_pgjobs.worker")

# The lease of a job claimed ahead, until its start is recorded (never longer than the lease).
AHEAD_LEASE = 5.0


def ahead_lease() -> float:
    return min(AHEAD_LEASE, conf.LEASE_SECONDS)


def granted(entry: InFlight, *, since: float, seconds: float) -> None:
    """``entry``'s lease of ``seconds`` was granted or renewed by a statement sent at ``since``
    (monotonic): the whole lease if its handler had begun, else the short one (read once per
    claim or heartbeat by the caller: a setting's lookup costs more than this)."""
    entry.lease_granted = seconds
    entry.lease_until = since + seconds


def renew_by(held: Iterable[InFlight]) -> float | None:
    """When the heartbeat must renew (monotonic): once any held attempt's lease is half gone.
    None when nothing is held. It reads every attempt held: the slots keep its result between
    heartbeats (Slots.renew_by), never computing it per turn of the loop. An attempt that timed
    out, or that no longer holds its job (cancelled, taken over), has no lease to renew: its
    lease time, never renewed again, would make every turn of the loop a heartbeat."""
    times = [
        e.lease_until - e.lease_granted / 2
        for e in held
        if not e.timed_out and not e.attempt.is_cancelled()
    ]
    return min(times) if times else None


def waited_too_long(entry: InFlight, *, now: float) -> bool:
    """A job claimed ahead that no thread has taken for half its short lease."""
    return not entry.started and now - entry.started_at >= ahead_lease() / 2


def too_late_to_start(entry: InFlight, *, now: float) -> bool:
    """Half of ``entry``'s lease is gone before its handler began (see the module's note)."""
    return now >= entry.lease_until - entry.lease_granted / 2


def log_too_late(job: queries.ClaimedJob) -> None:
    """``job`` was claimed ahead and, by :func:`too_late_to_start`, is not started."""
    logger.warning(
        "Job %s %s was not started: half its short lease was gone while it waited (the "
        "worker's loop was late); it goes back to the queue",
        job.job_name, job.id, extra=job_fields(job),
    )  # fmt: skip
