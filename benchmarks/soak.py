"""A soak: a producer and a worker running side by side for minutes, sampled every few seconds.

    python benchmarks/soak.py --seconds 120 --rate 1500
    python benchmarks/soak.py --table-options "autovacuum_vacuum_scale_factor=0.01"

What it answers: does the queue stay healthy under steady churn (the worker keeps up, the oldest
due job stays young, dead tuples are reclaimed), and do per-table storage settings change that?
It prints one line per sample (pending jobs, the oldest due job's age, dead tuples, autovacuum
runs, table + index size) and a summary. Like run.py it uses a scratch database on DATABASE_URL
or an embedded PostgreSQL, and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.commands import (  # noqa: E402
    child_environment,
    drop_database,
    setup_database,
    worker_command,
)

SAMPLE = """
SELECT (SELECT count(*) FROM pgjobs_job_queue WHERE status = 'pending' AND scheduled_for <= now()),
       (SELECT coalesce(extract(epoch FROM now() - min(scheduled_for)), 0)
        FROM pgjobs_job_queue WHERE status = 'pending' AND scheduled_for <= now()),
       (SELECT count(*) FROM pgjobs_job_queue WHERE status = 'completed'),
       s.n_dead_tup, s.autovacuum_count, s.autoanalyze_count,
       pg_total_relation_size('pgjobs_job_queue'), s.n_tup_upd, s.n_tup_hot_upd
FROM pg_stat_user_tables AS s WHERE s.relname = 'pgjobs_job_queue'
"""

COLUMNS = (
    "due", "oldest_due_s", "completed", "dead_tuples", "autovacuums", "autoanalyzes",
    "total_bytes", "updates", "hot_updates",
)  # fmt: skip
HEADER = (
    "    t     due  oldest  completed      dead  av  an     MiB  hot%\n"
    "  (s)          (s)                          (autovacuums, autoanalyzes; HOT updates)"
)


def _number(value: Any) -> int | float:
    """A sample's figure for JSON (the oldest due job's age comes back as a Decimal)."""
    return value if isinstance(value, int) else float(value)


def line(elapsed: float, row: tuple[Any, ...]) -> str:
    due, oldest, completed, dead, av, an, size, updates, hot = row
    return (
        f"{elapsed:5.0f} {due:7d} {oldest:7.2f} {completed:10d} {dead:9d} {av:3d} {an:3d} "
        f"{size / 2**20:7.1f} {100 * hot / max(updates, 1):5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=int, default=1500, help="Jobs enqueued per second.")
    parser.add_argument("--sample", type=float, default=10.0, help="Seconds between samples.")
    parser.add_argument("--retention", type=float, default=30.0, help="RETENTION, seconds.")
    parser.add_argument("--json", type=Path, default=None, help="Write the samples here.")
    parser.add_argument(
        "--table-options", default="", help="ALTER TABLE pgjobs_job_queue SET (...) first."
    )
    args = parser.parse_args()

    from django_pgjobs.contrib.embedded import database_url

    server_url = os.environ.get("DATABASE_URL") or database_url(ROOT / ".pgdata-bench")
    url = setup_database(server_url)
    env = {
        **child_environment(url),
        "BENCH_RETENTION": str(args.retention),
        "BENCH_PRUNE_INTERVAL": str(min(args.retention, 10.0)),
    }
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    raw = psycopg.connect(url, autocommit=True)
    if args.table_options:
        raw.execute(f"ALTER TABLE pgjobs_job_queue SET ({args.table_options})")
    worker = subprocess.Popen(worker_command("--concurrency", "8"), cwd=ROOT, env=env)  # noqa: S603
    from django_pgjobs import enqueue_many

    samples: list[tuple[Any, ...]] = []
    batch = max(args.rate // 20, 1)  # 20 enqueue_many calls a second
    started = time.monotonic()
    next_batch = next_sample = started
    enqueued = 0
    print(HEADER)
    try:
        while (now := time.monotonic()) - started < args.seconds:
            if now >= next_batch:
                enqueue_many("bench.noop", [{}] * batch)
                enqueued += batch
                next_batch += batch / args.rate
            if now >= next_sample:
                row = raw.execute(SAMPLE).fetchone()
                assert row is not None
                samples.append(row)
                print(line(now - started, row), flush=True)
                next_sample += args.sample
            time.sleep(max(min(next_batch, next_sample) - time.monotonic(), 0))
    finally:
        worker.terminate()
        worker.wait(60)
        raw.close()
        from django.db import connections

        connections.close_all()
        drop_database(server_url, url)
    summary = {
        "enqueued": enqueued,
        "rate": args.rate,
        "seconds": args.seconds,
        "table_options": args.table_options,
        "oldest_due_median_s": statistics.median(float(s[1]) for s in samples),
        "oldest_due_max_s": max(float(s[1]) for s in samples),
        "dead_tuples_max": max(s[3] for s in samples),
        "autovacuums": samples[-1][4],
        "size_max_bytes": max(s[6] for s in samples),
        "samples": [dict(zip(COLUMNS, map(_number, s), strict=True)) for s in samples],
    }
    print(
        f"\nenqueued {enqueued} at {args.rate}/s for {args.seconds:.0f} s; oldest due job: "
        f"median {summary['oldest_due_median_s']:.2f} s, max {summary['oldest_due_max_s']:.2f} s; "
        f"dead tuples max {summary['dead_tuples_max']}; autovacuums {summary['autovacuums']}; "
        f"size max {summary['size_max_bytes'] / 2**20:.1f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
