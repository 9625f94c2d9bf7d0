"""pgqueuer in run.py's comparison: ``python -m benchmarks.peers.pgqueuer_peer WORKLOAD``.

Settings, each from pgqueuer's own documentation (benchmarks/README.md, "The peers", cites it):

- the asyncpg driver, one connection per QueueManager (``AsyncpgDriver``): its benchmark page
  measures asyncpg at about 1.7x psycopg, and its tuning guide says to give the QueueManager a
  direct asyncpg connection, not a pool;
- uvloop, as ``pgq run`` uses whenever it is installed;
- ``batch_size`` 100 (default 10): the tuning guide says to raise it for short jobs;
- the schema as ``pgq install`` makes it (``durable``: logged tables, as ours are) and
  ``pgq autovac``'s table settings, both in the guide's checklist;
- a drain is ``mode=drain`` (pgqueuer's own "drain" benchmark strategy): it exits once the
  queue is empty; latency waits on its LISTEN/NOTIFY channel with ``dequeue_timeout`` 60 s
  (polling as good as off, as our worker's is for that workload).

``BENCH_PGQUEUER_BATCH`` overrides the batch size. Rates are read from ``pgqueuer_log`` (the
first ``picked`` to the last ``successful``), as ours are read from our rows.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import time
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import asyncpg
from pgqueuer import PgQueuer, Queries, __version__, types
from pgqueuer.db import AsyncpgDriver

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

MODULE = "pgqueuer_peer"
BATCH = int(os.environ.get("BENCH_PGQUEUER_BATCH", "100"))
SETTINGS = {
    "driver": "AsyncpgDriver (one connection per QueueManager)",
    "event loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    "batch_size": BATCH,
    "durability": "durable (pgq install's default)",
    "autovac": "pgq autovac's table settings",
    "one QueueManager per process": True,
}


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """As ``pgq run`` does: on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def queries() -> Queries:
    return Queries(AsyncpgDriver(await asyncpg.connect(database_url())))


async def setup() -> dict[str, Any]:
    q = await queries()
    await q.install()
    await q.optimize_autovacuum()
    await q.driver.execute(LATENCY_TABLE)
    return {"version": __version__, "settings": SETTINGS}


async def clear(q: Queries) -> None:
    await q.clear_queue()
    await q.clear_statistics_log()
    await q.driver.execute("TRUNCATE pgqueuer_log")


async def enqueue(count: int) -> dict[str, Any]:
    """One job per transaction: each ``enqueue`` is one autocommit statement."""
    q = await queries()
    await clear(q)
    started = time.perf_counter()
    for i in range(count):
        await q.enqueue("noop", str(i).encode(), 0)
    return {"rate": count / (time.perf_counter() - started)}


async def drain(count: int, processes: int) -> dict[str, Any]:
    q = await queries()
    await clear(q)
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        await q.enqueue(["noop"] * n, [str(i).encode() for i in range(n)], [0] * n)
    await q.driver.execute("VACUUM ANALYZE pgqueuer")
    await asyncio.to_thread(run_workers, MODULE, "drain", count, processes)
    conn = await asyncpg.connect(database_url())
    done, seconds = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'successful'), extract(epoch FROM "
        "max(created) FILTER (WHERE status = 'successful') "
        "- min(created) FILTER (WHERE status = 'picked'))::float8 FROM pgqueuer_log"
    )
    if done != count:
        raise SystemExit(f"pgqueuer completed {done} of {count} jobs")
    return {"rate": done / max(seconds or 0.0, 1e-6)}


async def latency(count: int) -> dict[str, Any]:
    q = await queries()
    await clear(q)
    proc = spawn(worker_command(MODULE, "latency", count))
    try:

        async def enqueue_one(n: int) -> None:
            await q.enqueue("latency", str(n).encode(), 0)

        return await measure_latency(enqueue_one, count)
    finally:
        stop(proc)


async def worker(mode: str) -> None:
    pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(database_url())))

    async def noop(job: Any) -> None:
        return None

    pgq.entrypoint("noop")(noop)
    if mode == "drain":
        await pgq.run(batch_size=BATCH, mode=types.QueueExecutionMode.drain)
        return
    # Latency: note when each handler starts, as our bench.latency handler does.
    notes = await asyncpg.connect(database_url())

    async def note(job: Any) -> None:
        started = time.time()
        await notes.execute(
            "INSERT INTO bench_latency (n, started) VALUES ($1, $2)", int(job.payload), started
        )

    pgq.entrypoint("latency")(note)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    await pgq.run(batch_size=BATCH, dequeue_timeout=timedelta(seconds=60))


def main() -> None:
    args = parse()
    if args.workload == "setup":
        answer(run(setup()))
    elif args.workload == "enqueue":
        answer(run(enqueue(args.count)))
    elif args.workload == "drain":
        answer(run(drain(args.count, args.processes)))
    elif args.workload == "latency":
        answer(run(latency(args.count)))
    elif args.workload == "worker":
        run(worker(args.mode))
    else:
        raise SystemExit(f"pgqueuer: no workload {args.workload!r}")


if __name__ == "__main__":
    main()
