"""A job's place in a fair queue's turns, for ``explain_job`` (:mod:`.explain`): the CTEs that
count the due jobs the claim's turns put before it, walking the queue's keys as the claim walks
them (:mod:`.flow`). Read-only; nothing here locks a row."""

from __future__ import annotations

from django_pgjobs.queries.flow_keys import KEY_ORDER as _KEY_ORDER


def upto(limit: str) -> str:
    """SQL: how far the count functions read for ``limit``: nothing where it is not set (NULL;
    greatest() alone would ignore it), else the limit or %(cap)s rows, whichever is more, so a
    count past a lowered limit still reads true up to the cap."""
    return f"CASE WHEN {limit} IS NOT NULL THEN greatest({limit}, %(cap)s::integer) END"


def _due(queue: str) -> str:
    """SQL: row ``j`` is a due job of ``queue`` (an SQL expression)."""
    return f"j.status = 'pending' AND j.scheduled_for <= now() AND j.queue = {queue}"


# After ``one`` (the job: queue, partition_key, ahead_in_key): ``fair``, the row of its queue if
# that takes turns; ``walk``, the queue's keys with due jobs; ``turned``, per other partition,
# how many of its jobs come first.
TURNS_CTES = f"""fair AS MATERIALIZED (
    SELECT r.* FROM pgjobs_queues AS r WHERE r.fair AND r.name = (SELECT queue FROM one)
),
walk(partition_key, depth) AS (
    -- A fair queue's keys with due jobs, one probe of pgjobs_job_partition_claim each (as the
    -- claim walks them), up to %(cap)s keys.
    SELECT h.partition_key, 1 FROM fair AS r, LATERAL (
        SELECT j.partition_key FROM pgjobs_job_queue AS j
        WHERE {_due("r.name")} AND j.partition_key IS NOT NULL
        ORDER BY {_KEY_ORDER} LIMIT 1) AS h
    UNION ALL
    SELECT h.partition_key, w.depth + 1 FROM walk AS w, fair AS r, LATERAL (
        SELECT j.partition_key FROM pgjobs_job_queue AS j
        WHERE {_due("r.name")} AND j.partition_key > w.partition_key
        ORDER BY {_KEY_ORDER} LIMIT 1) AS h
    WHERE w.depth < %(cap)s
),
turned AS (
    -- For each other partition (the jobs without a key too), how many of its first jobs the
    -- claim's turns put before the subject: as many turns as the subject's earlier jobs of its
    -- own key, and one more where the partition comes first in the walk (from the key after
    -- the cursor, round to the first after the last; the jobs without a key before all
    -- keys), and only as many as the key's limits let start now.
    SELECT least(count(*), greatest(coalesce(least(
               r.partition_concurrency - c.running, r.partition_rate_limit - c.recent_starts),
               count(*)), 0)) AS offered
    FROM one AS o, fair AS r,
         (SELECT partition_key FROM walk UNION ALL SELECT NULL) AS p,
         LATERAL pgjobs_key_counts(
             r.name, p.partition_key, '{{}}'::uuid[], '{{}}'::uuid[], now(),
             {upto("r.partition_concurrency")}, {upto("r.partition_rate_limit")}) AS c,
         LATERAL (SELECT o.ahead_in_key + CASE
             WHEN o.partition_key IS NULL THEN 0
             WHEN p.partition_key IS NULL THEN 1
             WHEN (NOT coalesce(p.partition_key > r.key_cursor, false), p.partition_key)
                  < (NOT coalesce(o.partition_key > r.key_cursor, false), o.partition_key)
             THEN 1 ELSE 0 END AS turns) AS t,
         -- (an equality or IS NULL, each served by pgjobs_job_partition_claim)
         LATERAL ((SELECT 1 FROM pgjobs_job_queue AS j
                   WHERE {_due("r.name")} AND p.partition_key IS NOT NULL
                     AND j.partition_key = p.partition_key
                   ORDER BY {_KEY_ORDER} LIMIT t.turns)
                  UNION ALL
                  (SELECT 1 FROM pgjobs_job_queue AS j
                   WHERE {_due("r.name")} AND p.partition_key IS NULL
                     AND j.partition_key IS NULL
                   ORDER BY {_KEY_ORDER} LIMIT t.turns)) AS k
    WHERE p.partition_key IS DISTINCT FROM o.partition_key
    GROUP BY p.partition_key, r.partition_concurrency, r.partition_rate_limit, c.running,
             c.recent_starts
),"""
