"""Flow control inside the claim: paused queues, limits across workers, partition keys, turns.

The claim (:mod:`.claim`) is one statement with two ways to choose its jobs. When no queue the
worker serves has a row in ``pgjobs_queues`` that restricts it (``rules`` is empty), it walks the
due jobs of all its queues in one index scan, as it always did (``due_plain``). Otherwise
(``due_flow``) it takes each queue on its own: paused queues are left alone, open queues are
walked as before, and each limited queue gets a ``room`` (how many of its jobs may start now)
computed from counts that are exact across workers:

- Claims of a limited queue take turns: each takes a transaction-level advisory lock per limited
  queue, in name order (so two claims never deadlock), held until its commit a few milliseconds
  later. Claims of other queues never wait for them.
- After the locks, ``pgjobs_queue_counts()`` counts the queue's running jobs (all, and this
  worker's) and recent starts, and a partitioned queue's keys are counted: all at once by
  ``pgjobs_key_loads()`` when the queue has no more running jobs and starts than 16 a job of its
  room (migration 0025), else key by key by ``pgjobs_key_counts()`` for each key the walk
  reached. Only the counts the queue's limits need, each read only up to its limit (a count at
  the limit leaves no room, as a larger one would), so a claim reads neither every running job
  of a queue nor the starts of every key in its rate window (migration 0021).
  Both are VOLATILE functions, which PostgreSQL never inlines, and each of their statements
  runs with a snapshot of its own, taken when it starts: every count sees each claim that
  committed while this one waited for the lock, which the statement's own snapshot (taken
  before the wait) would not. Jobs that those claims took are still in this statement's view as
  pending, but ``FOR UPDATE`` re-checks each row it locks and skips one that is no longer
  pending. So a claim never counts
  less than is running, and never takes a job another claim took: the limit holds however many
  workers claim at once. Running counts come from the job rows themselves, so nothing else has
  to keep them: a completion, a failure, a cancel, or the rescue of a dead worker's jobs frees
  the slot by changing the row's status, as it always did.
- Starts are counted in ``pgjobs_queue_starts``, a ledger the claim appends to (one row per
  claim and, with a per-key rate, per key), read over the sliding window ``rate_period``: at
  most ``rate_limit`` starts in any window of that length. A token bucket would allow a burst of
  twice the limit across a window's edge; a ledger costs one small insert per claim, not per job.
  The limit holds where handlers begin, not only in the ledger: see :mod:`.rate_starts`.
- Partitioned queues (a per-key limit, or ``fair``) find their keys with a skip scan of
  ``pgjobs_job_partition_claim`` (one index probe per key with pending jobs), from where the
  previous claim stopped, until they have the claim's room in keys that can start a job (twice
  that with ``fair``) or have walked a bound (:mod:`.flow_keys`), give each key its own room,
  and read each key's jobs in claim order (``seq`` breaks ties, so one transaction's jobs of a
  key run in the order they were enqueued). Jobs without a key are one more partition.
  ``fair`` orders the candidates by their turn within their key first, so each key gets one job
  before any key gets a second, and when other queues' jobs leave room for only some of them
  the claim takes those whose turn it is; the cursor moves only past keys the claim took or
  could not start, so a key left out has the next turn.

A partitioned queue's walk reads the statement's snapshot, its counts something newer. A job of a
key that went back to ``pending`` keeping its place while the claim waited for the lock (handed
back) is running in the one and free in the other, so the walk would give its slot to the job
behind it: ``suspects`` and ``moved`` (:mod:`.flow_keys`) find such keys, a probe per key it
could start a job of and one call of ``pgjobs_pending_again()`` a claim (migration 0029), and
leave them to the next claim. A job the claim cannot lock (an application holds its row) stops
its partition's picks there (``keyed_kept``): the jobs of a key never overtake one another.

Jobs claimed ahead (prefetched) count as running: a limit counts what workers hold, not only
what their threads run. Rate-limited queues are never claimed ahead: a start is counted when it
is claimed, so a claim takes their jobs only among those free threads start at once (due_flow).
Limits are read by each claim, so a change applies to the next one; a claim that began before a
change committed may still use the old values.
"""

from __future__ import annotations

from collections.abc import Sequence

from django_pgjobs.queries.base import pending_queues
from django_pgjobs.queries.flow_keys import (
    CANDIDATE,
    DUE,
    FINISHED_NONE,
    RATED,
    key_walk_ctes,
    names_filter,
)

# A claim walks at most this many keys of a partitioned queue, or four times its batch if more.
MIN_KEY_WALK = 500

# The advisory lock class of a limited queue's claims ('pgjq'); the queue's name is the key
# (hashtext: two queues sharing a hash only take turns with each other, which is harmless).
LOCK_CLASS = 0x70676A71

# Anything that makes a queue's claims need flow control.
_LIMITED = (
    "concurrency IS NOT NULL OR worker_concurrency IS NOT NULL OR rate_limit IS NOT NULL "
    "OR partition_concurrency IS NOT NULL OR partition_rate_limit IS NOT NULL OR fair"
)
_PARTITIONED = "partition_concurrency IS NOT NULL OR partition_rate_limit IS NOT NULL OR fair"

_CLAIM_ORDER = "j.priority DESC, j.scheduled_for, j.id"
# The merge's order of the open queues' candidates (``c``), whose turns are all 1.
_OPEN_ORDER = "c.priority DESC, c.scheduled_for, c.seq NULLS FIRST, c.id"
# The merge's order of every queue's candidates (``c``): turns first.
_MERGE_ORDER = "c.turn, c.priority DESC, c.scheduled_for, c.seq NULLS FIRST, c.tie"


def _served(queues: Sequence[str] | None, column: str) -> str:
    if queues and len(queues) == 1:
        return f" AND {column} = %(queue)s"
    if queues:
        return f" AND {column} = ANY(%(queues)s)"
    return ""


def rules_cte(queues: Sequence[str] | None) -> str:
    """``rules``: the rows of ``pgjobs_queues`` that shape this worker's claims (a handful of
    rows of a small table); empty for most deployments, which then claim as they always did."""
    return f"""rules AS MATERIALIZED (
    SELECT name, paused, concurrency, worker_concurrency, rate_limit, rate_period,
           partition_concurrency, partition_rate_limit, fair, key_cursor, ({_LIMITED}) AS limited,
           ({_PARTITIONED}) AS partitioned
    FROM pgjobs_queues
    WHERE (paused OR {_LIMITED}) {_served(queues, "name")}
)"""


def _open_queues(queues: Sequence[str] | None) -> str:
    """The queues this worker serves that no rule restricts. A worker of every queue finds
    them with a skip scan of pgjobs_job_queue_claim: one probe per queue with pending jobs."""
    if queues:
        source = "unnest(%(queues)s::text[]) AS q(queue)"
        seen = ""
    else:
        source = "seen_queues AS q"
        seen = f"{pending_queues('seen_queues')},\n"
    return f"""{seen}open_queues AS (
    SELECT q.queue FROM {source}
    WHERE q.queue IS NOT NULL AND EXISTS (SELECT 1 FROM rules)
      AND q.queue NOT IN (SELECT name FROM rules)
)"""


def flow_ctes(queues: Sequence[str] | None, job_names: Sequence[str] | None) -> str:
    """The CTEs that choose a flow-controlled claim's jobs, ending in ``due_flow`` (id, queue,
    partition_key, n: its place in the claim's order), at most ``limit`` of them. Empty unless
    ``rules`` has rows. Parameters: worker_id, limit, start_now, queue/queues, job_names,
    key_walk, start_margin.

    The worker writes the successes waiting for their batch before this claim (worker.completer),
    in a transaction of their own: the counts' own snapshots see the rows it completed, and an
    attempt it skipped (a claim of the queue whose older snapshot saw it pending held its row,
    or an application transaction did) still runs and is counted. So the counts leave nothing
    out as finishing (FINISHED_NONE)."""
    names = names_filter(job_names)
    return f"""held AS MATERIALIZED (
    -- Only queues with a due job: a claim takes no lock (and no slot of PostgreSQL's shared
    -- lock table) for the many limited queues that have nothing to run.
    SELECT r.*, pg_advisory_xact_lock({LOCK_CLASS}, hashtext(r.name)) IS NULL AS waited
    FROM (SELECT * FROM rules
          WHERE limited AND NOT paused
            -- In claim order, so it reads pgjobs_job_queue_claim from the queue's head.
            AND (SELECT 1 FROM pgjobs_job_queue AS j
                 WHERE j.status = 'pending' AND j.queue = rules.name
                   AND j.scheduled_for <= now()
                 ORDER BY j.priority DESC, j.scheduled_for, j.id LIMIT 1) IS NOT NULL
          ORDER BY name OFFSET 0) AS r
),
stamp AS MATERIALIZED (
    -- Read after every lock is held (the aggregate reads all of ``held`` first): the time the
    -- rate windows end at and the starts are stamped with. now() is the transaction's start,
    -- before the wait: stamps from it would fall out of the next claim's window too early.
    SELECT clock_timestamp() AS at, count(*) AS locks FROM held
),
budget AS MATERIALIZED (
    -- The queue's counts (pgjobs_queue_counts), called once all the locks are held (``stamp``
    -- has read all of ``held``): only those its limits need, each up to its limit.
    SELECT x.*,
           -- Loads only when the walk will count keys, and only when they are fewer rows
           -- than a few times the keys it is likely to walk (a row ~3 us, a key ~20 us).
           CASE WHEN x.partitioned AND x.room > 0 THEN pgjobs_key_loads(
               x.name, {FINISHED_NONE}, x.at,
               x.partition_concurrency IS NOT NULL, x.partition_rate_limit IS NOT NULL,
               least(%(key_walk)s::int, 16 * x.room)) END AS loads
    FROM (
    SELECT h.name, h.partitioned, h.fair, h.partition_concurrency, h.partition_rate_limit,
           h.key_cursor, s.at,
           greatest(least(
               %(limit)s,
               -- A rate counts starts as they are claimed, so a rate-limited queue's jobs are
               -- never claimed ahead of a free thread: each starts when its claim counted it.
               CASE WHEN h.rate_limit IS NOT NULL OR h.partition_rate_limit IS NOT NULL
                    THEN coalesce(%(start_now)s, %(limit)s) END,
               h.concurrency - t.running,
               h.worker_concurrency - t.running_here,
               h.rate_limit - t.recent_starts
           ), 0)::int AS room
    FROM held AS h CROSS JOIN stamp AS s, LATERAL pgjobs_queue_counts(
        h.name, %(worker_id)s, {FINISHED_NONE}, s.at, h.concurrency,
        h.worker_concurrency, h.rate_limit) AS t
    OFFSET 0) AS x
),
{_open_queues(queues)},
open_ranked AS MATERIALIZED (
    -- The best ``limit`` due jobs of the open queues, ranked as the merge (due_flow) ranks
    -- them, read without a lock; these are locked (due_open), and only when some of them
    -- cannot be, more (due_open_more). Locking each queue's first ``limit`` instead, a worker
    -- of 60 open queues beside one paused queue locked 30,000 rows (1.9 MB of WAL, 65 ms) to
    -- claim 500.
    SELECT c.id FROM open_queues AS o, LATERAL (
        SELECT {CANDIDATE} FROM pgjobs_job_queue AS j
        WHERE {DUE.format(queue="o.queue")}{names}
        ORDER BY {_CLAIM_ORDER}
        LIMIT %(limit)s
    ) AS c
    ORDER BY {_OPEN_ORDER}
    LIMIT %(limit)s
),
due_open AS MATERIALIZED (
    -- Each row is checked again as it is locked: one another claim took since this
    -- statement's snapshot is no longer pending, one it holds is skipped.
    SELECT {CANDIDATE}, 1::bigint AS turn FROM pgjobs_job_queue AS j
    WHERE j.id = ANY(ARRAY(SELECT id FROM open_ranked))
      AND {DUE.format(queue="j.queue")}{names}
    FOR UPDATE OF j SKIP LOCKED
),
due_open_more AS (
    -- Rows of the ranking other claims hold or took: every open queue walks on, past rows
    -- held, for as many more as are missing (none: LIMIT 0 reads nothing), and the merge takes
    -- the best of them. The best rows a claim can lock, as when each open queue locked its
    -- first ``limit``, which left all but the claim's jobs locked (a ranking again without
    -- locks could be held again: three overlapping claims, the third took nothing).
    SELECT d.*, 1::bigint AS turn FROM open_queues AS o, LATERAL (
        SELECT * FROM (
            SELECT {CANDIDATE} FROM pgjobs_job_queue AS j
            WHERE {DUE.format(queue="o.queue")}{names}
              AND j.id NOT IN (SELECT id FROM open_ranked)
            ORDER BY {_CLAIM_ORDER}
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS d LIMIT (SELECT count(*) FROM open_ranked) - (SELECT count(*) FROM due_open)
    ) AS d
),
due_limited AS (
    -- The inner LIMIT is the claim's, a value the planner knows (it plans an ordered index
    -- scan for that many rows); the outer one, the queue's room, stops the scan sooner.
    SELECT d.*, 1::bigint AS turn FROM budget AS b, LATERAL (
        SELECT * FROM (
            SELECT {CANDIDATE} FROM pgjobs_job_queue AS j
            WHERE {DUE.format(queue="b.name")}{names}
            ORDER BY {_CLAIM_ORDER}
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS d LIMIT b.room
    ) AS d
    WHERE b.room > 0 AND NOT b.partitioned
),
{key_walk_ctes(job_names)}due_flow AS (
    -- The claim's jobs (id, queue, partition_key): the best of every queue's candidates, its
    -- turns first. A partitioned queue's n-th pick in walk order is ranked as its n-th best,
    -- so the merge decides how many of its picks the claim takes, never which: when other
    -- queues' jobs leave room for only some, those are the keys whose turn it is, and the
    -- cursor (cursor_moved) stops before the first left out. A rate-limited queue's jobs
    -- are kept only among the first ``start_now`` (those the worker starts on its free
    -- threads: it runs a claim's jobs in the order of ``n``, which the claim returns): never
    -- claimed ahead, behind other jobs, of a start the ledger counts now (queries.rate_starts).
    SELECT m.id, m.queue, m.partition_key, m.n FROM (
        SELECT c.id, c.queue, c.partition_key, row_number() OVER (ORDER BY {_MERGE_ORDER}) AS n
        FROM (
            SELECT d.id, d.queue, d.partition_key, d.turn, d.priority, d.scheduled_for, d.seq,
                   d.id AS tie
            FROM due_open AS d
            UNION ALL
            SELECT d.id, d.queue, d.partition_key, d.turn, d.priority, d.scheduled_for, d.seq,
                   d.id
            FROM due_open_more AS d
            UNION ALL
            SELECT d.id, d.queue, d.partition_key, d.turn, d.priority, d.scheduled_for, d.seq,
                   d.id
            FROM due_limited AS d
            UNION ALL
            SELECT o.id, o.queue, o.partition_key, o.turn, o.priority, o.scheduled_for, o.seq,
                   o.tie
            FROM offers AS o
        ) AS c
        ORDER BY {_MERGE_ORDER}
        LIMIT %(limit)s
    ) AS m
    WHERE m.n <= coalesce(%(start_now)s, %(limit)s)
       OR m.queue NOT IN (SELECT name FROM held WHERE {RATED})
)"""
