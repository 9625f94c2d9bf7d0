#!/usr/bin/env python3
"""Wake-ups behind PgBouncer in transaction mode: straight to PostgreSQL, through PgBouncer with
POLL_ONLY, and through PgBouncer with LISTEN_DATABASE.

    python benchmarks/pooled.py --repeat 3 --json pooled.json

Starts a PgBouncer (the ``pgbouncer`` binary: apt-get install pgbouncer) in transaction mode in
front of DATABASE_URL's server (else an embedded PostgreSQL), on a scratch database it drops at
the end. For each setup, a worker process (4 threads, no scheduler) and, in this process,
producers and callers using the same settings:

- commit-to-handler-start of jobs enqueued 20 ms apart to the idle worker (as run.py's latency);
- a workflow waiting in ``recv()``: ``send()`` to ``get_result()`` returning in the caller;
- the idle worker's transactions per second (``pg_stat_database``, over ``--idle-seconds``).

Medians of ``--repeat`` runs; never asserts anything (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.commands import (
    child_environment,
    drop_database,
    migrated_database,
    worker_command,
)
from benchmarks.report import percentile

# The setups: the PGJOBS of the worker and of this process, and the worker's poll interval.
SETUPS: dict[str, tuple[dict[str, Any], float]] = {
    "direct (no pooler)": ({"POLL_INTERVAL": 60}, 60),
    "PgBouncer, POLL_ONLY, POLL_INTERVAL 0.5": (
        {"DATABASE": "pooled", "POLL_ONLY": True, "POLL_INTERVAL": 0.5},
        0.5,
    ),
    "PgBouncer, LISTEN_DATABASE direct": (
        {"DATABASE": "pooled", "LISTEN_DATABASE": "default", "POLL_INTERVAL": 60},
        60,
    ),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_pgbouncer(server_url: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    """PgBouncer in transaction mode: every database name to the same-named one on the server."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        raise SystemExit("needs pgbouncer (apt-get install pgbouncer)")
    server = conninfo_to_dict(server_url)
    target = {k: server[k] for k in ("host", "port", "user", "password") if server.get(k)}
    target.setdefault("port", 5432)
    config = directory / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n* = {' '.join(f'{k}={v}' for k, v in target.items())}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 10\n"
        "ignore_startup_parameters = extra_float_digits, options\n"
    )
    run_as: list[str] = []
    if os.geteuid() == 0:  # PgBouncer refuses root: the user that can reach the socket
        host = str(server.get("host") or "")
        run_as = ["-u", pwd.getpwuid(os.stat(host).st_uid).pw_name if host[:1] == "/" else "nobody"]
    log = open(directory / "pgbouncer.log", "wb")  # noqa: SIM115 (the child keeps it)
    argv = [binary, *run_as, str(config)]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def wait_until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(url: str, port: int) -> bool:
    try:
        with psycopg.connect(url, host="127.0.0.1", port=port, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class Setup:
    def __init__(
        self, raw: psycopg.Connection[Any], env: dict[str, str], args: argparse.Namespace
    ) -> None:
        self.raw = raw
        self.env = env
        self.count = args.count
        self.rounds = args.rounds
        self.idle_seconds = args.idle_seconds

    def measure(self, pgjobs: dict[str, Any], poll: float) -> dict[str, float]:
        from django.test import override_settings

        self.raw.execute(
            "TRUNCATE pgjobs_job_queue, pgjobs_workers, bench_latency, "
            "pgjobs_workflow_executions, pgjobs_workflow_steps, pgjobs_workflow_messages, "
            "pgjobs_workflow_events"
        )
        env = {**self.env, "BENCH_PGJOBS": json.dumps(pgjobs)}
        command = worker_command("--concurrency", "4", "--poll-interval", str(poll))
        proc = subprocess.Popen([*command, "--no-scheduler"], env=env)  # noqa: S603
        try:
            wait_until(lambda: self.scalar("SELECT count(*) FROM pgjobs_workers"), "the worker")
            time.sleep(0.5)  # let it reach its wait
            with override_settings(PGJOBS={**pgjobs}):
                figures = self.latency(pgjobs.get("DATABASE", "default"))
                figures.update(self.send_to_result())
            if self.idle_seconds:
                figures["idle_xact_per_s"] = self.idle_transactions(self.idle_seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        return figures

    def scalar(self, sql: str) -> Any:
        row = self.raw.execute(sql).fetchone()
        return row[0] if row else None

    def latency(self, alias: str) -> dict[str, float]:
        from django.db import transaction

        from django_pgjobs import enqueue

        committed: dict[int, float] = {}
        for n in range(self.count):
            with transaction.atomic(using=alias):
                enqueue("bench.latency", {"n": n}, using=alias)
            committed[n] = time.time()
            time.sleep(0.02)
        wait_until(lambda: self.scalar("SELECT count(*) FROM bench_latency") >= self.count, "jobs")
        rows = self.raw.execute("SELECT n, started FROM bench_latency").fetchall()
        waits = sorted((started - committed[n]) * 1000 for n, started in rows)
        return {"start_p50_ms": percentile(waits, 50), "start_p95_ms": percentile(waits, 95)}

    def send_to_result(self) -> dict[str, float]:
        from benchmarks.bench.workflows import receive_one
        from django_pgjobs import send, start_workflow

        took = []
        for n in range(self.rounds):
            handle = start_workflow(receive_one)
            wait_until(
                lambda: (
                    self.scalar(
                        "SELECT count(*) FROM pgjobs_workflow_steps WHERE status = 'waiting'"
                    )
                    > 0
                ),
                "recv() to wait",
            )
            began = time.monotonic()
            send(handle.workflow_id, n, "go")
            assert handle.get_result(timeout=60) == n
            took.append((time.monotonic() - began) * 1000)
            self.raw.execute("TRUNCATE pgjobs_workflow_steps")
        took.sort()
        return {"send_to_result_p50_ms": percentile(took, 50)}

    def idle_transactions(self, seconds: float) -> float:
        # An idle session reports its transactions up to 10 s late (PGSTAT_IDLE_INTERVAL): wait
        # that out first, or what the producers did is counted. Each read is a transaction of
        # its own (autocommit), so it sees fresh figures; the first is counted by the second.
        time.sleep(11)
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        before = self.scalar(query)
        time.sleep(seconds)
        return float((self.scalar(query) - before - 1) / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count", type=int, default=100, help="jobs per latency run")
    parser.add_argument("--rounds", type=int, default=20, help="send()s per run")
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="idle transactions read over (0: not)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    port = free_port()
    os.environ["BENCH_POOLER_PORT"] = str(port)
    server_url, url = migrated_database()
    with tempfile.TemporaryDirectory() as directory:
        bouncer = start_pgbouncer(server_url, port, Path(directory))
        raw = psycopg.connect(url, autocommit=True)
        try:
            wait_until(lambda: answers(url, port), "PgBouncer")
            raw.execute("CREATE TABLE IF NOT EXISTS bench_latency (n int, started float8)")
            env = {**child_environment(url), "BENCH_POOLER_PORT": str(port)}
            setup = Setup(raw, env, args)
            results = {}
            for name, (pgjobs, poll) in SETUPS.items():
                runs = [setup.measure(pgjobs, poll) for _ in range(args.repeat)]
                results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(name, json.dumps({k: round(v, 1) for k, v in results[name].items()}))
        finally:
            raw.close()
            bouncer.terminate()
            bouncer.wait(10)
            drop_database(server_url, url)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
