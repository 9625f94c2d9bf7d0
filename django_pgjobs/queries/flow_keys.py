"""The key walk of a partitioned queue's claim (a per-key limit, or ``fair``): part of the
flow-controlled claim, under the queue's lock (:mod:`.flow` says how the claim counts and why
the counts are exact).

The walk finds the keys with due jobs by a skip scan of ``pgjobs_job_partition_claim`` (one
index probe per key), from where the previous claim stopped, until it has found the claim's room
in keys that can start a job (twice that in a queue that takes turns, whose keys each offer a
share), or walked a bound; or, outside a queue that takes turns, once it has as many as the
worker has free threads, at a run of ``AHEAD_RUN`` keys that cannot start one. Each key's
counts come from the queue's loads, read once (``budget``: pgjobs_key_loads, migration 0025)
when there are no more of them than 16 rows a key of room (at most the walk's bound), or else
from a count of each key the walk reaches alone (pgjobs_key_counts): a row of loads costs a few
microseconds, a key's own count about 20.

The walk runs under the lock and starts from the cursor as the claim before it left it, read
after the lock (``cursor_free``): the statement's snapshot is older than the lock, and from its
cursor a claim that waited would walk the keys the claim before it took (and find their heads
taken). Walked before the lock (tried), two workers' claims started from the same cursor, walked
the same keys, and the second found them taken once it had the lock.
"""

from __future__ import annotations

from collections.abc import Sequence

# The due rows of queue ``{queue}`` (an SQL expression), best first. For rows aliased ``j``.
DUE = "j.status = 'pending' AND j.scheduled_for <= now() AND j.queue = {queue}"
# A partition's order. partition_key leads, though one partition has one value, because only an
# equality pins an index column: after ``partition_key IS NULL`` the planner would otherwise
# sort the queue's unkeyed jobs instead of reading pgjobs_job_partition_claim in order.
KEY_ORDER = "j.partition_key, j.priority DESC, j.scheduled_for, j.seq NULLS FIRST"
# The columns every candidate carries, for the merge's order.
CANDIDATE = "j.id, j.queue, j.partition_key, j.priority, j.scheduled_for, j.seq"
# A queue (a ``rules`` / ``held`` row) whose claims append to the rate ledger.
RATED = "rate_limit IS NOT NULL OR partition_rate_limit IS NOT NULL"


def names_filter(job_names: Sequence[str] | None) -> str:
    """Only the jobs this worker has handlers for (rows aliased ``j``)."""
    return "" if job_names is None else " AND j.job_name = ANY(%(job_names)s)"


# How many jobs the key of walked row ``k`` (of queue ``b``) may start by its own limits (NULL: no
# per-key limit, only turns). Its room is this or the queue's, whichever is smaller; the walk
# reaches a queue only when its room is at least 1.
_KEY_ROOM = "least(b.partition_concurrency - k.running, b.partition_rate_limit - k.recent_starts)"

# The merge's order of a partitioned queue's picks (``p``), as due_flow ranks every candidate.
_RANK = "p.turn, p.priority DESC, p.scheduled_for, p.seq NULLS FIRST, p.id"

# Where a queue's walk starts (a budget row ``b``, its cursor_free row ``f``): after the cursor the
# claim before this one left, or the snapshot's cursor when the row was not locked.
_CURSOR = "CASE WHEN f.name IS NULL THEN b.key_cursor ELSE f.key_cursor END"

# A walk that has found keys for every free thread stops after this many keys in a row that cannot
# start a job (keys other workers' jobs hold), rather than walk the rest of them for jobs to claim
# ahead. Not in a queue that takes turns: its walk decides whose turn is next.
AHEAD_RUN = 32

# The next key of a walk (rows ``k`` of ``keys``): after the last one, and once the walk has gone
# round past the last key, before the key it started at.
_ONWARD = "j.partition_key > k.partition_key AND (NOT k.wrapped OR j.partition_key < k.start)"


def _key_head(queue: str, after: str, names: str) -> str:
    """The first due job of the next key of ``queue`` (both SQL expressions) that satisfies
    ``after``, with whether this worker can run it."""
    return f"""SELECT j.partition_key, j.id, j.priority, j.scheduled_for, j.seq,
               (true{names}) AS runnable
        FROM pgjobs_job_queue AS j
        WHERE {DUE.format(queue=queue)} AND {after}
        ORDER BY {KEY_ORDER}
        LIMIT 1"""


# The attempts the counts (pgjobs_queue_counts, pgjobs_key_loads, pgjobs_key_counts) leave out
# as finishing: none. The functions take them (ids and lease tokens) for a claim that completes
# attempts in its own statement, which no claim does any more: the worker writes its successes
# before a flow-controlled claim, in their own transaction, and the counts see them written.
FINISHED_NONE = "'{}'::uuid[], '{}'::uuid[]"


def _key_counts(key: str) -> str:
    """A call counting one partition of queue ``b`` (a budget row; ``key``: the partition's key,
    NULL for jobs without one), each count up to the key's limit."""
    return f"""pgjobs_key_counts(
        b.name, {key}, {FINISHED_NONE}, b.at, b.partition_concurrency, b.partition_rate_limit)"""


# The counts of the key of head ``h`` in queue ``b``: looked up in the queue's loads (``b.loads``,
# read once a claim) when there are few enough of them, else counted for this key alone
# (pgjobs_key_counts). The one-time filters run one of the two.
_WALKED_COUNTS = f"""(
        SELECT coalesce((b.loads -> h.partition_key ->> 0)::bigint, 0) AS running,
               coalesce((b.loads -> h.partition_key ->> 1)::bigint, 0) AS recent_starts
        WHERE b.loads IS NOT NULL
        UNION ALL
        SELECT * FROM {_key_counts("h.partition_key")} WHERE b.loads IS NULL
    ) AS c"""


def _left_running(partition: str) -> str:
    """SQL: a job of the partition (``partition``: a condition on rows ``r`` of queue ``b``) has
    left ``running`` since the statement's snapshot was taken, as far as the counts (``c``,
    each read with a snapshot of its own after the queue's lock) can tell: the statement's
    snapshot sees more of its jobs running than they do. Used for the jobs without a key, which
    then wait for the next claim whatever that job became (the keys find out which: ``moved``).
    Read only where ``partition_concurrency`` makes the counts count running jobs; one probe of
    pgjobs_job_running, stopped past the counts'."""
    return f"""(b.partition_concurrency IS NOT NULL AND (
        SELECT count(*) FROM (
            SELECT 1 FROM pgjobs_job_queue AS r
            WHERE r.queue = b.name AND {partition} AND r.status = 'running'
            LIMIT c.running + 1) AS r) > c.running)"""


# Whether the key of head ``h`` (with the key's counts ``c``, in queue ``b``) can start a job
# now: its head is runnable here and the key is below its limits.
_USABLE = """(h.runnable AND NOT coalesce(
        c.running >= b.partition_concurrency OR c.recent_starts >= b.partition_rate_limit,
        false))::int"""


def _key_jobs(partition: str, names: str) -> str:
    """The first due jobs of one partition (rows of ``shares`` aliased ``s``), up to its room,
    in order, numbered. The inner LIMIT is the claim's, a value the planner knows (it plans an
    ordered index scan for that many rows); the outer one, the key's room, stops the scan
    before the window, which read every due job of the key when it came after it (a claim of
    500 from keys of 20 jobs with room for 2 each read 11,500 entries)."""
    return f"""(SELECT c.*, row_number() OVER w AS turn,
                bool_and(c.runnable) OVER w AS runnable_so_far
         FROM (SELECT * FROM (
                   SELECT {CANDIDATE}, (true{names}) AS runnable FROM pgjobs_job_queue AS j
                   WHERE {DUE.format(queue="s.queue")} AND {partition}
                   ORDER BY {KEY_ORDER}
                   LIMIT %(limit)s) AS c
               LIMIT s.room) AS c
         WINDOW w AS (ORDER BY {KEY_ORDER.replace("j.", "c.")} ROWS UNBOUNDED PRECEDING))"""


def key_walk_ctes(job_names: Sequence[str] | None) -> str:
    """The CTEs of the partitioned queues' part of a flow-controlled claim, ending in
    ``offers`` (their locked picks in walk order, each with its merge sort key) and
    ``cursor_moved``."""
    names = names_filter(job_names)
    usable = _USABLE
    return f"""keys(queue, partition_key, id, priority, scheduled_for, seq, runnable, depth,
     found, start, wrapped, running, recent_starts, usable, passed) AS (
    -- Each key with due jobs and its first due job (its head, in claim order): a skip scan of
    -- pgjobs_job_partition_claim, one probe per key, from the key after the queue's cursor,
    -- round from the first key after the last, up to the key it started at, until it has found
    -- the queue's room in keys that can start a job now (twice that in a queue that takes
    -- turns, whose keys each offer a share), or walked %(key_walk)s keys: a claim's cost
    -- follows its batch.
    SELECT b.name, h.partition_key, h.id, h.priority, h.scheduled_for, h.seq, h.runnable, 1,
           {usable}, h.partition_key, false, c.running, c.recent_starts, {usable}, 1 - {usable}
    FROM budget AS b LEFT JOIN cursor_free AS f ON f.name = b.name, LATERAL (
        SELECT * FROM (
            ({_key_head("b.name", "j.partition_key > " + _CURSOR, names)})
            UNION ALL
            ({_key_head("b.name", "j.partition_key IS NOT NULL", names)})
        ) AS first LIMIT 1
    ) AS h, LATERAL {_WALKED_COUNTS}
    WHERE b.partitioned AND b.room > 0
    UNION ALL
    SELECT k.queue, h.partition_key, h.id, h.priority, h.scheduled_for, h.seq, h.runnable,
           k.depth + 1, k.found + {usable}, k.start, h.wrapped, c.running, c.recent_starts,
           {usable}, (k.passed + 1) * (1 - {usable})
    FROM keys AS k JOIN budget AS b ON b.name = k.queue, LATERAL (
        SELECT * FROM (
            (SELECT n.*, k.wrapped AS wrapped FROM ({_key_head("k.queue", _ONWARD, names)}) AS n)
            UNION ALL
            (SELECT n.*, true FROM ({
        _key_head("k.queue", "NOT k.wrapped AND j.partition_key < k.start", names)
    }) AS n)
        ) AS next LIMIT 1
    ) AS h, LATERAL {_WALKED_COUNTS}
    WHERE k.depth < %(key_walk)s AND k.found < CASE WHEN b.fair THEN 2 * b.room ELSE b.room END
      -- Once free threads have theirs, a walk for jobs to claim ahead stops at a run of keys
      -- that cannot start one: those other workers' jobs hold, which a claim that follows
      -- theirs (the cursor is where they stopped) meets in one stretch.
      AND (b.fair OR k.found < coalesce(%(start_now)s, %(limit)s) OR k.passed < {AHEAD_RUN})
),
suspects AS (
    -- The jobs a key that can start one now has running in the statement's snapshot, where
    -- the counts (after the queue's lock, each with a snapshot of its own) found fewer: some of
    -- them left ``running`` while this claim waited for the lock (which ones, the snapshot
    -- cannot tell: all are asked about). One probe of pgjobs_job_running per such key; only
    -- where partition_concurrency makes the counts count running jobs.
    SELECT k.queue, k.partition_key, r.id
    FROM keys AS k JOIN budget AS b ON b.name = k.queue, LATERAL (
        SELECT r.id, count(*) OVER () AS seen FROM (
            SELECT r.id FROM pgjobs_job_queue AS r
            WHERE r.queue = k.queue AND r.partition_key = k.partition_key
              AND r.status = 'running') AS r
    ) AS r
    WHERE k.usable = 1 AND b.partition_concurrency IS NOT NULL AND r.seen > k.running
),
moved AS (
    -- The keys a job of which went back to pending and is due (handed back at a shutdown, or
    -- claimed ahead and given back: it keeps its place) while this claim waited: the
    -- statement's snapshot does not have it among the key's due jobs, and the walk would start
    -- the job behind it in the slot it freed. (A job retried or snoozed is due after this
    -- claim's start, behind the key's due jobs.) Left to the next claim, whose
    -- snapshot has it (a queue that takes turns gives the key its turn next: ``missed``).
    -- pgjobs_pending_again() reads the rows' newest versions, with a snapshot of its own
    -- (migration 0029): one call a claim, no lock (a locking read that follows a row's
    -- updates would write a lock into each, most of them jobs the other worker completed).
    SELECT DISTINCT s.queue, s.partition_key
    FROM (SELECT pgjobs_pending_again(ARRAY(SELECT id FROM suspects)) AS ids OFFSET 0) AS a,
         suspects AS s
    WHERE s.id = ANY(a.ids)
),
heads AS (
    -- The keys whose head the walk found is their pick, straight: keys with room for one job
    -- (or only their turn's) in a queue that does not take turns, none of whose jobs moved.
    SELECT k.id, k.queue, k.partition_key, k.priority, k.scheduled_for, k.seq
    FROM keys AS k JOIN budget AS b ON b.name = k.queue
    WHERE k.usable = 1 AND NOT b.fair AND {_KEY_ROOM} = 1
      AND (k.queue, k.partition_key) NOT IN (SELECT queue, partition_key FROM moved)
),
partitions AS (
    -- The partitions that need their room worked out: every key of a queue that takes turns
    -- (each key's share follows their number), a key with room for more than one job, and the
    -- jobs without a key. A key of any other queue has room for its head alone or for nothing
    -- (due_keyed takes it from the walk), as most keys do: one job per key at a time.
    SELECT k.queue, k.partition_key, false AS unkeyed, k.id, k.priority, k.scheduled_for, k.seq,
           k.runnable, k.depth, k.running, k.recent_starts, k.usable
    FROM keys AS k JOIN budget AS b ON b.name = k.queue
    WHERE (b.fair OR {_KEY_ROOM} > 1)
      AND (k.queue, k.partition_key) NOT IN (SELECT queue, partition_key FROM moved)
    UNION ALL
    SELECT b.name, NULL, true, NULL::uuid, NULL::smallint, NULL::timestamptz, NULL::bigint, NULL,
           NULL::int,
           -- One of them left running since the snapshot: no room until the next claim.
           CASE WHEN {_left_running("r.partition_key IS NULL")} THEN b.partition_concurrency
                ELSE c.running END,
           c.recent_starts, 0
    FROM budget AS b, LATERAL {_key_counts("NULL")} AS c
    -- A scalar subquery, not EXISTS, which the planner may turn into a join over the table.
    WHERE b.partitioned AND b.room > 0 AND (
        SELECT 1 FROM pgjobs_job_queue AS j
        WHERE j.status = 'pending' AND j.queue = b.name AND j.partition_key IS NULL
        LIMIT 1) IS NOT NULL
),
cursor_free AS MATERIALIZED (
    -- After the queue's lock, the queue rows whose cursor this claim may move, and their cursor
    -- as the claim before this one left it: a locking read gives the row's newest version,
    -- where the statement's snapshot (taken before the wait) gives the cursor of the claim
    -- before that, and a claim that waited would walk the keys the last one took. A row an
    -- application holds (pause_queue() or set_queue_limits() in an open transaction) is
    -- skipped, never waited for: the walk starts from the snapshot's cursor, and the cursor
    -- stays where it was.
    SELECT name, key_cursor FROM pgjobs_queues
    WHERE name IN (SELECT name FROM budget WHERE partitioned AND room > 0)
    FOR NO KEY UPDATE SKIP LOCKED
),
missed AS (
    -- Per queue, the first key walked that could start a job and that the claim did not take:
    -- beyond the queue's room, cut by the merge with other queues (due_flow), or locked.
    -- NOT IN over keys (never NULL), not NOT EXISTS: PostgreSQL hashes the claim's keys once
    -- (a hashed SubPlan) where it planned the anti join as a nested loop, a scan of due_flow
    -- for each key walked (20 ms for a claim of 500 from 1,000 keys).
    SELECT m.queue, min(m.depth) AS depth FROM keys AS m
    WHERE m.usable = 1 AND (m.queue, m.partition_key) NOT IN (
        SELECT t.queue, t.partition_key FROM due_flow AS t WHERE t.partition_key IS NOT NULL)
    GROUP BY m.queue
),
cursor_moved AS (
    -- Under the queue's lock: the next claim walks on from the last key this one walked, or
    -- in a queue that takes turns, from the last before the first it missed: a key whose turn
    -- this claim did not take (even one it offered) is next.
    UPDATE pgjobs_queues AS q SET key_cursor = last.partition_key
    FROM cursor_free AS f JOIN budget AS b ON b.name = f.name, LATERAL (
        SELECT k.partition_key FROM keys AS k
        WHERE k.queue = f.name AND (k.depth < (SELECT m.depth FROM missed AS m
                                               WHERE m.queue = f.name AND b.fair)) IS NOT FALSE
        ORDER BY k.depth DESC LIMIT 1) AS last
    WHERE q.name = f.name
),
shares AS (
    SELECT p.*, b.fair, greatest(least(
        b.room,
        b.partition_concurrency - p.running,
        b.partition_rate_limit - p.recent_starts,
        -- Taking turns: each key offers twice its share of the room (a key with fewer jobs
        -- leaves room to the others), so the candidates read stay near the room, not the
        -- room times the keys.
        CASE WHEN b.fair THEN ceil(2 * b.room::numeric / t.keys)::int END
    ), 0)::int AS room
    FROM partitions AS p
    JOIN budget AS b ON b.name = p.queue
    JOIN (SELECT queue, count(*) AS keys FROM partitions GROUP BY queue) AS t
      ON t.queue = p.queue
),
due_keyed AS (
    -- A key's jobs in order, up to its room, and only up to the first whose handler this
    -- worker lacks: the jobs of a key never overtake one another. A key with room for one
    -- (one job per key at a time, or its turn) takes the head the skip scan found: straight
    -- from the walk when its queue does not take turns (only for a queue with partitions:
    -- without, heads_locked takes its heads).
    -- ``place``: a turn-taking queue's keys take their turns in the order they were walked
    -- (from the cursor: round robin), the unkeyed partition first; NULL without turns.
    -- ``rank``: the job's place among its partition's due jobs (1: its head).
    SELECT h.id, h.queue, h.partition_key, h.priority, h.scheduled_for, h.seq, 1::bigint AS turn,
           NULL::int AS place, 1::bigint AS rank
    FROM heads AS h WHERE h.queue IN (SELECT queue FROM partitions)
    UNION ALL
    SELECT s.id, s.queue, s.partition_key, s.priority, s.scheduled_for, s.seq, 1::bigint,
           CASE WHEN s.fair THEN coalesce(s.depth, 0) END, 1
    FROM shares AS s WHERE s.room = 1 AND NOT s.unkeyed AND s.runnable
    UNION ALL
    SELECT d.id, d.queue, d.partition_key, d.priority, d.scheduled_for, d.seq,
           CASE WHEN s.fair THEN d.turn ELSE 1 END, CASE WHEN s.fair THEN coalesce(s.depth, 0) END,
           d.turn
    FROM shares AS s, LATERAL (
        {_key_jobs("NOT s.unkeyed AND j.partition_key = s.partition_key", names)}
        UNION ALL
        {_key_jobs("s.unkeyed AND j.partition_key IS NULL", names)}
    ) AS d
    WHERE (s.room > 1 OR (s.unkeyed AND s.room > 0)) AND d.runnable_so_far
),
keyed_picks AS MATERIALIZED (
    -- The picks of the queues with partitions to work out (a queue that takes turns, a key
    -- with room for more than one job, jobs without a key), each queue's up to its room.
    -- Materialized: keyed_locked's FOR UPDATE would otherwise carry each row of budget (its
    -- loads too) with each pick, for a recheck that needs only the job's row.
    SELECT c.*, b.fair FROM (
        SELECT c.*, row_number() OVER (
            PARTITION BY c.queue
            ORDER BY c.turn, c.place, c.priority DESC, c.scheduled_for, c.seq NULLS FIRST,
                     c.id) AS n
        FROM due_keyed AS c
    ) AS c
    JOIN budget AS b ON b.name = c.queue
    WHERE c.n <= b.room
),
heads_locked AS (
    -- The picks of a queue that does not take turns and has no partition to work out (every
    -- key it walked has room for one job, or none, as with partition_concurrency 1): the heads
    -- the walk found, locked as they are, with no numbering or cut. The walk stops once it has
    -- the queue's room in such keys, so there are never more of them than the room. Found by
    -- key (a bitmap scan of the ids, as ``claimed`` finds its rows), not by a join: 0.8 ms
    -- less than keyed_locked's join for 500 heads.
    SELECT {CANDIDATE} FROM pgjobs_job_queue AS j
    WHERE j.id = ANY(ARRAY(
        SELECT h.id FROM heads AS h WHERE h.queue NOT IN (SELECT queue FROM partitions)))
      AND j.status = 'pending' AND j.scheduled_for <= now()
    FOR UPDATE OF j SKIP LOCKED
),
keyed_locked AS (
    -- Read without locks above (the queue's claims take turns); locked now, each row checked
    -- again as it is locked. The picks' columns come along: a join of the picks with the
    -- locked ids afterwards was planned as a nested loop (the planner expects a row or two
    -- from a CTE), a scan of one for each row of the other: 18 ms for a claim of 500.
    SELECT p.* FROM keyed_picks AS p JOIN pgjobs_job_queue AS j ON j.id = p.id
    WHERE j.status = 'pending' AND j.scheduled_for <= now()
    FOR UPDATE OF j SKIP LOCKED
),
keyed_kept AS (
    -- A partition's locked picks up to the first it could not lock (an application holds its
    -- row, or another claim took it since the snapshot): the jobs behind a head that stays
    -- pending never start before it.
    SELECT l.* FROM (
        SELECT l.*, row_number() OVER (
            PARTITION BY l.queue, l.partition_key ORDER BY l.rank) AS got
        FROM keyed_locked AS l
    ) AS l
    WHERE l.got = l.rank
),
offers AS (
    -- A partitioned queue's picks that it locked, each with its sort key for the merge. In a
    -- queue that takes turns: in the order its walk gave them (turns, then round robin from
    -- the cursor), each with the merge's sort key of the pick as good as its
    -- place: its n-th pick in walk order ranks as its n-th best. Zipped by one unnest() of
    -- arrays each sorted its own way, not by joining two numberings of the picks: expecting a
    -- row or two from a CTE, the planner can make that join a nested loop (55 ms for 500).
    SELECT a.queue, z.*
    FROM (SELECT p.queue,
                 array_agg(p.id ORDER BY p.n) AS ids,
                 array_agg(p.partition_key ORDER BY p.n) AS keys,
                 array_agg(p.turn ORDER BY {_RANK}) AS turns,
                 array_agg(p.priority ORDER BY {_RANK}) AS priorities,
                 array_agg(p.scheduled_for ORDER BY {_RANK}) AS times,
                 array_agg(p.seq ORDER BY {_RANK}) AS seqs,
                 array_agg(p.id ORDER BY {_RANK}) AS ties
          FROM keyed_kept AS p WHERE p.fair GROUP BY p.queue) AS a,
         LATERAL unnest(a.ids, a.keys, a.turns, a.priorities, a.times, a.seqs, a.ties)
             AS z(id, partition_key, turn, priority, scheduled_for, seq, tie)
    UNION ALL
    -- A queue that does not take turns numbers its picks in the merge's order (keyed_picks'
    -- ``n``, with no turn or place), so the zip would give each pick its own sort key.
    SELECT p.queue, p.id, p.partition_key, p.turn, p.priority, p.scheduled_for, p.seq, p.id
    FROM keyed_kept AS p WHERE NOT p.fair
    UNION ALL
    SELECT p.queue, p.id, p.partition_key, 1::bigint, p.priority, p.scheduled_for, p.seq, p.id
    FROM heads_locked AS p
),
"""
