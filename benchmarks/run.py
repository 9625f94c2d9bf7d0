#!/usr/bin/env python3
"""django-pgjobs benchmarks, each workload beside a raw-SQL baseline measured in the same run.

    python benchmarks/run.py                    # default scale: a few minutes on 2 cores
    python benchmarks/run.py --scale 0.1 --repeat 5 --json results.json

Runs against DATABASE_URL's server when set, else an embedded PostgreSQL; creates a scratch
database there and drops it afterwards. Prints medians of ``--repeat`` runs and the ratio of
each figure to the baseline; never asserts anything (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.commands import (  # noqa: E402
    baseline_command,
    child_environment,
    defaults_command,
    drop_database,
    migrated_database,
    worker_command,
)
from benchmarks.peers.orchestra import SPECS, Peers, peers_python  # noqa: E402
from benchmarks.report import (  # noqa: E402
    comparison,
    environment,
    print_comparison,
    print_table,
)
from benchmarks.rounds import interleaved, spread  # noqa: E402

# A peer's runs among a round's contenders: its name after this, so that no peer's name can be
# taken for one of ours.
_PEER = "peer:"


class Bench:
    def __init__(self, url: str, scale: float, repeat: int) -> None:
        self.url = url
        self.scale = scale
        self.repeat = repeat
        self.raw = psycopg.connect(url, autocommit=True)
        self.env = child_environment(url)
        # Every child command line, once each, for the report: what exactly was measured.
        self.commands: list[list[str]] = []
        # pgqueuer, procrastinate, DBOS (benchmarks/peers/), when run.py is asked for them.
        self.peers: Peers | None = None

    def n(self, base: int) -> int:
        return max(int(base * self.scale), 10)

    def reset(self) -> None:
        self.raw.execute(
            "TRUNCATE pgjobs_job_queue, pgjobs_failed_jobs, pgjobs_workers, bench_latency, "
            "bench_drain, "
            "pgjobs_workflow_executions, pgjobs_workflow_steps, pgjobs_workflow_messages, "
            "pgjobs_workflow_events, pgjobs_queues, pgjobs_queue_starts"
        )

    def copy_jobs(self, count: int, *, priority: int = 0, queue: str = "default") -> None:
        with self.raw.cursor().copy(
            "COPY pgjobs_job_queue (job_name, payload, priority, queue) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row(("bench.noop", json.dumps({"i": i}), priority, queue))

    def rounds(
        self,
        ours: dict[str, Callable[[], Any]],
        peers: tuple[str, int, int] | None = None,
    ) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """Each of ``ours``' ``repeat`` runs by name, and with ``peers`` (a workload, its count,
        its processes) the peers' figures, all from the same interleaved rounds
        (benchmarks.rounds), each run from an empty queue."""
        theirs = {}
        if peers is not None and self.peers is not None:
            theirs = self.peers.contenders(*peers)
        runs = interleaved(
            {**ours, **{_PEER + name: run for name, run in theirs.items()}},
            self.repeat,
            before=self.reset,
        )
        peer_runs = {name: runs[_PEER + name] for name in theirs}
        figures = {} if self.peers is None else self.peers.figures(peer_runs)
        return {name: runs[name] for name in ours}, figures

    def pair(
        self,
        name: str,
        unit: str,
        library: Callable[[], float],
        baseline: Callable[[], float] | None = None,
        count: int = 0,
        *,
        also: dict[str, Callable[[], float]] | None = None,
        peers: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """The library's figure beside the baseline's (and their ratio), ``also``'s figures
        under their own keys, and with ``peers`` (a workload and a number of processes) the
        peers' figures: all from the same interleaved rounds (:meth:`rounds`)."""
        ours: dict[str, Callable[[], float]] = {"library": library}
        if baseline is not None:
            ours["baseline"] = baseline
        ours.update(also or {})
        runs, figures = self.rounds(ours, None if peers is None else (peers[0], count, peers[1]))
        result: dict[str, Any] = {"name": name, "unit": unit, "n": count}
        result.update({key: spread(values) for key, values in runs.items()})
        if "baseline" in result:
            result["ratio"] = result["library"]["median"] / result["baseline"]["median"]
        if peers is not None:
            result["peers"] = figures
        return result

    # -- 1. enqueue ------------------------------------------------------------------------------

    def enqueue_per_transaction(self) -> dict[str, Any]:
        from django.db import transaction

        from django_pgjobs import enqueue

        count = self.n(5000)

        def library() -> float:
            started = time.perf_counter()
            for i in range(count):
                with transaction.atomic():
                    enqueue("bench.noop", {"i": i})
            return count / (time.perf_counter() - started)

        def baseline() -> float:
            conn = psycopg.connect(self.url)
            started = time.perf_counter()
            for i in range(count):
                conn.execute(
                    "INSERT INTO pgjobs_job_queue (job_name, payload) VALUES (%s, %s)",
                    ["bench.noop", json.dumps({"i": i})],
                )
                conn.commit()
            elapsed = time.perf_counter() - started
            conn.close()
            return count / elapsed

        name = "enqueue, one job per transaction"
        result = self.pair(name, "jobs/s", library, baseline, count, peers=("enqueue", 1))
        result["key"] = "enqueue"
        return result

    def enqueue_bulk(self) -> dict[str, Any]:
        from django_pgjobs import enqueue_many

        count = self.n(50_000)
        payloads = [{"i": i} for i in range(count)]

        def library() -> float:
            started = time.perf_counter()
            enqueue_many("bench.noop", payloads)
            return count / (time.perf_counter() - started)

        def baseline() -> float:
            started = time.perf_counter()
            self.copy_jobs(count)
            return count / (time.perf_counter() - started)

        return self.pair("enqueue_many vs COPY", "jobs/s", library, baseline, count)

    # -- 2. drain --------------------------------------------------------------------------------

    def drain_rate(self) -> float:
        """Jobs/s from the first claim to the last completion, read from the rows themselves
        (so process start-up is not counted)."""
        row = self.raw.execute(
            "SELECT count(*), extract(epoch FROM max(completed_at) - min(locked_at)) "
            "FROM pgjobs_job_queue WHERE status = 'completed'"
        ).fetchone()
        assert row is not None
        done, seconds = row
        return float(done) / max(float(seconds or 0), 1e-6)

    def spawn(self, command: list[str], *, defaults: bool = False) -> subprocess.Popen[bytes]:
        """A child process. ``defaults``: the library as it comes (no PGJOBS setting, see
        settings.py) writing its output to a file, as under a process manager that keeps a log."""
        listed = ["BENCH_LIBRARY_DEFAULTS=1", *command] if defaults else command
        if listed not in self.commands:
            self.commands.append(listed)
        if not defaults:
            return subprocess.Popen(command, cwd=ROOT, env=self.env)  # noqa: S603
        env = {**self.env, "BENCH_LIBRARY_DEFAULTS": "1"}
        with tempfile.TemporaryFile() as log:  # the child keeps its own descriptor open
            return subprocess.Popen(  # noqa: S603 (our own command line)
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def run_processes(self, commands: list[list[str]], *, defaults: bool = False) -> None:
        procs = [self.spawn(c, defaults=defaults) for c in commands]
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                raise SystemExit(f"benchmark process failed: {proc.args!r}")

    def delete_rate(self) -> float:
        """Jobs/s of ``baseline.py drain-delete`` processes, from what they noted (their rows
        are gone): all their jobs over the first claim to the last completion of any."""
        row = self.raw.execute(
            "SELECT sum(jobs), max(last_completion) - min(first_claim) FROM bench_drain"
        ).fetchone()
        assert row is not None
        return float(row[0] or 0) / max(float(row[1] or 0), 1e-6)

    def drain(self, processes: int, *, backlog: int = 0) -> dict[str, Any]:
        count = self.n(20_000)
        worker = worker_command("--burst", "--concurrency", "8")
        raw = baseline_command("drain", 100)

        def prepare() -> None:
            if backlog:
                # Lower priority: waits behind the measured jobs, in the same index.
                self.copy_jobs(backlog, priority=-1)
            self.copy_jobs(count)
            self.raw.execute("VACUUM ANALYZE pgjobs_job_queue")

        def library() -> float:
            prepare()
            if backlog:
                worker_args = [*worker, "--max-jobs", str(count)]
                self.run_processes([worker_args] * processes)
            else:
                self.run_processes([worker] * processes)
            return self.drain_rate()

        def baseline() -> float:
            prepare()
            self.run_processes([raw] * processes)
            return self.drain_rate()

        def at_defaults() -> float:
            prepare()
            self.run_processes([defaults_command("--burst")] * processes, defaults=True)
            return self.drain_rate()

        def deleting() -> float:
            prepare()
            self.run_processes([baseline_command("drain-delete", 100)] * processes)
            return self.delete_rate()

        label = f"drain {count} jobs, {processes} process(es)"
        if backlog:
            label += f", behind a backlog of {backlog:,}"
            return self.pair(label, "jobs/s", library, count=count)
        result = self.pair(
            label,
            "jobs/s",
            library,
            baseline,
            count,
            also={"library_defaults": at_defaults, "baseline_delete": deleting},
            peers=("drain", processes),
        )
        result["key"] = f"drain-{processes}"
        return result

    # -- reporting -------------------------------------------------------------------------------

    def run(self, only: list[str]) -> list[dict[str, Any]]:
        """The chosen workloads, in the order of the issue's list."""
        results: list[dict[str, Any]] = []
        if "enqueue" in only:
            results += [self.enqueue_per_transaction(), self.enqueue_bulk()]
        one: dict[str, Any] | None = None
        if "drain" in only:
            one = self.drain(1)
            results += [one, self.drain(2)]
        if "latency" in only:
            from benchmarks.latency import latency

            results.append(latency(self))
        if "workflows" in only:
            from benchmarks.workflows_workload import workflow_statements, workflows

            results += [workflows(self, 1), workflows(self, 2), workflow_statements(self)]
        if "backlog" in only:
            # Compared with the empty-table rate of this run, measured here if drain was skipped.
            one = one or self.drain(1)
            from benchmarks.backlog import backlog

            results.append(backlog(self, one["library"]["median"]))
        if "flow" in only:
            from benchmarks.flow import flow_control

            results += flow_control(self)
        if "logs" in only:
            from benchmarks.log_cost import log_cost

            results += log_cost(self)
        if "metrics" in only:
            from benchmarks.scrape_cost import scrape_cost

            results += scrape_cost(self)
        return results


WORKLOADS = ("enqueue", "drain", "latency", "workflows", "backlog", "flow", "logs", "metrics")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every N (default 1).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per figure; medians are shown.")
    parser.add_argument("--json", type=Path, default=None, help="Write the results here.")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"Comma-separated workloads to run (default all: {','.join(WORKLOADS)}).",
    )
    parser.add_argument(
        "--peers",
        default=",".join(SPECS),
        help=f"Comma-separated peers to run beside the library, or 'none' (default all: "
        f"{','.join(SPECS)}); each is skipped with a note if its package is not importable.",
    )
    parser.add_argument(
        "--peers-python",
        default=None,
        help="The interpreter the peers run with, in a virtualenv of their own (default: "
        "BENCH_PEERS_PYTHON, else this one).",
    )
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    peer_names = [name.strip() for name in args.peers.split(",") if name.strip()]
    peer_names = [] if peer_names == ["none"] else peer_names
    if sorted(set(peer_names) - set(SPECS)):
        parser.error(f"unknown peer(s) in {args.peers!r}; choose from {', '.join(SPECS)}, none")
    # The peers take part in these workloads only.
    if not set(only) & {"enqueue", "drain", "latency", "workflows"}:
        peer_names = []

    server_url, url = migrated_database()
    bench = Bench(url, args.scale, args.repeat)
    bench.raw.execute("CREATE TABLE bench_latency (n int, started float8)")
    bench.raw.execute(
        "CREATE TABLE bench_drain (first_claim float8, last_completion float8, jobs int)"
    )
    try:
        if peer_names:
            bench.peers = Peers(
                server_url, peers_python(args.peers_python), peer_names, bench.commands
            )
        results = bench.run(only)
        report = {
            "scale": args.scale,
            "repeat": args.repeat,
            **environment(bench.raw),
            "peers": bench.peers.describe() if bench.peers else {},
            "results": results,
            "comparison": comparison(results),
            "commands": bench.commands,
        }
    finally:
        bench.raw.close()
        from django.db import connections

        connections.close_all()
        drop_database(server_url, url)
        if bench.peers:
            bench.peers.close()
    print_table(results)
    print_comparison(report["comparison"], report["peers"])
    plans = [r["claim_plan"] for r in results if "claim_plan" in r]
    if plans:
        print("\nclaim plan behind the backlog:\n  " + "\n  ".join(plans[0]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
