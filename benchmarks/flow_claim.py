#!/usr/bin/env python3
"""One flow-controlled claim's time with many partition keys busy (issue 15).

    python benchmarks/flow_claim.py                        # 100,000 keys, 20 claims a figure
    python benchmarks/flow_claim.py --keys 10000 --repeat 50 --json claim.json

A partitioned queue ``flow`` holds ``--keys`` keys that are at their limit, and 100 keys with a
due job that can start. Each figure is the median time of ``--repeat`` claims of 10 jobs (the
worker's statement, ``claim_statement(flow=True)``), each rolled back so every claim sees the
same rows; and the slowest of 8 claims started at once (they take turns on the queue's lock, so
the last waits for the 7 before it: with the worker's 2 s ``lock_timeout`` it would fail past
that). Cases:

- ``started``: ``partition_rate_limit`` 1 a day, one start of each busy key in the window;
  the busy keys have no due job (the claim's key walk never reaches them);
- ``started, due``: the same, and each busy key has a due job too (the walk passes over up to
  its bound, 500 keys, of them);
- ``running``: ``partition_concurrency`` 1, one job of each busy key running.

Like run.py it uses a scratch database on DATABASE_URL or an embedded PostgreSQL, drops it at the
end, and asserts nothing. Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.commands import drop_database, migrated_database  # noqa: E402

FREE_KEYS = 100
AT_ONCE = 8

CASES = {
    "started": {"limit": "partition_rate_limit", "busy_due": False, "running": False},
    "started, due": {"limit": "partition_rate_limit", "busy_due": True, "running": False},
    "running": {"limit": "partition_concurrency", "busy_due": False, "running": True},
}


def prepare(conn: psycopg.Connection[Any], keys: int, case: dict[str, Any]) -> None:
    """The queue's rows: ``keys`` busy keys (started in the window, or running), and FREE_KEYS
    keys with a due job that can start."""
    conn.execute("TRUNCATE pgjobs_job_queue, pgjobs_queues, pgjobs_queue_starts")
    # A day's window for the per-key rate; a rate period alone is refused (migration 0027).
    period = "interval '1 day'" if case["limit"] == "partition_rate_limit" else "interval '1 s'"
    conn.execute(
        f"INSERT INTO pgjobs_queues (name, {case['limit']}, rate_period) "
        f"VALUES ('flow', 1, {period})"
    )
    if case["running"]:
        conn.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key, status, attempt, "
            "locked_by, locked_at, lease_expires_at, lease_token) "
            "SELECT 'bench.noop', 'flow', 'busy' || g, 'running', 1, 'other', now(), "
            "now() + interval '1 hour', gen_random_uuid() FROM generate_series(1, %s) AS g",
            [keys],
        )
    else:
        conn.execute(
            "INSERT INTO pgjobs_queue_starts (queue, partition_key, started_at, jobs) "
            "SELECT 'flow', 'busy' || g, now() - random() * interval '1 hour', 1 "
            "FROM generate_series(1, %s) AS g",
            [keys],
        )
    if case["busy_due"]:
        conn.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key) "
            "SELECT 'bench.noop', 'flow', 'busy' || g FROM generate_series(1, %s) AS g",
            [keys],
        )
    conn.execute(
        "INSERT INTO pgjobs_job_queue (job_name, queue, partition_key) "
        "SELECT 'bench.noop', 'flow', 'free' || g FROM generate_series(1, %s) AS g",
        [FREE_KEYS],
    )
    conn.execute("VACUUM ANALYZE pgjobs_job_queue")
    conn.execute("VACUUM ANALYZE pgjobs_queue_starts")


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection as a worker's: kept from claim to claim (its caches warm)."""
    conn = psycopg.connect(url)
    conn.execute("SET lock_timeout = '30s'")
    conn.commit()
    return conn


def one_claim(conn: psycopg.Connection[Any]) -> tuple[float, int]:
    """(seconds, jobs) of one claim of 10, rolled back."""
    from django_pgjobs.queries.claim import claim_statement

    sql, params = claim_statement(
        worker_id="bench", limit=10, lease_seconds=60, queues=["flow"], job_names=None, flow=True
    )
    started = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    took = time.perf_counter() - started
    conn.rollback()
    return took, sum(1 for row in rows if row[0] == "claimed")


def at_once(conns: list[psycopg.Connection[Any]]) -> float:
    """The slowest of AT_ONCE claims started together (each rolled back)."""
    times: list[float] = []
    ready = threading.Barrier(len(conns))

    def run(conn: psycopg.Connection[Any]) -> None:
        ready.wait()
        times.append(one_claim(conn)[0])

    threads = [threading.Thread(target=run, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(times)


def measure(url: str, keys: int, repeat: int) -> list[dict[str, Any]]:
    results = []
    conns = [connect(url) for _ in range(AT_ONCE)]
    with psycopg.connect(url, autocommit=True) as conn:
        for name, case in CASES.items():
            prepare(conn, keys, case)
            for each in conns:
                one_claim(each)  # caches warm, pages read
            claims = [one_claim(conns[0]) for _ in range(repeat)]
            slowest = [at_once(conns) for _ in range(max(repeat // 5, 1))]
            result = {
                "case": name,
                "keys": keys,
                "claimed": claims[0][1],
                "claim_ms": statistics.median(took for took, _ in claims) * 1000,
                "slowest_of_8_ms": statistics.median(slowest) * 1000,
            }
            print(
                f"{name:<14} {keys:>8,} busy keys: one claim {result['claim_ms']:8.1f} ms "
                f"({result['claimed']} jobs), slowest of {AT_ONCE} at once "
                f"{result['slowest_of_8_ms']:8.1f} ms",
                flush=True,
            )
            results.append(result)
    for each in conns:
        each.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000, help="Busy keys (default 100,000).")
    parser.add_argument("--repeat", type=int, default=20, help="Claims a figure (median).")
    parser.add_argument("--json", type=Path, default=None, help="Write the results here.")
    args = parser.parse_args()

    server_url, url = migrated_database()
    try:
        results = measure(url, args.keys, args.repeat)
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(server_url, url)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
