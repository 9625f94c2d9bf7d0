"""procrastinate in run.py's comparison: ``python -m benchmarks.peers.procrastinate_peer WORKLOAD``.

Settings, each from procrastinate's own documentation (benchmarks/README.md, "The peers", cites
it):

- ``PsycopgConnector`` (psycopg 3, async), the connector its docs say a worker needs;
- async no-op tasks and ``concurrency`` 8 sub-workers per process (default 1): its concurrency
  guide names sub-workers for async tasks as the way to raise a worker's throughput, beside more
  processes; 8 is what our tuned worker runs (``--concurrency 8``);
- ``wait=False``: the worker exits once it has caught up with the queue (a drain);
- ``listen_notify`` on (its default) and ``fetch_job_polling_interval`` 60 s for latency, so an
  idle worker is woken by its NOTIFY, not by a poll;
- ``delete_jobs`` ``never``, its default: finished jobs are kept, as ours are (``always`` is a
  clean-up option in its docs, not a speed one).

``BENCH_PROCRASTINATE_CONCURRENCY`` overrides the sub-workers. Rates are read from
``procrastinate_events`` (the first ``started`` to the last ``succeeded``), as ours are read from
our rows.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import procrastinate
import psycopg

from benchmarks.peers.common import (
    LATENCY_TABLE,
    answer,
    database_url,
    measure_latency,
    parse,
    run_workers,
    spawn,
    stop,
    worker_command,
)

MODULE = "procrastinate_peer"
CONCURRENCY = int(os.environ.get("BENCH_PROCRASTINATE_CONCURRENCY", "8"))
SETTINGS = {
    "connector": "PsycopgConnector",
    "concurrency": CONCURRENCY,
    "tasks": "async",
    "listen_notify": True,
    "delete_jobs": "never (default)",
    "fetch_job_polling_interval (latency)": 60,
}


def make_app() -> tuple[Any, Any, Any]:
    """The app and its two tasks: a no-op, and one that notes when it started."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url()))
    notes: list[psycopg.AsyncConnection[Any]] = []

    async def noop(i: int) -> None:
        return None

    async def note(n: int) -> None:
        started = time.time()
        if not notes:
            notes.append(await psycopg.AsyncConnection.connect(database_url(), autocommit=True))
        await notes[0].execute(
            "INSERT INTO bench_latency (n, started) VALUES (%s, %s)", [n, started]
        )

    return app, app.task(name="noop")(noop), app.task(name="latency")(note)


async def setup() -> dict[str, Any]:
    app, _, _ = make_app()
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as conn:
        await conn.execute(LATENCY_TABLE)
    return {"version": procrastinate.__version__, "settings": SETTINGS}


async def clear() -> None:
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as conn:
        await conn.execute("TRUNCATE procrastinate_jobs CASCADE")


async def enqueue(count: int) -> dict[str, Any]:
    """One job per transaction: ``defer_async`` is one autocommit call of its defer function."""
    await clear()
    app, noop, _ = make_app()
    async with app.open_async():
        started = time.perf_counter()
        for i in range(count):
            await noop.defer_async(i=i)
        elapsed = time.perf_counter() - started
    return {"rate": count / elapsed}


async def drain(count: int, processes: int) -> dict[str, Any]:
    await clear()
    app, noop, _ = make_app()
    async with app.open_async():
        for start in range(0, count, 10_000):
            await noop.batch_defer_async(
                *({"i": i} for i in range(start, min(count, start + 10_000)))
            )
    async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE procrastinate_jobs")
        await asyncio.to_thread(run_workers, MODULE, "drain", count, processes)
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'), extract(epoch FROM "
            "max(at) FILTER (WHERE type = 'succeeded') "
            "- min(at) FILTER (WHERE type = 'started'))::float8 FROM procrastinate_events"
        )
        row = await cur.fetchone()
    assert row is not None
    done, seconds = row
    if done != count:
        raise SystemExit(f"procrastinate completed {done} of {count} jobs")
    return {"rate": done / max(seconds or 0.0, 1e-6)}


async def latency(count: int) -> dict[str, Any]:
    await clear()
    proc = spawn(worker_command(MODULE, "latency", count))
    app, _, note = make_app()
    try:
        async with app.open_async():

            async def enqueue_one(n: int) -> None:
                await note.defer_async(n=n)

            return await measure_latency(enqueue_one, count)
    finally:
        stop(proc)


async def worker(mode: str) -> None:
    app, _, _ = make_app()
    async with app.open_async():
        if mode == "drain":
            await app.run_worker_async(concurrency=CONCURRENCY, wait=False)
        else:
            # Stops on SIGTERM (its own signal handlers).
            await app.run_worker_async(concurrency=CONCURRENCY, fetch_job_polling_interval=60)


def main() -> None:
    args = parse()
    if args.workload == "setup":
        answer(asyncio.run(setup()))
    elif args.workload == "enqueue":
        answer(asyncio.run(enqueue(args.count)))
    elif args.workload == "drain":
        answer(asyncio.run(drain(args.count, args.processes)))
    elif args.workload == "latency":
        answer(asyncio.run(latency(args.count)))
    elif args.workload == "worker":
        asyncio.run(worker(args.mode))
    else:
        raise SystemExit(f"procrastinate: no workload {args.workload!r}")


if __name__ == "__main__":
    # Through the module's own name: procrastinate warns about an app defined in ``__main__``
    # (its docs' "top-level app"), where tasks could not be found again by their import path.
    from benchmarks.peers import procrastinate_peer

    procrastinate_peer.main()
