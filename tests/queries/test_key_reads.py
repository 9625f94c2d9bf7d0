"""A partitioned queue's claim reads about as many index entries as it takes jobs, however many
due jobs each key has: a key's jobs are read up to its room, not to its end. Counted in index
entries the transaction read (its own statistics), never in time."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from django_pgjobs.queries.claim import claim_statement
from django_pgjobs.queues import set_queue_limits

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 500
KEYS = 1000
PER_KEY = 20

READ = (
    "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index "
    "WHERE indrelid = 'pgjobs_job_queue'::regclass"
)


def _claim() -> tuple[int, int]:
    """(jobs taken, index entries read) by one flow-controlled claim of LIMIT, committed."""
    sql, params = claim_statement(
        worker_id="w", limit=LIMIT, lease_seconds=60, queues=None, job_names=["test.record"],
        flow=True, start_now=8,
    )  # fmt: skip
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(READ)
        before = cur.fetchone()[0]
        cur.execute(sql, params)
        taken = sum(1 for row in cur.fetchall() if row[0] == "claimed")
        cur.execute(READ)
        return taken, int(cur.fetchone()[0] - before)


@pytest.mark.parametrize(
    "limits",
    [{"partition_concurrency": 2}, {"partition_concurrency": 5}, {"fair": True},
     {"fair": True, "partition_concurrency": 3}],
    ids=["2 a key", "5 a key", "fair", "fair, 3 a key"],
)  # fmt: skip
def test_a_claim_reads_each_keys_jobs_up_to_its_room(limits: dict[str, Any]) -> None:
    set_queue_limits("q", **limits)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key) "
            "SELECT 'test.record', 'q', 'k' || lpad((n %% %s)::text, 4, '0') "
            "FROM generate_series(1, %s) AS n",
            [KEYS, KEYS * PER_KEY],
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    for _ in range(3):  # the second and third with the first claims' jobs running
        taken, read = _claim()
        assert taken == LIMIT
        # The walk's probe per key (it walks as many keys as the claim's room), each walked
        # key's jobs up to its room (at most 5 here), the locks by key, and the counts of the
        # running jobs of the claims before: 2,000 to 5,500 on PostgreSQL 15, up to 6,000 on
        # 18. Read to each key's end, a key's 20 jobs were read for every 2 or 5 it could
        # start: 11,500 to 13,000.
        assert read <= 16 * LIMIT, read
