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
  worker's) and recent starts, and ``pgjobs_key_counts()`` the same for each partition key the
  key walk (below) reaches: only the counts the queue's limits need, each read only up to its
  limit (a count at the limit leaves no room, as a larger one would), so a claim reads neither
  every running job of a queue nor the starts of every key in its rate window (migration 0021).
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
  previous claim stopped, until they have twice the claim's room in keys that can start a job
  (or have walked a bound), give each key its own room, and read each key's jobs in claim order
  (``seq`` breaks ties, so one transaction's jobs of a key run in the order they were
  enqueued). Jobs without a key are one more partition.
  ``fair`` orders the candidates by their turn within their key first, so each key gets one job
  before any key gets a second, and when other queues' jobs leave room for only some of them
  the claim takes those whose turn it is; the cursor moves only past keys the claim took or
  could not start, so a key left out has the next turn.

Jobs claimed ahead (prefetched) count as running: a limit counts what workers hold, not only
what their threads run. Rate-limited queues are never claimed ahead: a start is counted when it
is claimed, so a claim takes their jobs only among those free threads start at once (due_flow).
Limits are read by each claim, so a change applies to the next one; a claim that began before a
change committed may still use the old values.
"""

from __future__ import annotations

from collections.abc import Sequence

from django_pgjobs.queries.base import pending_queues

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

# The due rows of queue ``{queue}`` (an SQL expression), best first. For rows aliased ``j``.
_DUE = "j.status = 'pending' AND j.scheduled_for <= now() AND j.queue = {queue}"
_CLAIM_ORDER = "j.priority DESC, j.scheduled_for, j.id"
# The merge's order of every queue's candidates (``c``): turns first.
_MERGE_ORDER = "c.turn, c.priority DESC, c.scheduled_for, c.seq NULLS FIRST, c.tie"
# A queue (a ``rules`` / ``held`` row) whose claims append to the rate ledger.
RATED = "rate_limit IS NOT NULL OR partition_rate_limit IS NOT NULL"
# A partition's order. partition_key leads, though one partition has one value, because only an
# equality pins an index column: after ``partition_key IS NULL`` the planner would otherwise
# sort the queue's unkeyed jobs instead of reading pgjobs_job_partition_claim in order.
_KEY_ORDER = "j.partition_key, j.priority DESC, j.scheduled_for, j.seq NULLS FIRST"
# The columns every candidate carries, for the merge's order.
_CANDIDATE = "j.id, j.queue, j.partition_key, j.priority, j.scheduled_for, j.seq"


def _names(job_names: Sequence[str] | None) -> str:
    return "" if job_names is None else " AND j.job_name = ANY(%(job_names)s)"


def _served(queues: Sequence[str] | None, column: str) -> str:
    if queues and len(queues) == 1:
        return f" AND {column} = %(queue)s"
    if queues:
        return f" AND {column} = ANY(%(queues)s)"
    return ""


# The next key of a walk (rows ``k`` of ``keys``): after the last one, and once the walk has gone
# round past the last key, before the key it started at.
_ONWARD = "j.partition_key > k.partition_key AND (NOT k.wrapped OR j.partition_key < k.start)"


def _key_head(queue: str, after: str, names: str) -> str:
    """The first due job of the next key of ``queue`` (both SQL expressions) that satisfies
    ``after``, with whether this worker can run it."""
    return f"""SELECT j.partition_key, j.id, j.priority, j.scheduled_for, j.seq,
               (true{names}) AS runnable
        FROM pgjobs_job_queue AS j
        WHERE {_DUE.format(queue=queue)} AND {after}
        ORDER BY {_KEY_ORDER}
        LIMIT 1"""


# The counts of one partition of queue ``b`` (a budget row; ``{key}``: the partition's key, NULL
# for jobs without one), each up to the key's limit: a lateral call per key the walk reaches.
_KEY_COUNTS = """pgjobs_key_counts(
        b.name, {key}, %(ids)s::uuid[], %(tokens)s::uuid[], b.at, b.partition_concurrency,
        b.partition_rate_limit) AS c"""

# Whether the key of head ``h`` (a _key_head row of queue ``b``, a budget row, with the key's
# counts ``c``) can start a job now: its head is runnable here and the key is below its limits.
_USABLE = """(h.runnable AND NOT coalesce(
        c.running >= b.partition_concurrency OR c.recent_starts >= b.partition_rate_limit,
        false))::int"""


def _key_jobs(partition: str, names: str) -> str:
    """The due jobs of one partition (rows of ``shares`` aliased ``s``) in order, numbered.
    The inner LIMIT is the claim's, a value the planner knows (it plans an ordered index scan
    for that many rows, and the window needs no sort); the outer one, the key's room, stops
    the scan sooner."""
    return f"""(SELECT c.*, row_number() OVER w AS turn,
                bool_and(c.runnable) OVER w AS runnable_so_far
         FROM (SELECT {_CANDIDATE}, (true{names}) AS runnable FROM pgjobs_job_queue AS j
               WHERE {_DUE.format(queue="s.queue")} AND {partition}
               ORDER BY {_KEY_ORDER}
               LIMIT %(limit)s) AS c
         WINDOW w AS (ORDER BY {_KEY_ORDER.replace("j.", "c.")} ROWS UNBOUNDED PRECEDING)
         LIMIT s.room)"""


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
    ``rules`` has rows. Parameters: worker_id, limit, start_now, queue/queues, job_names, and
    ids/tokens: the attempts the same statement completes (complete_and_claim; empty arrays
    otherwise), whose slots it may hand on."""
    names = _names(job_names)
    usable = _USABLE
    key_counts = _KEY_COUNTS.format(key="h.partition_key")
    unkeyed_counts = _KEY_COUNTS.format(key="NULL")
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
        h.name, %(worker_id)s, %(ids)s::uuid[], %(tokens)s::uuid[], s.at, h.concurrency,
        h.worker_concurrency, h.rate_limit) AS t
),
{_open_queues(queues)},
due_open AS (
    SELECT d.*, 1::bigint AS turn FROM open_queues AS o, LATERAL (
        SELECT {_CANDIDATE} FROM pgjobs_job_queue AS j
        WHERE {_DUE.format(queue="o.queue")}{names}
        ORDER BY {_CLAIM_ORDER}
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS d
),
due_limited AS (
    -- The inner LIMIT is the claim's, a value the planner knows (it plans an ordered index
    -- scan for that many rows); the outer one, the queue's room, stops the scan sooner.
    SELECT d.*, 1::bigint AS turn FROM budget AS b, LATERAL (
        SELECT * FROM (
            SELECT {_CANDIDATE} FROM pgjobs_job_queue AS j
            WHERE {_DUE.format(queue="b.name")}{names}
            ORDER BY {_CLAIM_ORDER}
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS d LIMIT b.room
    ) AS d
    WHERE b.room > 0 AND NOT b.partitioned
),
keys(queue, partition_key, id, priority, scheduled_for, seq, runnable, depth, found, start,
     wrapped, running, recent_starts, usable) AS (
    -- Each key with due jobs and its first due job (its head, in claim order): a skip scan of
    -- pgjobs_job_partition_claim, one probe per key, from the key after the queue's cursor,
    -- round from the first key after the last, up to the key it started at, until it has found
    -- twice the queue's room in keys that can start a job now (or walked %(key_walk)s keys): a
    -- claim's cost follows its batch, and the keys take turns in windows. Each key reached is
    -- counted (pgjobs_key_counts), and only those: the keys' counts cost what the walk does,
    -- however many other keys have jobs running or starts in the window.
    SELECT b.name, h.partition_key, h.id, h.priority, h.scheduled_for, h.seq, h.runnable, 1,
           {usable}, h.partition_key, false, c.running, c.recent_starts, {usable}
    FROM budget AS b, LATERAL (
        SELECT * FROM (
            ({_key_head("b.name", "j.partition_key > b.key_cursor", names)})
            UNION ALL
            ({_key_head("b.name", "j.partition_key IS NOT NULL", names)})
        ) AS first LIMIT 1
    ) AS h, LATERAL {key_counts}
    WHERE b.partitioned AND b.room > 0
    UNION ALL
    SELECT k.queue, h.partition_key, h.id, h.priority, h.scheduled_for, h.seq, h.runnable,
           k.depth + 1, k.found + {usable}, k.start, h.wrapped, c.running, c.recent_starts,
           {usable}
    FROM keys AS k JOIN budget AS b ON b.name = k.queue, LATERAL (
        SELECT * FROM (
            (SELECT n.*, k.wrapped AS wrapped FROM ({_key_head("k.queue", _ONWARD, names)}) AS n)
            UNION ALL
            (SELECT n.*, true FROM ({
        _key_head("k.queue", "NOT k.wrapped AND j.partition_key < k.start", names)
    }) AS n)
        ) AS next LIMIT 1
    ) AS h, LATERAL {key_counts}
    WHERE k.depth < %(key_walk)s AND k.found < 2 * b.room
),
cursor_free AS MATERIALIZED (
    -- The queue rows whose cursor this claim may move: one an application holds (pause_queue()
    -- or set_queue_limits() in an open transaction) is skipped, never waited for; its cursor
    -- stays where it was, and the next claim walks from there again.
    SELECT name FROM pgjobs_queues WHERE name IN (SELECT queue FROM keys)
    FOR NO KEY UPDATE SKIP LOCKED
),
missed AS (
    -- Per queue, the first key walked that could start a job and that the claim did not take:
    -- beyond the queue's room, cut by the merge with other queues (due_flow), or locked.
    SELECT m.queue, min(m.depth) AS depth FROM keys AS m
    WHERE m.usable = 1 AND NOT EXISTS (
        SELECT 1 FROM due_flow AS t
        WHERE t.queue = m.queue AND t.partition_key = m.partition_key)
    GROUP BY m.queue
),
cursor_moved AS (
    -- Under the queue's lock: the next claim walks on from the last key this one walked, or
    -- in a queue that takes turns, from the last before the first it missed: a key whose turn
    -- this claim did not take (even one it offered) is next.
    UPDATE pgjobs_queues AS q SET key_cursor = last.partition_key
    FROM (SELECT DISTINCT ON (k.queue) k.queue, k.partition_key
          FROM keys AS k JOIN budget AS b ON b.name = k.queue
          LEFT JOIN missed AS m ON m.queue = k.queue
          WHERE NOT b.fair OR m.depth IS NULL OR k.depth < m.depth
          ORDER BY k.queue, k.depth DESC) AS last
    WHERE q.name = last.queue AND q.name IN (SELECT name FROM cursor_free)
),
partitions AS (
    SELECT queue, partition_key, false AS unkeyed, id, priority, scheduled_for, seq, runnable,
           depth, running, recent_starts
    FROM keys
    UNION ALL
    SELECT b.name, NULL, true, NULL::uuid, NULL::smallint, NULL::timestamptz, NULL::bigint, NULL,
           NULL::int, c.running, c.recent_starts
    FROM budget AS b, LATERAL {unkeyed_counts}
    -- A scalar subquery, not EXISTS, which the planner may turn into a join over the table.
    WHERE b.partitioned AND b.room > 0 AND (
        SELECT 1 FROM pgjobs_job_queue AS j
        WHERE j.status = 'pending' AND j.queue = b.name AND j.partition_key IS NULL
        LIMIT 1) IS NOT NULL
),
shares AS (
    SELECT p.*, b.fair, greatest(least(
        b.room,
        b.partition_concurrency - p.running,
        b.partition_rate_limit - p.recent_starts,
        -- Taking turns: each key offers twice its share of the room (a key with fewer jobs
        -- leaves room to the others), so the candidates read stay near the room, not the
        -- room times the keys.
        CASE WHEN b.fair
             THEN ceil(2 * b.room::numeric / count(*) OVER (PARTITION BY p.queue))::int END
    ), 0)::int AS room
    FROM partitions AS p
    JOIN budget AS b ON b.name = p.queue
),
due_keyed AS (
    -- A key's jobs in order, up to its room, and only up to the first whose handler this
    -- worker lacks: the jobs of a key never overtake one another. A key with room for one
    -- (one job per key at a time, or its turn) takes the head the skip scan found.
    -- ``place``: a turn-taking queue's keys take their turns in the order they were walked
    -- (from the cursor: round robin), the unkeyed partition first; NULL without turns.
    SELECT s.id, s.queue, s.partition_key, s.priority, s.scheduled_for, s.seq, 1::bigint AS turn,
           CASE WHEN s.fair THEN coalesce(s.depth, 0) END AS place
    FROM shares AS s WHERE s.room = 1 AND NOT s.unkeyed AND s.runnable
    UNION ALL
    SELECT d.id, d.queue, d.partition_key, d.priority, d.scheduled_for, d.seq,
           CASE WHEN s.fair THEN d.turn ELSE 1 END, CASE WHEN s.fair THEN coalesce(s.depth, 0) END
    FROM shares AS s, LATERAL (
        {_key_jobs("NOT s.unkeyed AND j.partition_key = s.partition_key", names)}
        UNION ALL
        {_key_jobs("s.unkeyed AND j.partition_key IS NULL", names)}
    ) AS d
    WHERE (s.room > 1 OR (s.unkeyed AND s.room > 0)) AND d.runnable_so_far
),
keyed_picks AS (
    SELECT c.* FROM (
        SELECT c.*, row_number() OVER (
            PARTITION BY c.queue
            ORDER BY c.turn, c.place, c.priority DESC, c.scheduled_for, c.seq NULLS FIRST,
                     c.id) AS n
        FROM due_keyed AS c
    ) AS c
    JOIN budget AS b ON b.name = c.queue
    WHERE c.n <= b.room
),
keyed_locked AS (
    -- Read without locks above (the queue's claims take turns); locked now, each row checked
    -- again as it is locked.
    SELECT j.id FROM pgjobs_job_queue AS j
    WHERE j.id = ANY(ARRAY(SELECT id FROM keyed_picks)) AND j.status = 'pending'
      AND j.scheduled_for <= now()
    FOR UPDATE SKIP LOCKED
),
offers AS (
    -- A partitioned queue's picks that it locked, numbered in the order its walk gave them
    -- (turns, then round robin from the cursor) and in the merge's order.
    SELECT p.id, p.queue, p.partition_key, p.turn, p.priority, p.scheduled_for, p.seq,
           row_number() OVER (PARTITION BY p.queue ORDER BY p.n) AS walked,
           row_number() OVER (
               PARTITION BY p.queue
               ORDER BY p.turn, p.priority DESC, p.scheduled_for, p.seq NULLS FIRST, p.id
           ) AS ranked
    FROM keyed_picks AS p
    WHERE p.id IN (SELECT id FROM keyed_locked)
),
due_flow AS (
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
            FROM due_limited AS d
            UNION ALL
            SELECT w.id, w.queue, w.partition_key, r.turn, r.priority, r.scheduled_for, r.seq,
                   r.id
            FROM offers AS w JOIN offers AS r ON r.queue = w.queue AND r.ranked = w.walked
        ) AS c
        ORDER BY {_MERGE_ORDER}
        LIMIT %(limit)s
    ) AS m
    WHERE m.n <= coalesce(%(start_now)s, %(limit)s)
       OR m.queue NOT IN (SELECT name FROM held WHERE {RATED})
)"""
