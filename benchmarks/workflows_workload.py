"""Workload 4 of run.py: started workflows of 3 no-op steps drained by 1 and 2 worker processes
(workflows/s and steps/s), beside the raw-SQL baseline's, the library at its defaults and DBOS;
and the statements one workflow costs. benchmarks/README.md says how each is read.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from benchmarks.commands import baseline_command, defaults_command, worker_command

if TYPE_CHECKING:
    from benchmarks.run import Bench


STEPS = 3  # the no-op steps of bench.three_steps (benchmarks/bench/workflows.py)


def start_workflows(bench: Bench, count: int) -> None:
    from django.db import transaction

    from benchmarks.bench.workflows import three_steps
    from django_pgjobs import start_workflow

    with transaction.atomic():
        for i in range(count):
            start_workflow(three_steps, i)
    bench.raw.execute("VACUUM ANALYZE pgjobs_job_queue, pgjobs_workflow_executions")


def check_workflows(bench: Bench, count: int) -> None:
    row = bench.raw.execute(
        "SELECT count(*) FILTER (WHERE w.status = 'completed'), "
        "(SELECT count(*) FROM pgjobs_workflow_steps) FROM pgjobs_workflow_executions AS w"
    ).fetchone()
    if row != (count, count * STEPS):
        raise SystemExit(f"workflows not all completed: {row!r}, expected {count}")


def transactions(bench: Bench) -> int:
    """Transactions this database has committed or rolled back, as the statistics have them
    (each autocommit statement is one)."""
    bench.raw.execute("SELECT pg_stat_force_next_flush()")
    bench.raw.execute("SELECT pg_stat_clear_snapshot()")
    row = bench.raw.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
        "WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def workflows(bench: Bench, processes: int) -> dict[str, Any]:

    count = bench.n(1000)
    worker = worker_command("--burst", "--concurrency", "8")
    raw = baseline_command("workflows", STEPS)
    per_step: dict[str, list[float]] = {"library": [], "baseline": [], "library_defaults": []}

    def measure(which: str, command: list[str]) -> float:
        start_workflows(bench, count)
        before = transactions(bench)
        bench.run_processes([command] * processes, defaults=which == "library_defaults")
        # Exiting backends send their statistics as they go: give them a moment.
        time.sleep(1.0)
        per_step[which].append((transactions(bench) - before) / (count * STEPS))
        check_workflows(bench, count)
        return bench.drain_rate()

    result = bench.pair(
        f"workflows: {count} x {STEPS} no-op steps, {processes} process(es)",
        "workflows/s",
        lambda: measure("library", worker),
        lambda: measure("baseline", raw),
        count,
        also={"library_defaults": lambda: measure("library_defaults", defaults_command("--burst"))},
        peers=("workflows", processes),
    )
    result["steps"] = STEPS
    for which in ("library", "baseline", "library_defaults"):
        result[which]["steps_per_s"] = result[which]["median"] * STEPS
        result[which]["transactions_per_step"] = statistics.median(per_step[which])
    result["key"] = f"workflows-{processes}"
    return result


def workflow_statements(bench: Bench) -> dict[str, Any]:
    """Statements one workflow of bench.three_steps costs, counted by running its job in
    this process under CaptureQueriesContext: the claim and completion of its job (which a
    worker batches across jobs; the workflow's ending goes with the completion), and the
    handler's own (load, checkpoints)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from benchmarks.bench.workflows import three_steps
    from django_pgjobs import start_workflow
    from django_pgjobs.jobs.context import AttemptNotes, ProgressReporter
    from django_pgjobs.jobs.registry import registry
    from django_pgjobs.queries import claim_jobs, complete_jobs
    from django_pgjobs.worker.attempt import call_handler

    bench.reset()
    handle = start_workflow(three_steps, 7)
    with CaptureQueriesContext(connection) as claimed, connection.cursor() as cur:
        [job] = claim_jobs(
            cur, worker_id="bench", limit=1, lease_seconds=60, queues=None, job_names=None
        )
    handler = registry.get(job.job_name)
    assert handler is not None
    notes = AttemptNotes()
    with CaptureQueriesContext(connection) as ran:
        call_handler(handler, job, ProgressReporter(job, lambda *args: None), notes)
    ending = None if notes.workflow_ending is None else notes.workflow_ending.text
    with CaptureQueriesContext(connection) as completed, connection.cursor() as cur:
        complete_jobs(cur, tokens=[job.token], endings=[ending])
    if handle.get_result(5) != 7:
        raise SystemExit("the counted workflow did not complete")
    handler_sql = [q["sql"] for q in ran.captured_queries]
    job_sql = len(claimed.captured_queries) + len(completed.captured_queries)
    return {
        "name": f"workflow statements, {STEPS} no-op steps (one workflow, in-process)",
        "steps": STEPS,
        "handler_statements": len(handler_sql),
        "checkpoint_statements": sum(
            "INSERT INTO pgjobs_workflow_steps" in sql for sql in handler_sql
        ),
        "job_statements": job_sql,
        "handler_statements_per_step": len(handler_sql) / STEPS,
        "statements_per_step_unbatched": (len(handler_sql) + job_sql) / STEPS,
        "baseline_statements_per_step": (STEPS + 2) / STEPS,
        "handler_sql": [" ".join(sql.split())[:120] for sql in handler_sql],
    }
