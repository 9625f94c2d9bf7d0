"""The claim's plan does not depend on the table's statistics (migration 0023).

Statistics taken while the table held only finished rows (before a burst) make PostgreSQL expect
one pending row. It then preferred the smallest index on pending jobs, on scheduled_for alone,
read every due job in it and sorted them: each claim of 10 read all 2,000 here (1,000,000 on a
backlog that size) until autovacuum analyzed the table again. Counted in index entries of
pgjobs_job_queue, as EXPLAIN ANALYZE reports them, never in time."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection, transaction
from psycopg import sql as psycopg_sql

from django_pgjobs.queries.claim import claim_statement
from tests.helpers import plan_nodes, second_connection

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED, DUE, LIMIT = 20_000, 2_000, 10


@pytest.fixture
def stale_statistics() -> None:
    """Analyzed holding only finished jobs, then a burst of due ones the statistics miss."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, status, attempt, completed_at) "
            "SELECT 'test.record', 'default', 'completed', 1, now() FROM generate_series(1, %s)",
            [FINISHED],
        )
        cur.execute("ANALYZE pgjobs_job_queue")
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, priority, scheduled_for) "
            "SELECT 'test.record', 'default', (g %% 3)::smallint, "
            "now() - g * interval '1 ms' FROM generate_series(1, %s) AS g",
            [DUE],
        )


def entries_read(
    sql: str, params: dict[str, Any], *, filtered: bool = False, settings: str | None = None
) -> int:
    """Rows the plan's scans of pgjobs_job_queue returned (with ``filtered``, read), summed over
    loops; the claim runs inside EXPLAIN ANALYZE and is rolled back, after ``settings`` (a
    statement run in the same transaction first) if given."""
    with transaction.atomic(), connection.cursor() as cur:
        if settings is not None:
            cur.execute(settings)
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        (plan,) = cur.fetchone()
        transaction.set_rollback(True)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _entries(plan[0]["Plan"], filtered=filtered)


@pytest.mark.usefixtures("stale_statistics")
@pytest.mark.parametrize("queues", [None, ["default"], ["default", "other"]])
def test_a_claim_reads_what_it_takes_whatever_the_statistics_expect(
    queues: list[str] | None,
) -> None:
    """PostgreSQL 18 once skip-scanned pgjobs_job_partition_claim here and sorted every due
    job (2,010 entries) for a claim of every queue or of one; an equality on the priority
    (queries.claim: one range per pending priority) leaves it the claim's index."""
    sql, params = claim_statement(
        worker_id="w", limit=LIMIT, lease_seconds=60, queues=queues,
        job_names=["test.record"], lease_token=None, start_now=None, flow=False,
    )  # fmt: skip
    read = entries_read(sql, params)
    # The walk of the claim's index stops at LIMIT; the update looks each id up by its key.
    assert read <= 3 * LIMIT, read


def generic_entries_read(sql: str, params: dict[str, Any], *, filtered: bool = False) -> int:
    """entries_read() for the generic plan of ``sql``, as a prepared claim may run it."""
    return _entries(claim_plan(sql, params, generic=True), filtered=filtered)


def claim_plan(sql: str, params: dict[str, Any], *, generic: bool = False) -> dict[str, Any]:
    """The plan of ``sql`` run under EXPLAIN ANALYZE and rolled back. ``generic``: its generic
    plan, as a prepared claim may run it: made without the parameters' values (PREPARE, then
    plan_cache_mode forcing it)."""
    conn = second_connection()
    try:
        with conn.transaction(force_rollback=True):
            if not generic:
                row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
            else:
                row = _explain_generic(conn, sql, params)
            assert row is not None
            (plan,) = row
    finally:
        conn.close()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return dict(plan[0]["Plan"])


def _explain_generic(conn: Any, sql: str, params: dict[str, Any]) -> Any:
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)
    # A list goes as text[] (as psycopg sends it); the others' types PostgreSQL infers from
    # the statement.
    types = ", ".join("text[]" if isinstance(params[name], list) else "unknown" for name in names)
    conn.execute(f"PREPARE generic_claim ({types}) AS {numbered}")
    conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    values = psycopg_sql.SQL(", ").join(psycopg_sql.Literal(params[n]) for n in names)
    explain = psycopg_sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE generic_claim ({})")
    row = conn.execute(explain.format(values)).fetchone()
    generic = "SELECT generic_plans FROM pg_prepared_statements WHERE name = 'generic_claim'"
    assert conn.execute(generic).fetchone() == (1,)
    return row


def _entries(node: dict[str, Any], *, filtered: bool = False) -> int:
    """Rows the scans of pgjobs_job_queue under ``node`` returned, summed over loops; with
    ``filtered``, also those they read and removed by a filter or a recheck."""
    own = 0
    if node.get("Relation Name") == "pgjobs_job_queue" and "Scan" in node["Node Type"]:
        read = node["Actual Rows"]
        if filtered:
            read += node.get("Rows Removed by Filter", 0)
            read += node.get("Rows Removed by Index Recheck", 0)
        own = round(read * node["Actual Loops"])
    return own + sum(_entries(child, filtered=filtered) for child in node.get("Plans", []))


@pytest.mark.usefixtures("stale_statistics")
@pytest.mark.parametrize("limit", [1, LIMIT, 500])
def test_the_plain_claims_generic_plan_reads_what_it_takes(limit: int) -> None:
    """The worker prepares its plain claim (prepared.preparing_cursor); PostgreSQL may then
    run a generic plan, made without the limit or the handlers' names: it still walks the
    claim's index and stops at the limit."""
    sql, params = claim_statement(
        worker_id="w", limit=limit, lease_seconds=60, queues=None,
        job_names=["test.record"], lease_token=None, start_now=None, flow=False,
    )  # fmt: skip
    read = generic_entries_read(sql, params)
    assert read <= 3 * limit + 3, read


@pytest.mark.parametrize("generic", [False, True])
def test_the_plain_claim_takes_the_rows_it_locked_without_a_second_lookup(generic: bool) -> None:
    """The update takes the rows ``due`` locked by their tuple ids (queries.claim, _BY_TUPLE):
    the claim reads its index and never the table's key, where looking each id up again cost a
    descent of pgjobs_job_queue_pkey a job. On the custom plan and on the generic one."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name) "
            "SELECT 'test.record' FROM generate_series(1, %s)",
            [DUE],
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    sql, params = claim_statement(
        worker_id="w", limit=500, lease_seconds=60, queues=None,
        job_names=["test.record"], lease_token=None, start_now=None, flow=False,
    )  # fmt: skip
    plan = claim_plan(sql, params, generic=generic)
    scans = {(n["Node Type"], n.get("Index Name")) for n in plan_nodes(plan)}
    assert ("Tid Scan", None) in scans, scans
    assert not any(index == "pgjobs_job_queue_pkey" for _, index in scans), scans
    updated = [n for n in plan_nodes(plan) if n["Node Type"] == "ModifyTable"]
    assert [n["Actual Rows"] for n in updated] == [500]
