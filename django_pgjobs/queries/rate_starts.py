"""A rate-limited queue's starts: the ledger the claim appends to, and when the handlers begin.

The claim counts a start when it stamps it (``stamp`` in :mod:`.flow`: the database's clock once
the claim holds the queue's lock), but a handler begins when the claim's reply has reached its
worker and a thread has picked the job up: a delay that varies from claim to claim. Measured
where handlers begin, one claim's jobs that began late and the next claim's that began early
could then share a window, and a window would hold up to twice the limit. So:

- every handler of a rate-limited job begins RATE_START_DELAY after its claim's stamp (the claim
  returns how long that is from its reply, so the worker's clock need not agree with the
  database's; the handler's thread waits: worker.attempt);
- the ledger counts each start _START_MARGIN after the stamp, so a handler that begins up to
  that late still falls in every window that a later claim counted it in.

Starts in any window of ``rate_period`` measured where handlers begin then stay at or under the
limit, unless a handler begins more than the margin late.
"""

from __future__ import annotations

# A rate-limited job's handler begins this long after its claim's stamp, whatever the claim's
# remaining work, its commit and the worker's handoff took. Enough for a claim's statement after
# its stamp on a busy machine; the cost is this much latency, for rate-limited queues only.
RATE_START_DELAY = 0.05

# The expression for a claimed job (``j``) of a rate-limited queue: when its handler may begin.
RATE_START_AT = """(SELECT s.at + make_interval(secs => %(rate_start_delay)s)
        FROM stamp AS s, held AS h
        WHERE h.name = j.queue
          AND (h.rate_limit IS NOT NULL OR h.partition_rate_limit IS NOT NULL))"""

# The ledger counts each start this much after its claim's stamp: a start late by up to this
# (a thread that woke late, a claim whose handoff took longer than the next one's) still falls
# in the windows the next claims count it in. 2% of the period (what the margin costs of the
# rate the limit allows), at most 50 ms.
_START_MARGIN = "least(h.rate_period * 0.02, interval '50 milliseconds')"

# After the claim: the starts of rate-limited queues, in the ledger the next claim reads.
STARTS_CTE = f"""started AS (
    INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs)
    SELECT c.queue, CASE WHEN h.partition_rate_limit IS NOT NULL THEN c.partition_key END,
           (SELECT at FROM stamp) + {_START_MARGIN}, count(*)
    FROM claimed AS c JOIN held AS h ON h.name = c.queue
    WHERE h.rate_limit IS NOT NULL OR h.partition_rate_limit IS NOT NULL
    GROUP BY 1, 2, h.rate_period
)"""
