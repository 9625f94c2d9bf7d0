"""The rescue: jobs whose worker stopped renewing their lease (it died, froze or lost the
database) go back to pending, or to the dead letters if that was their last attempt. Every worker
sweeps; no leader is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django_pgjobs.queries.base import Cursor
from django_pgjobs.queries.outcomes import RETRY_OR_BURY


@dataclass(frozen=True)
class Rescued:
    retried: int  # back to pending, due at once
    buried: int  # that was their last attempt: moved to the dead letters


def rescue_expired_leases(cur: Cursor, *, limit: int = 500) -> Rescued:
    """Hand back running jobs whose worker stopped renewing its lease.

    The crashed attempt counts: it was added by the claim, so a job that keeps killing its worker
    ends in the dead letters instead of looping. Rescued jobs are due at once: the lease already
    waited. Locks: up to ``limit`` expired rows via pgjobs_job_lease, skipping rows another
    rescuer holds, so any number of workers can sweep at once.
    """
    cur.execute(
        f"""
        WITH failing AS (
            SELECT id,
                   format('Lease expired: worker %%s stopped heartbeating during attempt %%s '
                          '(locked at %%s).', locked_by, attempt, locked_at) AS error,
                   0::float8 AS delay
            FROM pgjobs_job_queue
            WHERE status = 'running' AND lease_expires_at < now()
            ORDER BY lease_expires_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ),
        {RETRY_OR_BURY}
        """,
        {"limit": limit},
    )
    retried, buried, _ = cur.fetchone()
    return Rescued(retried=int(retried), buried=int(buried))
