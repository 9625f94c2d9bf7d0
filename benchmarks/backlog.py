"""Workload 5 of run.py: the drain behind a backlog of a million pending jobs (issue 17's target:
within 20% of the empty table's rate), with the plan the claim runs there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.run import Bench


def backlog(bench: Bench, empty_rate: float) -> dict[str, Any]:
    """The one-process drain behind a backlog of a million lower-priority jobs, against the
    empty table's rate (``empty_rate``, this run's), with the claim's plan there and the
    table's size once the finished rows are pruned."""
    from django_pgjobs.queries.claim import claim_statement

    size = bench.n(1_000_000)
    # Copying a million rows dominates the run: one pass is enough for a flat-or-not answer.
    repeat, bench.repeat = bench.repeat, 1
    try:
        result = bench.drain(1, backlog=size)
    finally:
        bench.repeat = repeat
    rate = result["library"]["median"]
    result["ratio_to_empty_table"] = rate / empty_rate if empty_rate else None
    sql, params = claim_statement(
        worker_id="explain", limit=10, lease_seconds=60, queues=None, job_names=["bench.noop"]
    )
    plan = bench.raw.execute("EXPLAIN " + sql, params).fetchall()
    result["claim_plan"] = [r[0] for r in plan]
    bench.raw.execute("DELETE FROM pgjobs_job_queue WHERE status = 'completed'")
    bench.raw.execute("SELECT pg_stat_force_next_flush()")
    row = bench.raw.execute(
        "SELECT pg_total_relation_size('pgjobs_job_queue'), n_dead_tup, n_live_tup "
        "FROM pg_stat_user_tables WHERE relname = 'pgjobs_job_queue'"
    ).fetchone()
    assert row is not None
    result["after_pruning"] = {
        "total_bytes": row[0],
        "dead_tuples": row[1],
        "live_tuples": row[2],
    }
    return result
