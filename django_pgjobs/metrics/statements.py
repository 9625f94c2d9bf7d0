"""The statements :mod:`.readings` runs in its one read-only snapshot, each bounded whatever the
tables hold (the bounds are parameters: ``%(series)s``, ``%(pairs)s``, ``%(cap)s``...). Plain reads
of committed rows; none locks anything.
"""

from django_pgjobs.queries.base import pending_queues

# Jobs by queue, bounded by queues first, so that no queue vanishes: a skip scan of
# pgjobs_job_queue_claim (queue, priority DESC, scheduled_for, id) lists the queues of pending
# jobs, one index descent each, the first %(series)s by name (one more says there are others).
# Each listed queue gets an equal share of %(pairs)s (at least %(priorities)s) of its
# priorities, highest first, another descent each; within one (queue, priority) the due and the
# scheduled jobs are each one range of that index, whose first entry is its oldest, counted up
# to what is left of the queue's %(cap)s due and %(cap)s scheduled entries (its totals stop at
# the cap: each priority counted up to it read 800,000 entries for 100 priorities). Two budgets,
# so that scheduled jobs at high priorities never hide a due one at a low priority. A queue's
# priorities past its share are one range too, read up to what the budgets leave; the pending
# jobs of the queues past the listed ones are one range of %(cap)s entries, returned as the row
# whose queue is NULL. "sampled": such a read stopped short of the range's end, so its split
# into due and scheduled, and its oldest, are those of the entries read only.
PENDING = f"""
WITH RECURSIVE {pending_queues()},
listed AS (SELECT queue FROM queues WHERE queue IS NOT NULL LIMIT %(series)s + 1),
counted_queues AS (SELECT queue FROM listed ORDER BY queue LIMIT %(series)s),
share AS (
    SELECT greatest(%(priorities)s, %(pairs)s / greatest(count(*), 1)) AS priorities
    FROM counted_queues
),
-- Each step: the next priority (one descent), then its due and its scheduled jobs counted up to
-- what the queue's budget leaves (COUNT_CAP each in all: the totals stop there anyway, so a
-- queue's later priorities read nothing once its count is full; LIMIT 0 reads no entry), and
-- its oldest (one entry); due_total and scheduled_total are the queue's so far. OFFSET 0 keeps
-- each LATERAL subquery whole: flattened, its scalar subqueries ran once per use of a column.
pairs(queue, priority, n, due_total, scheduled_total, due, scheduled, oldest) AS (
    SELECT c.queue, f.priority, 1, k.due, k.scheduled, k.due, k.scheduled, k.oldest
    FROM counted_queues AS c
    CROSS JOIN LATERAL (
        SELECT (SELECT j.priority FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.queue = c.queue
                ORDER BY j.priority DESC LIMIT 1) AS priority
        OFFSET 0
    ) AS f
    CROSS JOIN LATERAL (SELECT c.queue, %(cap)s AS due, %(cap)s AS scheduled) AS b
    CROSS JOIN LATERAL (/*count*/) AS k
    UNION ALL
    SELECT p.queue, f.priority, p.n + 1, p.due_total + k.due, p.scheduled_total + k.scheduled,
           k.due, k.scheduled, k.oldest
    FROM pairs AS p
    CROSS JOIN share
    CROSS JOIN LATERAL (
        SELECT (SELECT j.priority FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.queue = p.queue AND j.priority < p.priority
                ORDER BY j.priority DESC LIMIT 1) AS priority
        OFFSET 0
    ) AS f
    CROSS JOIN LATERAL (
        SELECT p.queue, %(cap)s - p.due_total AS due, %(cap)s - p.scheduled_total AS scheduled
    ) AS b
    CROSS JOIN LATERAL (/*count*/) AS k
    WHERE p.priority IS NOT NULL AND p.n < share.priorities
),
counted AS (
    SELECT p.queue, p.due, p.scheduled, p.oldest, false AS sampled
    FROM pairs AS p WHERE p.priority IS NOT NULL
    UNION ALL
    -- The priorities past the share: one range, read up to what the budget leaves (one entry
    -- more says whether it holds more).
    SELECT p.queue, t.due, t.scheduled, t.oldest, t.seen > t.budget
    FROM pairs AS p JOIN share ON p.n = share.priorities,
    LATERAL (
        SELECT count(*) FILTER (WHERE s.scheduled_for <= now()) AS due,
               count(*) FILTER (WHERE s.scheduled_for > now()) AS scheduled,
               min(s.scheduled_for) FILTER (WHERE s.scheduled_for <= now()) AS oldest,
               count(*) AS seen, b.budget
        FROM (SELECT %(cap)s - greatest(p.due_total, p.scheduled_total) AS budget) AS b,
        LATERAL (SELECT j.scheduled_for FROM pgjobs_job_queue AS j
                 WHERE j.status = 'pending' AND j.queue = p.queue AND j.priority < p.priority
                 ORDER BY j.priority DESC, j.scheduled_for LIMIT b.budget + 1) AS s
        GROUP BY b.budget
    ) AS t
    WHERE p.priority IS NOT NULL
    UNION ALL
    SELECT NULL, t.due, t.scheduled, t.oldest, true
    FROM (
        SELECT count(*) FILTER (WHERE s.scheduled_for <= now()) AS due,
               count(*) FILTER (WHERE s.scheduled_for > now()) AS scheduled,
               min(s.scheduled_for) FILTER (WHERE s.scheduled_for <= now()) AS oldest
        FROM (SELECT j.scheduled_for FROM pgjobs_job_queue AS j
              WHERE j.status = 'pending'
                AND j.queue > (SELECT max(queue) FROM counted_queues)
              ORDER BY j.queue, j.priority DESC, j.scheduled_for LIMIT %(cap)s) AS s
    ) AS t
    WHERE (SELECT count(*) FROM listed) > %(series)s
)
SELECT queue, least(sum(due), %(cap)s)::int, least(sum(scheduled), %(cap)s)::int,
       coalesce(extract(epoch FROM now() - min(oldest) FILTER (WHERE oldest <= now())), 0)::float8,
       bool_or(sampled),
       CASE WHEN queue IS NULL THEN (SELECT max(queue) FROM counted_queues) END
FROM counted GROUP BY queue
""".replace(
    # One priority's figures, within the budget b leaves the queue b.queue: its due and its
    # scheduled jobs are each one range of pgjobs_job_queue_claim, its oldest that range's
    # first entry.
    "/*count*/",
    """
    SELECT (SELECT count(*) FROM (
                SELECT 1 FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.queue = b.queue AND j.priority = f.priority
                  AND j.scheduled_for <= now()
                LIMIT b.due) AS c) AS due,
           (SELECT count(*) FROM (
                SELECT 1 FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.queue = b.queue AND j.priority = f.priority
                  AND j.scheduled_for > now()
                LIMIT b.scheduled) AS c) AS scheduled,
           (SELECT j.scheduled_for FROM pgjobs_job_queue AS j
            WHERE j.status = 'pending' AND j.queue = b.queue AND j.priority = f.priority
            ORDER BY j.scheduled_for LIMIT 1) AS oldest
    OFFSET 0
    """,
)

# Running jobs per queue, each counted up to %(cap)s: the queues of running jobs by a skip scan
# of pgjobs_job_running (queue, partition_key), the first %(series)s by name, then each queue's
# range of it. Running jobs are as many as the workers' slots and the jobs they claimed ahead
# (plus those of dead workers awaiting rescue). A cap over all queues at once counted the first
# queues' jobs and cut the others short.
RUNNING = """
WITH RECURSIVE running_queues(queue) AS (
    (SELECT queue FROM pgjobs_job_queue WHERE status = 'running' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM pgjobs_job_queue AS j
            WHERE j.status = 'running' AND j.queue > r.queue ORDER BY j.queue LIMIT 1)
    FROM running_queues AS r WHERE r.queue IS NOT NULL
)
SELECT q.queue, (SELECT count(*) FROM (
           SELECT 1 FROM pgjobs_job_queue AS j
           WHERE j.status = 'running' AND j.queue = q.queue LIMIT %(cap)s) AS c)::int
FROM (SELECT queue FROM running_queues WHERE queue IS NOT NULL LIMIT %(series)s) AS q
"""

# The newest dead letters (pgjobs_failed_at), by queue: exact while there are fewer than the cap.
DEAD_LETTERS = """
SELECT queue, count(*)::int FROM (
    SELECT queue FROM pgjobs_failed_jobs ORDER BY failed_at DESC LIMIT %(cap)s
) AS d GROUP BY queue
"""

# The queues of the jobs that finished last (completed or cancelled): the newest %(cap)s of them,
# by pgjobs_job_finished (completed_at) read backwards, one heap fetch each for the queue. So a
# queue that just drained keeps its series until %(cap)s jobs of other queues finished after its
# last one. Not every queue that ever finished a job: nothing indexes finished jobs by queue, and
# an index taking an entry at every completion was not worth a gauge of zeros.
FINISHED_QUEUES = """
SELECT DISTINCT queue FROM (
    SELECT queue FROM pgjobs_job_queue WHERE status IN ('completed', 'cancelled')
    ORDER BY completed_at DESC LIMIT %(cap)s
) AS f
"""

# Live workers (a heartbeat within the silence window), their handler threads, and the running
# jobs they hold (a job held by a silent worker waits for the rescue, in no live slot).
WORKERS = """
WITH live AS (
    SELECT id, concurrency FROM pgjobs_workers
    WHERE last_heartbeat_at >= now() - make_interval(secs => %(silent)s)
)
SELECT now(), (SELECT count(*) FROM live)::int,
       (SELECT coalesce(sum(greatest(concurrency, 0)), 0) FROM live)::bigint,
       (SELECT count(*) FROM (
            SELECT 1 FROM pgjobs_job_queue AS j JOIN live ON live.id = j.locked_by
            WHERE j.status = 'running' LIMIT %(cap)s) AS b)::int
"""

# By name in code-point order (COLLATE "C", a sort of a small table), Python's, which picks the
# queues exported.
QUEUE_ROWS = """
SELECT name, paused, fair, concurrency, worker_concurrency, rate_limit,
       extract(epoch FROM rate_period)::float8, partition_concurrency, partition_rate_limit,
       extract(epoch FROM timeout)::float8
FROM pgjobs_queues ORDER BY name COLLATE "C" LIMIT %(series)s
"""

# Of ``names``, those after %(past)s, the last queue PENDING counted before it summed the
# others' pending jobs, in the skip scan's order: the collation of pgjobs_job_queue.queue (in a
# UNION a column's implicit collation wins over the default). Their pending jobs are in that
# sum, so they join it, never exported with due=0 as Python's order (en_US: 'a' < 'Z') kept.
SUMMED = """
SELECT name FROM (
    SELECT queue AS name FROM pgjobs_job_queue WHERE false
    UNION ALL
    SELECT unnest(%(names)s::text[])
) AS n WHERE name > %(past)s
"""

SCHEDULES = """
SELECT name, enabled AND NOT orphaned, last_run_at, next_run_at, cron, timezone, start_at, end_at,
       updated_at
FROM pgjobs_schedules ORDER BY name COLLATE "C" LIMIT %(series)s
"""
