"""A rate-limited queue's starts: the ledger the claim appends to, stamped so that the limit holds
where the handlers begin.

The claim counts its starts at its stamp (``stamp`` in :mod:`.flow`: the database's clock once
the claim holds the queue's lock), but its handlers begin later: after the rest of the statement,
its commit, the reply's way back, and a thread taking the job. That lag varies from claim to
claim and from worker to worker (a worker further from the database, a busier one). Measured
where handlers begin, one claim's jobs that began late and the next claim's that began early
could share a window, which would then hold up to twice the limit.

So the ledger counts each claim's starts later than its stamp, by a margin at least as long as
that claim's handlers take to begin: then every handler start falls in each window that a later
claim counts it in, and at most ``rate_limit`` handlers begin in any window of ``rate_period``.
The margin is the claiming worker's: it measures its own lag at every rate-limited start
(worker.start_lag: the time from sending the claim to the handler's start, less the statement's
time until its stamp, which the claim returns) and passes the largest of its recent ones, which
the ledger uses if it exceeds the floor (2% of the period, at most 50 ms, for the jitter of a
single start). Nothing waits: handlers begin as soon as they can, and a worker whose starts lag
more pays for it in its own claims' share of the rate.

A margin from recent lags can still be too short for one start (a thread woken late, a child
process slow to take its job). So the claim also says when the ledger counts each job's start,
and a handler that would begin after that does not begin: its job goes back to the queue, its
attempt undone, and the lag it would have had raises the worker's margin. The limit holds where
handlers begin whatever the lag; a start that late costs one place in the window, not a breach.
"""

from __future__ import annotations

from django_pgjobs.queries.flow_keys import RATED

# The expression for a claimed job (``j``) of a rate-limited queue: its claim's stamp (NULL for
# other jobs). The worker reads the seconds from the statement's start to it.
RATE_STAMP = f"""(SELECT s.at FROM stamp AS s, held AS h
        WHERE h.name = j.queue AND ({RATED}))"""

# How much later than its claim's stamp the ledger counts a start: the claiming worker's lag
# (``start_margin``, seconds) or the floor, whichever is longer.
_START_MARGIN = """greatest(
        make_interval(secs => %(start_margin)s),
        least(h.rate_period * 0.02, interval '50 milliseconds'))"""

# The time the ledger counts a claimed job's start at (NULL for a job of no rate-limited queue):
# its handler must begin by then, or not at all (worker.start_lag.begins_too_late).
RATE_COUNTED = f"""(SELECT s.at + {_START_MARGIN} FROM stamp AS s, held AS h
        WHERE h.name = j.queue AND ({RATED}))"""

# After the claim: the starts of rate-limited queues, in the ledger the next claim reads.
STARTS_CTE = f"""started AS (
    INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs)
    SELECT c.queue, CASE WHEN h.partition_rate_limit IS NOT NULL THEN c.partition_key END,
           (SELECT at FROM stamp) + {_START_MARGIN}, count(*)
    FROM claimed AS c JOIN held AS h ON h.name = c.queue
    WHERE {RATED}
    GROUP BY 1, 2, h.rate_period
)"""

# A job given back before its handler began (worker.start_lag.begins_too_late, a shutdown, a
# wait for a thread too long): the start its claim counted never happened, and would cost the
# queue that place in its window for nothing. Taken out of the claim's ledger row (``counted``:
# each given-back job's ``counted_at``, NULL for jobs of no rate-limited queue), which goes when
# nothing is left in it. Reads ``released`` (id, queue, partition_key: the rows actually given
# back); the row is found by pgjobs_queue_starts_window. Safe without the queue's lock: a claim
# that still counts the start is only stricter than it need be.
UNCOUNT_CTES = """uncounted AS MATERIALIZED (
    SELECT u.n, (SELECT s.id FROM pgjobs_queue_starts AS s
                 WHERE s.queue = u.queue AND s.started_at = u.at
                       AND s.partition_key IS NOT DISTINCT FROM u.key
                 ORDER BY s.jobs DESC LIMIT 1) AS id
    FROM (SELECT r.queue, c.at, count(*) AS n,
                 CASE WHEN q.partition_rate_limit IS NOT NULL THEN r.partition_key END AS key
          FROM released AS r
          JOIN unnest(%(ids)s::uuid[], %(counted)s::timestamptz[]) AS c(id, at) ON c.id = r.id
          JOIN pgjobs_queues AS q ON q.name = r.queue
          WHERE c.at IS NOT NULL
          GROUP BY r.queue, c.at, 4) AS u
),
fewer AS (
    UPDATE pgjobs_queue_starts AS s SET jobs = s.jobs - u.n
    FROM uncounted AS u WHERE s.id = u.id AND s.jobs > u.n
),
none_left AS (
    DELETE FROM pgjobs_queue_starts AS s
    USING uncounted AS u WHERE s.id = u.id AND s.jobs <= u.n
)"""
