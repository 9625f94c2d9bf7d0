"""DBOS (dbos-transact-py) in run.py's comparison.

``python -m benchmarks.peers.dbos_peer WORKLOAD``: the workflows workload of run.py (4), N
started workflows of 3 no-op steps drained by 1 and 2 worker processes.

DBOS's way to hand started workflows to worker processes is a queue: a client
enqueues them (``DBOSClient.enqueue``, not timed), then each worker process launches DBOS with
the queue declared and runs what it dequeues; it stops once no workflow of the queue is left.

Settings, from DBOS's documentation (benchmarks/README.md, "The peers", cites it):

- a queue (``DBOS.register_queue``, the way DBOS 3 declares one) with ``worker_concurrency``
  8: the per-process limit its queue reference names for spreading a queue over processes
  (without one the first process to poll takes every workflow and a second gets none); 8 as our
  tuned worker's ``--concurrency 8``;
- ``polling_interval_sec`` 0.1 (default 1.0, a documented parameter): a worker dequeues only
  when it polls, so with a per-process limit each poll refills the free slots;
- the system database on PostgreSQL (SQLite is its default when none is given), with its
  default ``use_listen_notify`` and pool.

``BENCH_DBOS_WORKER_CONCURRENCY`` (a number, or ``none``) and ``BENCH_DBOS_POLL`` override them.
Rates are read from ``dbos.workflow_status`` (the first ``started_at_epoch_ms`` to the last
``updated_at`` of the completed workflows), as ours are read from our rows.
"""

from __future__ import annotations

import os
from typing import Any

import dbos
import psycopg
from dbos import DBOS, DBOSClient

from benchmarks.peers.common import answer, database_url, parse, run_workers, wait_for

MODULE = "dbos_peer"
APP = "pgjobs-bench"
QUEUE = "bench"
WORKFLOW = "bench.three_steps"
STEPS = 3
_CONCURRENCY = os.environ.get("BENCH_DBOS_WORKER_CONCURRENCY", "8")
WORKER_CONCURRENCY = None if _CONCURRENCY.lower() == "none" else int(_CONCURRENCY)
POLL = float(os.environ.get("BENCH_DBOS_POLL", "0.1"))
SETTINGS = {
    "queue worker_concurrency": WORKER_CONCURRENCY,
    "queue polling_interval_sec": POLL,
    "system database": "PostgreSQL",
}


def version() -> str:
    from importlib.metadata import version as installed

    return getattr(dbos, "__version__", None) or installed("dbos")


def launch(index: int) -> None:
    """DBOS in this process, with the queue and the workflow of 3 no-op steps."""
    DBOS(
        config={
            "name": APP,
            "system_database_url": database_url(),
            # Each process must have its own for worker_concurrency to count per process.
            "executor_id": f"bench-{os.getpid()}-{index}",
            "log_level": "WARNING",
        }
    )

    def noop_step(value: int) -> int:
        return value

    step = DBOS.step(name="bench.noop_step")(noop_step)

    def three_steps(n: int) -> int:
        result: int = step(step(step(n)))
        return result

    DBOS.workflow(name=WORKFLOW)(three_steps)
    DBOS.launch()
    # Queues live in the system database since DBOS 3 (``DBOS.register_queue``, after launch);
    # each worker process finds it there within a second (its queue thread's check).
    DBOS.register_queue(
        QUEUE,
        worker_concurrency=WORKER_CONCURRENCY,
        polling_interval_sec=POLL,
        on_conflict="always_update",
    )


def setup() -> dict[str, Any]:
    """Launching once creates DBOS's system schema in the scratch database."""
    launch(0)
    DBOS.destroy()
    return {"version": version(), "settings": SETTINGS}


def left(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s "
        "AND status IN ('ENQUEUED', 'PENDING')",
        [QUEUE],
    ).fetchone()
    return int(row[0]) if row else 0


def workflows(count: int, processes: int) -> dict[str, Any]:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute("TRUNCATE dbos.workflow_status, dbos.operation_outputs CASCADE")
        client = DBOSClient(system_database_url=database_url(), application_name=APP)
        for i in range(count):
            client.enqueue({"queue_name": QUEUE, "workflow_name": WORKFLOW}, i)
        client.destroy()
        conn.execute("VACUUM ANALYZE dbos.workflow_status")
        run_workers(MODULE, "workflows", count, processes)
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
            "(max(updated_at) - min(started_at_epoch_ms)) / 1000.0 "
            "FROM dbos.workflow_status WHERE queue_name = %s",
            [QUEUE],
        ).fetchone()
        steps = conn.execute("SELECT count(*) FROM dbos.operation_outputs").fetchone()
    assert row is not None
    assert steps is not None
    done, seconds = int(row[0]), float(row[1] or 0)
    if done != count or steps[0] != count * STEPS:
        raise SystemExit(f"DBOS completed {done} of {count} workflows, {steps[0]} steps")
    rate = done / max(seconds, 1e-6)
    return {"rate": rate, "steps_per_s": rate * STEPS}


def worker(index: int) -> None:
    launch(index)
    with psycopg.connect(database_url(), autocommit=True) as conn:
        wait_for(lambda: left(conn) == 0, 600, "DBOS to run every workflow")
    DBOS.destroy()


def main() -> None:
    args = parse()
    if args.workload == "setup":
        answer(setup())
    elif args.workload == "workflows":
        answer(workflows(args.count, args.processes))
    elif args.workload == "worker":
        worker(args.index)
    else:
        raise SystemExit(f"dbos: no workload {args.workload!r}")


if __name__ == "__main__":
    main()
