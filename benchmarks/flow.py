"""Workload 6 of run.py: what flow control costs (issue 15).

Each figure drains the same jobs with the same workers (2 processes, the worker as ``drain``
runs it) and is a ratio to the same queue without limits, measured in the same run:

- a generous global ``concurrency`` (every claim takes the queue's lock and counts its running
  jobs): target at least 0.8;
- 1,000 partition keys with ``partition_concurrency`` 1 (every claim also walks the keys): at
  least 0.8;
- a ``rate_limit`` of 200 starts per second: the achieved rate as a ratio to the limit, at least
  0.95 and never above 1.0. Achieved: the limit over the mean time from each start to the start
  200 places later (which the limit keeps at a second or more).
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from benchmarks.commands import worker_command

if TYPE_CHECKING:
    from benchmarks.run import Bench

KEYS = 1000
RATE = 200


def _limits(bench: Bench, queue: str, **limits: Any) -> None:
    bench.raw.execute("DELETE FROM pgjobs_queues")
    bench.raw.execute("TRUNCATE pgjobs_queue_starts")
    if limits:
        from django_pgjobs.queues.declarations import normalised

        values = normalised(limits)
        bench.raw.execute(
            "INSERT INTO pgjobs_queues (name, concurrency, partition_concurrency, rate_limit, "
            "rate_period) VALUES (%s, %s, %s, %s, make_interval(secs => %s))",
            [
                queue,
                values["concurrency"],
                values["partition_concurrency"],
                values["rate_limit"],
                values["rate_period"] or 1.0,
            ],
        )


def _copy(bench: Bench, count: int, *, keys: int = 0) -> None:
    with bench.raw.cursor().copy(
        "COPY pgjobs_job_queue (job_name, payload, queue, partition_key) FROM STDIN"
    ) as copy:
        for i in range(count):
            key = f"k{i % keys}" if keys else None
            copy.write_row(("bench.noop", json.dumps({"i": i}), "flow", key))
    bench.raw.execute("VACUUM ANALYZE pgjobs_job_queue")


def _drain(bench: Bench, count: int, *, keys: int = 0, **limits: Any) -> float:

    _limits(bench, "flow", **limits)
    _copy(bench, count, keys=keys)
    worker = worker_command("--burst", "--concurrency", "8")
    bench.run_processes([worker, worker])
    return bench.drain_rate()


def _achieved_rate(bench: Bench) -> float:
    """Starts per second over the whole run, from the rows' start times: the limit says a job
    starts at least ``rate_period`` after the job RATE places before it, so the mean of those
    gaps, against the period, is the share of the limit used (1.0 at most, up to a start's
    few milliseconds of dispatch)."""
    starts: list[float] = [
        float(row[0])
        for row in bench.raw.execute(
            "SELECT extract(epoch FROM locked_at)::float8 FROM pgjobs_job_queue "
            "WHERE status = 'completed' ORDER BY locked_at"
        ).fetchall()
    ]
    gaps = [later - earlier for earlier, later in zip(starts, starts[RATE:], strict=False)]
    return RATE / max(sum(gaps) / max(len(gaps), 1), 1e-6)


def flow_control(bench: Bench) -> list[dict[str, Any]]:
    count = bench.n(20_000)
    results = []
    for name, options in (
        ("a generous concurrency limit (1,000)", {"concurrency": 1000}),
        (f"{KEYS:,} partition keys, one job per key at a time", {"partition_concurrency": 1}),
    ):
        keys = KEYS if "partition_concurrency" in options else 0
        result = bench.pair(
            f"drain {count} jobs, 2 processes, {name}",
            "jobs/s",
            functools.partial(_drain, bench, count, keys=keys, **options),
            functools.partial(_drain, bench, count, keys=keys),
            count,
        )
        result["baseline_is"] = "the same queue without limits"
        results.append(result)

    rated = max(RATE * 5, bench.n(RATE * 10))

    def rate_ratio() -> float:
        _limits(bench, "flow", rate_limit=RATE, rate_period=1.0)
        _copy(bench, rated)

        worker = worker_command("--burst", "--concurrency", "8")
        bench.run_processes([worker, worker])
        return _achieved_rate(bench) / RATE

    result = bench.pair(
        f"{rated} jobs at a rate limit of {RATE}/s, 2 processes: achieved / limit",
        "ratio",
        rate_ratio,
        count=rated,
    )
    result["ratio"] = result["library"]["median"]
    results.append(result)
    _limits(bench, "flow")
    return results
