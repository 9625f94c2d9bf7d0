"""Why a due job waits: the read-only statements behind ``explain_job`` and the dashboard's counts
of due jobs by what holds them back (the reads behind each answer's sentences are in
:mod:`.explain_details`).

One classification decides, for each due job, the first thing that keeps the claim from taking
it, in the order :class:`~django_pgjobs.observability.explain.Blocker` lists, from the facts the
claim itself reads (:mod:`.flow`): the queue's row in ``pgjobs_queues``; the claim's own
``pgjobs_queue_counts()`` and ``pgjobs_key_counts()`` for the jobs running and the starts in the
rate window, per queue and for the keys of the jobs asked about; the job's place among its key's
due jobs, in the claim's key order. Live workers (``pgjobs_workers``, a heartbeat within the
silence limit) add whether one serves the queue and has the job's handler. It runs over one job
(:func:`classify_job`) or over the first due jobs of each queue in claim order
(:func:`blocked_counts`), so the page and ``explain`` never disagree.

Nothing here writes or locks a row: plain reads of committed rows. A claim that commits a moment
later can change the answer: it describes now, it promises nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django_pgjobs.queries.base import Cursor

# The claim's own test of a partitioned queue, so the two cannot drift apart.
from django_pgjobs.queries.explain_turns import TURNS_CTES, upto
from django_pgjobs.queries.flow import _PARTITIONED

# What holds a due job back, as the classification names it (Blocker's values), in its order.
PAUSED = "paused"
QUEUE_CONCURRENCY = "queue_concurrency"
WORKER_CONCURRENCY = "worker_concurrency"
PARTITION_CONCURRENCY = "partition_concurrency"
KEY_ORDER = "key_order"
KEY_HEAD = "key_head"
FAIR_TURN = "fair_turn"
QUEUE_ORDER = "queue_order"
RATE_LIMITED = "rate_limited"
NO_WORKER = "no_worker"
NO_HANDLER = "no_handler"
CLAIMABLE = "claimable"


@dataclass(frozen=True)
class DueJobFacts:
    """What holds one due job back, with the counts behind the answer."""

    blocker: str
    paused: bool
    concurrency: int | None
    worker_concurrency: int | None
    rate_limit: int | None
    rate_period: timedelta | None
    partition_concurrency: int | None
    partition_rate_limit: int | None
    fair: bool
    running: int  # the queue's running jobs (claimed ahead included)
    starts: int  # the queue's starts in its rate window
    key_running: int  # ... of the job's key (or of the jobs without a key)
    key_starts: int
    key_room: int | None
    ahead_in_key: int  # due jobs of its key before it in key order (up to the cap)
    serving: int  # live workers serving its queue
    capable: int  # ... of them with its handler, or whose handlers are not recorded
    unknown: int  # ... of those, the ones whose handlers are not recorded
    with_room: int  # ... capable ones under the queue's worker_concurrency
    threads: int  # the capable workers' threads
    held: int  # the jobs they hold (claimed ahead included)
    # The free threads of the capable workers under the queue's worker_concurrency: each
    # worker's own (its threads less the jobs it holds, none below 0), not the sum's.
    free: int
    # A partitioned queue (per-key limits, or fair): its claims read each key's jobs in key
    # order and stop at the first whose handler the claiming worker lacks.
    partitioned: bool
    # Live workers serving its queue with its handler and that of every due job before it in
    # its key (or whose handlers are not recorded): those whose claims can reach it.
    reach_in_key: int
    # A queue limited as a whole (concurrency, rate_limit) and not partitioned: how many starts
    # it has room for now, and its due jobs before this one in claim order (up to the cap).
    queue_room: int | None
    ahead_in_queue: int
    # A queue that takes turns (fair): the due jobs its claim's turns put before this one (one
    # of each key a round, the jobs without a key first, the keys from the queue's cursor),
    # leaving out those its key's limits keep from starting now (up to the cap).
    ahead_in_turns: int


def _serves(worker: str, queue: str) -> str:
    """SQL: worker row ``worker`` serves ``queue`` (an SQL expression). An empty list is every
    queue, and so is none at all (a row written by SQL)."""
    return (
        f"(coalesce({worker}.queues, '[]') IN ('[]'::jsonb, 'null'::jsonb) "
        f"OR {worker}.queues ? {queue})"
    )


# The live workers: a heartbeat within %(silent)s seconds, the limit `pgjobs status`, the
# dashboard and the admin use (past it, a worker's jobs are the rescue's).
_LIVE = """live AS MATERIALIZED (
    SELECT w.id, w.queues, w.handlers, w.concurrency,
           (w.handlers IS NULL OR w.handlers = 'null'::jsonb) AS unknown
    FROM pgjobs_workers AS w
    WHERE w.last_heartbeat_at >= now() - make_interval(secs => %(silent)s)
)"""


# The classification over ``subject`` (id, queue, partition_key, job_name, ahead_in_key: how many
# due jobs of its key come before it in the key order of queries.flow, the claim's).
_CLASSIFIED = f"""queues AS (SELECT DISTINCT queue FROM subject),
rules AS MATERIALIZED (
    SELECT r.* FROM pgjobs_queues AS r WHERE r.name IN (SELECT queue FROM queues)
),
per_queue AS MATERIALIZED (
    -- The claim's own counts (pgjobs_queue_counts): the queue's running jobs (claimed ahead
    -- included) and its starts in the rate window ending now, each read only where the queue
    -- has that limit, and up to the limit or %(cap)s rows, whichever is more.
    SELECT r.name AS queue, c.running, c.recent_starts AS starts
    FROM rules AS r, LATERAL pgjobs_queue_counts(
        r.name, NULL, '{{}}'::uuid[], '{{}}'::uuid[], now(),
        {upto("r.concurrency")}, NULL, {upto("r.rate_limit")}) AS c
),
load AS MATERIALIZED (
    -- The same per partition key (pgjobs_key_counts; NULL: the jobs without a key), for the
    -- keys of the jobs asked about only, as the claim counts only the keys its walk reaches.
    SELECT k.queue, k.partition_key, c.running, c.recent_starts
    FROM (SELECT DISTINCT queue, partition_key FROM subject) AS k
    JOIN rules AS r ON r.name = k.queue, LATERAL pgjobs_key_counts(
        k.queue, k.partition_key, '{{}}'::uuid[], '{{}}'::uuid[], now(),
        {upto("r.partition_concurrency")}, {upto("r.partition_rate_limit")}) AS c
),
{_LIVE},
here AS MATERIALIZED (
    -- The jobs each live worker holds, per queue (what worker_concurrency counts).
    SELECT j.locked_by AS worker, j.queue, count(*) AS running
    FROM pgjobs_job_queue AS j
    WHERE j.status = 'running' AND j.locked_by IN (SELECT id FROM live)
    GROUP BY 1, 2
),
kinds AS (SELECT DISTINCT queue, job_name FROM subject),
reach AS MATERIALIZED (
    -- Per queue and job name, the live workers that serve the queue; those that have the
    -- handler or may have it (handlers not recorded); those with room under the queue's
    -- worker_concurrency; and their threads and the jobs they hold.
    SELECT k.queue, k.job_name, count(w.id) AS serving,
           count(w.id) FILTER (WHERE w.can) AS capable,
           count(w.id) FILTER (WHERE w.can AND w.unknown) AS unknown,
           count(w.id) FILTER (WHERE w.can AND coalesce(h.running, 0) < r.worker_concurrency)
               AS with_room,
           coalesce(sum(w.concurrency) FILTER (WHERE w.can), 0)::bigint AS threads,
           coalesce(sum(t.held) FILTER (WHERE w.can), 0)::bigint AS held,
           coalesce(sum(greatest(w.concurrency - coalesce(t.held, 0), 0)) FILTER (
               WHERE w.can AND coalesce(coalesce(h.running, 0) < r.worker_concurrency, true)),
               0)::bigint AS free
    FROM kinds AS k
    LEFT JOIN rules AS r ON r.name = k.queue
    LEFT JOIN LATERAL (
        SELECT l.*, (l.unknown OR l.handlers ? k.job_name) AS can
        FROM live AS l WHERE {_serves("l", "k.queue")}
    ) AS w ON true
    LEFT JOIN here AS h ON h.worker = w.id AND h.queue = k.queue
    LEFT JOIN (SELECT worker, sum(running) AS held FROM here GROUP BY worker) AS t
        ON t.worker = w.id
    GROUP BY k.queue, k.job_name
),
facts AS (
    SELECT s.id, s.queue, s.partition_key, s.ahead_in_key,
           coalesce(r.paused, false) AS paused, r.concurrency, r.worker_concurrency,
           r.rate_limit, r.rate_period, r.partition_concurrency, r.partition_rate_limit,
           coalesce(r.fair, false) AS fair,
           coalesce(q.running, 0) AS running, coalesce(q.starts, 0) AS starts,
           coalesce(l.running, 0) AS key_running, coalesce(l.recent_starts, 0) AS key_starts,
           -- How many of the key's due jobs may start now, as the claim's ``shares`` counts
           -- (NULL: the queue limits no key).
           least(r.partition_concurrency - coalesce(l.running, 0),
                 r.partition_rate_limit - coalesce(l.recent_starts, 0)) AS key_room,
           x.serving, x.capable, x.unknown, x.with_room, x.threads, x.held, x.free,
           coalesce(r.partition_concurrency IS NOT NULL OR r.partition_rate_limit IS NOT NULL
                    OR r.fair, false) AS partitioned,
           (SELECT count(*) FROM live AS l
            WHERE {_serves("l", "s.queue")} AND (l.unknown OR (
                l.handlers ? s.job_name AND l.handlers ?& s.earlier_names))) AS reach_in_key,
           least(r.concurrency - coalesce(q.running, 0), r.rate_limit - coalesce(q.starts, 0))
               AS queue_room,
           s.ahead_in_queue, s.ahead_in_turns AS turns_given, r.key_cursor
    FROM subject AS s
    LEFT JOIN rules AS r ON r.name = s.queue
    LEFT JOIN per_queue AS q ON q.queue = s.queue
    -- Equalities only, as in the claim's ``shares`` (jobs without a key: one more partition).
    LEFT JOIN load AS l ON l.queue = s.queue
        AND (l.partition_key IS NULL) = (s.partition_key IS NULL)
        AND coalesce(l.partition_key, '') = coalesce(s.partition_key, '')
    JOIN reach AS x ON x.queue = s.queue AND x.job_name = s.job_name
),
turns AS (
    -- Where the subject did not count its place in its queue's turns (the dashboard's first
    -- jobs of each queue), the jobs among them before it in the claim's turn order (its turn
    -- in its key, then the key's place in the walk from the cursor, the jobs without a key
    -- first) that their key's limits let start now.
    SELECT f.*, coalesce(f.turns_given, count(*) FILTER (
               WHERE f.key_room IS NULL OR f.ahead_in_key < f.key_room) OVER (
               PARTITION BY f.queue
               ORDER BY f.ahead_in_key, f.partition_key IS NOT NULL,
                        NOT coalesce(f.partition_key > f.key_cursor, false), f.partition_key
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS ahead_in_turns
    FROM facts AS f
),
classified AS (
    -- The first that applies; a comparison with a limit that is not set (NULL) never does.
    SELECT f.*, CASE
        WHEN f.paused THEN '{PAUSED}'
        WHEN f.running >= f.concurrency THEN '{QUEUE_CONCURRENCY}'
        WHEN f.capable > 0 AND f.with_room = 0 AND f.worker_concurrency IS NOT NULL
            THEN '{WORKER_CONCURRENCY}'
        WHEN f.key_running >= f.partition_concurrency THEN '{PARTITION_CONCURRENCY}'
        -- Only when a live worker can reach it: one that stops at an earlier job of its key
        -- it cannot run never starts them in that order (KEY_HEAD below, as the claim does).
        WHEN f.key_room > 0 AND f.ahead_in_key >= f.key_room AND f.reach_in_key > 0
            THEN '{KEY_ORDER}'
        WHEN f.starts >= f.rate_limit OR f.key_starts >= f.partition_rate_limit
            THEN '{RATE_LIMITED}'
        WHEN f.serving = 0 THEN '{NO_WORKER}'
        WHEN f.capable = 0 THEN '{NO_HANDLER}'
        WHEN f.partitioned AND f.reach_in_key = 0 THEN '{KEY_HEAD}'
        -- A queue that takes turns, limited as a whole: its claim takes its room's worth of
        -- jobs in turn order.
        WHEN f.fair AND f.queue_room > 0 AND f.ahead_in_turns >= f.queue_room
            THEN '{FAIR_TURN}'
        -- A limited queue's claim takes its room's worth of jobs in claim order.
        WHEN NOT f.partitioned AND f.queue_room > 0 AND f.ahead_in_queue >= f.queue_room
            THEN '{QUEUE_ORDER}'
        ELSE '{CLAIMABLE}' END AS blocker
    FROM turns AS f
)"""


def _before_in_key(*, keyed: bool) -> str:
    """SQL: row ``k`` is a due job of the queue and key of row ``j`` (with ``keyed``, ``j`` has a
    key; else the jobs without one) that the claim's key order (priority, due time, enqueue
    order: queries.flow's _KEY_ORDER) puts before ``j``. An equality or IS NULL on the key, not
    IS NOT DISTINCT FROM, so pgjobs_job_partition_claim serves it."""
    key = "k.partition_key = j.partition_key" if keyed else "k.partition_key IS NULL"
    return f"""k.status = 'pending' AND k.scheduled_for <= now() AND k.queue = j.queue
    AND {key} AND (k.priority > j.priority OR (k.priority = j.priority AND (
         k.scheduled_for < j.scheduled_for OR (k.scheduled_for = j.scheduled_for AND (
             (k.seq IS NULL AND j.seq IS NOT NULL) OR k.seq < j.seq)))))"""


def _count_before_in_key(keyed: bool) -> str:
    return f"""(SELECT count(*) FROM (
                SELECT 1 FROM pgjobs_job_queue AS k WHERE {_before_in_key(keyed=keyed)}
                LIMIT %(cap)s) AS a)"""


def _names_before_in_key(keyed: bool) -> str:
    return f"""ARRAY(SELECT DISTINCT a.job_name FROM (
                SELECT k.job_name FROM pgjobs_job_queue AS k WHERE {_before_in_key(keyed=keyed)}
                LIMIT %(cap)s) AS a)"""


_FACTS = ", ".join(DueJobFacts.__dataclass_fields__)

_ONE = f"""WITH RECURSIVE one AS (
    SELECT j.id, j.queue, j.partition_key, j.job_name, j.priority, j.scheduled_for, j.seq,
           -- Counted only where the queue limits its keys or takes turns (else nothing reads
           -- it).
           CASE WHEN NOT EXISTS (
                    SELECT 1 FROM pgjobs_queues AS r WHERE r.name = j.queue
                      AND (r.partition_concurrency IS NOT NULL
                           OR r.partition_rate_limit IS NOT NULL OR r.fair)) THEN 0
                WHEN j.partition_key IS NULL THEN {_count_before_in_key(False)}
                ELSE {_count_before_in_key(True)} END AS ahead_in_key,
           -- The job names before it in its key, where the queue is partitioned (the claim
           -- walks a key's jobs in order and stops at one it cannot run).
           CASE WHEN NOT EXISTS (
                    SELECT 1 FROM pgjobs_queues AS r WHERE r.name = j.queue
                      AND ({_PARTITIONED})) THEN '{{}}'::text[]
                WHEN j.partition_key IS NULL THEN {_names_before_in_key(False)}
                ELSE {_names_before_in_key(True)} END AS earlier_names,
           -- Its place in its queue's claim order, where the queue limits its starts as a whole.
           CASE WHEN NOT EXISTS (
                    SELECT 1 FROM pgjobs_queues AS r WHERE r.name = j.queue
                      AND (r.concurrency IS NOT NULL OR r.rate_limit IS NOT NULL)) THEN 0
                ELSE (SELECT count(*) FROM (
                    SELECT 1 FROM pgjobs_job_queue AS k
                    WHERE k.status = 'pending' AND k.scheduled_for <= now() AND k.queue = j.queue
                      -- (the redundant bound and the order keep it on pgjobs_job_queue_claim)
                      AND k.priority >= j.priority
                      AND (k.priority > j.priority OR (k.priority = j.priority AND (
                           k.scheduled_for < j.scheduled_for
                           OR (k.scheduled_for = j.scheduled_for AND k.id < j.id))))
                    ORDER BY k.priority DESC, k.scheduled_for, k.id
                    LIMIT %(cap)s) AS a) END AS ahead_in_queue
    FROM pgjobs_job_queue AS j
    WHERE j.id = %(id)s AND j.status = 'pending' AND j.scheduled_for <= now()
),
{TURNS_CTES}
subject AS (
    SELECT o.*, CASE WHEN EXISTS (SELECT 1 FROM fair)
                     THEN least(o.ahead_in_key + (SELECT coalesce(sum(offered), 0) FROM turned),
                                %(cap)s)
                END AS ahead_in_turns
    FROM one AS o
),
{_CLASSIFIED}
SELECT {_FACTS} FROM classified"""

_PER_QUEUE = f"""WITH ranked AS (
    -- The first %(cap)s due jobs of each queue, in claim order (pgjobs_job_queue_claim); rank()
    -- counts the jobs strictly before each in its key's order, as _before_in_key does.
    SELECT d.id, d.queue, d.partition_key, d.job_name,
           rank() OVER (PARTITION BY d.queue, d.partition_key
                        ORDER BY d.priority DESC, d.scheduled_for, d.seq NULLS FIRST) - 1
               AS ahead_in_key,
           row_number() OVER (PARTITION BY d.queue
                              ORDER BY d.priority DESC, d.scheduled_for, d.id) - 1
               AS ahead_in_queue
    FROM unnest(%(queues)s::text[]) AS q(queue), LATERAL (
        SELECT j.id, j.queue, j.partition_key, j.job_name, j.priority, j.scheduled_for, j.seq
        FROM pgjobs_job_queue AS j
        WHERE j.status = 'pending' AND j.scheduled_for <= now() AND j.queue = q.queue
        ORDER BY j.priority DESC, j.scheduled_for, j.id
        LIMIT %(cap)s
    ) AS d
),
firsts AS (
    -- Where each job name first comes in each key's order: the names before a job are those
    -- that come first before it (a hash join, not a list per job).
    SELECT queue, partition_key, job_name, min(ahead_in_key) AS first
    FROM ranked GROUP BY 1, 2, 3
),
subject AS (
    SELECT r.id, r.queue, r.partition_key, r.job_name, r.ahead_in_key, r.ahead_in_queue,
           NULL::bigint AS ahead_in_turns,
           coalesce(array_agg(f.job_name) FILTER (WHERE f.job_name IS NOT NULL), '{{}}')
               AS earlier_names
    FROM ranked AS r
    LEFT JOIN firsts AS f ON f.queue = r.queue AND f.first < r.ahead_in_key
        AND (f.partition_key IS NULL) = (r.partition_key IS NULL)
        AND coalesce(f.partition_key, '') = coalesce(r.partition_key, '')
    GROUP BY r.id, r.queue, r.partition_key, r.job_name, r.ahead_in_key, r.ahead_in_queue
),
{_CLASSIFIED}
SELECT queue, blocker, count(*) FROM classified GROUP BY queue, blocker"""


def classify_job(
    cur: Cursor, *, job_id: uuid.UUID, silent_seconds: float, cap: int
) -> DueJobFacts | None:
    """What holds the due job ``job_id`` back (None: it is not pending and due).

    Reads its row by primary key, its key's earlier due jobs (pgjobs_job_partition_claim, at
    most ``cap``), the queue's row and running jobs (pgjobs_job_running) and rate ledger
    (pgjobs_queue_starts_window), and the worker rows; in a queue that takes turns, the first
    due jobs of each key (as many as its turns before the job: pgjobs_job_partition_claim, one
    probe per key, at most ``cap`` keys) and their keys' counts. Locks nothing."""
    cur.execute(_ONE, {"id": job_id, "silent": silent_seconds, "cap": cap})
    row = cur.fetchone()
    return None if row is None else DueJobFacts(*row)


def blocked_counts(
    cur: Cursor, *, queues: Sequence[str], silent_seconds: float, cap: int
) -> dict[str, dict[str, int]]:
    """Queue -> blocker -> how many of the queue's first ``cap`` due jobs (in claim order) it
    holds back (``claimable``: none does). Each queue's jobs are read through
    pgjobs_job_queue_claim up to ``cap``, so the cost follows ``cap`` times the queues asked
    for, not the backlog. Locks nothing."""
    counts: dict[str, dict[str, int]] = {}
    # Run for no queue too: the page costs the same statements whatever the queue holds.
    cur.execute(_PER_QUEUE, {"queues": list(queues), "silent": silent_seconds, "cap": cap})
    for queue, blocker, count in cur.fetchall():
        counts.setdefault(queue, {})[blocker] = int(count)
    return counts
