"""run.py's side of the peers: which can run, their scratch databases, their figures.

Each peer runs in processes of its own, with the interpreter ``--peers-python`` names (else
``BENCH_PEERS_PYTHON``, else run.py's own), so the peers can be installed in a virtualenv apart
from the project's (they are no dependency of it). A peer whose package that interpreter cannot
import is skipped with a printed note; one that fails is reported as failed and the run goes on.
Every peer gets its own scratch database on run.py's server, ``pgjobs_bench_peers_<peer>_<pid>``,
made and migrated (its own way) at the start and dropped at the end; the database travels to
its processes in ``BENCH_DATABASE_URL``, as for our workers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Spec:
    package: str  # what must be importable
    module: str  # benchmarks.peers.<module>
    workloads: tuple[str, ...]


SPECS: dict[str, Spec] = {
    "pgqueuer": Spec("pgqueuer", "pgqueuer_peer", ("enqueue", "drain", "latency")),
    "procrastinate": Spec("procrastinate", "procrastinate_peer", ("enqueue", "drain", "latency")),
    "dbos": Spec("dbos", "dbos_peer", ("workflows",)),
}


def as_url(conninfo: Mapping[str, object]) -> str:
    """A ``postgresql://`` URL of libpq's parameters: asyncpg and SQLAlchemy (DBOS) read only
    URLs, where psycopg and run.py's ``DATABASE_URL`` also take ``key=value`` strings."""
    params = {key: str(value) for key, value in conninfo.items() if value is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    if password is not None:
        user += ":" + quote(password, safe="")
    host = params.pop("host", "")
    # A socket directory, or several hosts, stays a parameter; a plain host goes in the netloc.
    netloc_host = "" if host.startswith("/") or "," in host else host
    if netloc_host != host:
        params["host"] = host
    port = params.pop("port", "")
    netloc = (user + "@" if user else "") + netloc_host + (":" + port if port else "")
    dbname = quote(params.pop("dbname", ""), safe="")
    query = "?" + urlencode(params) if params else ""
    return f"postgresql://{netloc}/{dbname}{query}"


def peers_python(option: str | None) -> str:
    return option or os.environ.get("BENCH_PEERS_PYTHON") or sys.executable


@dataclass
class Peer:
    name: str
    spec: Spec
    url: str = ""
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


class Peers:
    def __init__(self, server_url: str, python: str, names: list[str], commands: list[list[str]]):
        self.server_url = server_url
        self.python = python
        self.commands = commands  # run.py's list of child command lines, for its report
        self.ready: dict[str, Peer] = {}
        self.skipped: dict[str, str] = {}
        self.failures: list[str] = []
        for name in names:
            spec = SPECS[name]
            if not self.importable(spec.package):
                self.note(name, f"skipped: {spec.package} is not importable by {python}")
                continue
            peer = Peer(name, spec, url=self.create_database(name))
            self.ready[name] = peer  # before setup, so close() drops its database either way
            try:
                described = self.run(peer, "setup")
            except RuntimeError as failed:
                del self.ready[name]
                self.drop_database(peer.url)
                self.note(name, f"skipped: its setup failed ({failed})")
                continue
            peer.version, peer.settings = described["version"], described["settings"]
            print(f"peer {name} {peer.version}: {json.dumps(peer.settings)}", flush=True)

    def note(self, name: str, why: str) -> None:
        self.skipped[name] = why
        print(f"peer {name}: {why}", flush=True)

    def importable(self, package: str) -> bool:
        found = subprocess.run(  # noqa: S603 (our own command line)
            [self.python, "-c", f"import {package}"], capture_output=True, check=False
        )
        return found.returncode == 0

    def create_database(self, name: str) -> str:
        dbname = f"pgjobs_bench_peers_{name}_{os.getpid()}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname}")
            conn.execute(f"CREATE DATABASE {dbname}")
        params = {k: str(v) for k, v in conninfo_to_dict(self.server_url).items() if v}
        params["dbname"] = dbname
        return as_url(params)

    def drop_database(self, url: str) -> None:
        dbname = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")

    def close(self) -> None:
        for peer in self.ready.values():
            self.drop_database(peer.url)

    def run(self, peer: Peer, workload: str, count: int = 0, processes: int = 1) -> dict[str, Any]:
        """One run of one workload, in the peer's own process; its JSON answer."""
        command = [self.python, "-m", f"benchmarks.peers.{peer.spec.module}", workload]
        if workload != "setup":
            command += ["--count", str(count), "--processes", str(processes)]
        if command not in self.commands:
            self.commands.append(command)
        env = {**os.environ, "BENCH_DATABASE_URL": peer.url, "PYTHONPATH": str(ROOT)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        try:
            proc = subprocess.run(  # noqa: S603 (our own command line)
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, timeout=1800, check=False
            )
        except subprocess.TimeoutExpired as late:
            raise RuntimeError(f"{workload} timed out") from late
        lines = proc.stdout.decode(errors="replace").strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{workload} exited with {proc.returncode}")
        answer: dict[str, Any] = json.loads(lines[-1])
        return answer

    def contenders(
        self, workload: str, count: int, processes: int = 1
    ) -> dict[str, Callable[[], dict[str, Any] | None]]:
        """One run of ``workload`` for each ready peer that has it, by peer, for the rounds that
        interleave them with the library's runs (run.py's ``Bench.rounds``). A peer that fails
        is noted and answers None from then on, without running again."""
        failed: set[str] = set()

        def once(name: str, peer: Peer) -> Callable[[], dict[str, Any] | None]:
            def run() -> dict[str, Any] | None:
                if name in failed:
                    return None
                try:
                    return self.run(peer, workload, count, processes)
                except RuntimeError as error:
                    message = f"peer {name}: {workload} ({processes} process(es)) failed: {error}"
                    print(message, flush=True)
                    self.failures.append(message)
                    failed.add(name)
                    return None

            return run

        return {
            name: once(name, peer)
            for name, peer in self.ready.items()
            if workload in peer.spec.workloads
        }

    def figures(
        self, runs: Mapping[str, Sequence[dict[str, Any] | None]]
    ) -> dict[str, dict[str, Any]]:
        """Each peer's medians of its ``runs`` (their JSON answers; min and max beside the
        rate's), keyed by peer; a peer with a failed run is left out (it was noted)."""
        results: dict[str, dict[str, Any]] = {}
        for name, answers in runs.items():
            if not answers or None in answers:
                continue  # it failed in a round (noted then)
            done = cast(list[dict[str, Any]], list(answers))
            results[name] = {"version": self.ready[name].version, "runs": done}
            for key in done[0]:
                values = [float(run[key]) for run in done]
                results[name][key] = statistics.median(values)
            if "rate" in done[0]:
                rates = [float(run["rate"]) for run in done]
                results[name].update(median=statistics.median(rates), min=min(rates))
                results[name]["max"] = max(rates)
        return results

    def describe(self) -> dict[str, Any]:
        """For the JSON report: who ran, in which version, with which settings; who did not."""
        return {
            "python": self.python,
            "ran": {
                p.name: {"version": p.version, "settings": p.settings} for p in self.ready.values()
            },
            "skipped": self.skipped,
            "failures": self.failures,
        }
