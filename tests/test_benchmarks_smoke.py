"""The benchmark runs end to end at a tiny scale. It asserts that every workload reports a
figure, never how fast anything is: speed is measured in benchmarks/, not in tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from benchmarks.scrape_cost import Scraper
from tests.helpers import ROOT, database_conninfo, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


# The test server trusts local connections, so any password connects: one that must never
# appear on a child's command line (ps shows those to every user) nor in the output.
PASSWORD = "bench-s3cret"


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": f"{database_conninfo()} password={PASSWORD}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # The peers run with this interpreter unless a test names another.
    env.pop("BENCH_PEERS_PYTHON", None)
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


# The peers' packages (benchmarks/peers/), by peer. They are no test dependency of the project.
PEER_PACKAGES = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate", "dbos": "dbos"}


def importable(python: str, package: str) -> bool:
    found = subprocess.run([python, "-c", f"import {package}"], capture_output=True, check=False)
    return found.returncode == 0


def leftover_peer_databases() -> list[str]:
    with psycopg.connect(database_conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgjobs\\_bench\\_peers\\_%'"
        ).fetchall()
    return [row[0] for row in rows]


def test_benchmark_runs_at_a_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_script("run.py", "--scale", "0.005", "--repeat", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["results"]]
    assert any(n.startswith("enqueue, one job per transaction") for n in names)
    assert any(n.startswith("drain") and "2 process" in n for n in names)
    assert any(n.startswith("latency") for n in names)
    flows = [r for r in report["results"] if r["name"].startswith("workflows")]
    assert len(flows) == 2
    for flow in flows:
        assert flow["library"]["steps_per_s"] > 0
        assert flow["baseline"]["steps_per_s"] > 0
    [statements] = [r for r in report["results"] if "handler_statements" in r]
    assert statements["checkpoint_statements"] == statements["steps"]
    [backlog] = [r for r in report["results"] if "backlog" in r["name"]]
    assert backlog["claim_plan"]
    assert any("pgjobs_job_claim" in line for line in backlog["claim_plan"])
    flow = [r for r in report["results"] if "limit" in r["name"] or "partition" in r["name"]]
    assert len(flow) == 3 and all(r["ratio"] > 0 for r in flow)
    logs = {r["name"].split(", ")[-1]: r for r in report["results"] if r["name"].endswith("-v 0")}
    assert set(logs) == {"default verbosity / -v 0", "-v 2 / -v 0"}
    per_job = logs["-v 2 / -v 0"]
    # -v 2 writes a line per job; -v 0 nothing at all; the default a few about the worker.
    assert per_job["library"]["lines_written"] >= per_job["n"]
    assert per_job["baseline"]["lines_written"] == 0
    assert 0 < logs["default verbosity / -v 0"]["library"]["lines_written"] < 10
    scraped = {
        r["name"].split(", ")[-1]: r for r in report["results"] if r["name"].endswith("none")
    }
    assert set(scraped) == {"a scrape every 15 s / none", "a scrape every 1 s / none"}
    assert all(r["ratio"] > 0 and r["library"]["scrapes_per_drain"] >= 0 for r in scraped.values())
    for result in report["results"]:
        if "library" in result:
            assert result["library"]["median"] > 0
    assert report["postgresql"]["server_version"]
    assert report["postgresql"]["autovacuum"] in ("on", "off")
    # Beside the tuned worker: the worker at its defaults, and the baseline that deletes.
    for drain in (r for r in report["results"] if r.get("key", "").startswith("drain-")):
        assert drain["library_defaults"]["median"] > 0
        assert drain["baseline_delete"]["median"] > 0
    [latency] = [r for r in report["results"] if r.get("key") == "latency"]
    assert latency["library_defaults_p50_ms"] > 0
    assert all(f["library_defaults"]["steps_per_s"] > 0 for f in flows)
    rows = report["comparison"]["rows"]
    assert set(rows["pgjobs, defaults"]) == {
        "enqueue", "drain-1", "drain-2", "latency", "workflows-1", "workflows-2",
    }  # fmt: skip
    assert set(rows["raw SQL, deletes rows"]) == {"drain-1", "drain-2"}
    assert report["comparison"]["ratios"]["pgjobs, defaults / raw SQL, deletes rows"]["drain-2"] > 0
    # The peers this interpreter cannot import (the test venvs have none) are skipped, noted.
    absent = [p for p, pkg in PEER_PACKAGES.items() if not importable(sys.executable, pkg)]
    assert sorted(report["peers"]["skipped"]) == sorted(absent)
    for peer in absent:
        assert f"peer {peer}: skipped: {PEER_PACKAGES[peer]} is not importable" in proc.stdout
    # Every child process got the password-bearing database through its environment.
    commands = report["commands"]
    assert any("baseline.py" in " ".join(c) for c in commands)
    assert any("pgjobs_worker" in c for c in commands)
    # The worker at its defaults is the command as a user types it.
    assert [sys.executable, "-m", "django", "pgjobs_worker", "--burst"] in [
        c[1:] for c in commands if c[0] == "BENCH_LIBRARY_DEFAULTS=1"
    ]
    assert not [c for c in commands if any(PASSWORD in arg for arg in c)]
    assert "password=***" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr


def test_benchmark_runs_beside_the_peers(tmp_path: Path) -> None:
    """pgqueuer, procrastinate and DBOS in their own processes and databases, with the
    interpreter BENCH_PEERS_PYTHON names (a virtualenv of their own), else this one."""
    python = os.environ.get("BENCH_PEERS_PYTHON") or sys.executable
    missing = [pkg for pkg in PEER_PACKAGES.values() if not importable(python, pkg)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} importable by {python} (BENCH_PEERS_PYTHON)")
    out = tmp_path / "bench.json"
    proc = run_script("run.py", "--scale", "0.005", "--repeat", "1", "--peers-python", python,
                      "--only", "enqueue,drain,latency,workflows", "--json", str(out),
                      timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert sorted(report["peers"]["ran"]) == sorted(PEER_PACKAGES)
    assert report["peers"]["skipped"] == {}
    assert report["peers"]["failures"] == []
    by_key = {r["key"]: r for r in report["results"] if "key" in r}
    expected = {
        "enqueue": {"pgqueuer", "procrastinate"},
        "drain-1": {"pgqueuer", "procrastinate"},
        "drain-2": {"pgqueuer", "procrastinate"},
        "latency": {"pgqueuer", "procrastinate"},
        "workflows-1": {"dbos"},
        "workflows-2": {"dbos"},
    }
    for key, peers in expected.items():
        assert set(by_key[key]["peers"]) == peers, key
        for figures in by_key[key]["peers"].values():
            assert figures["p50"] > 0 if key == "latency" else figures["median"] > 0
    assert all(f["steps_per_s"] > 0 for f in (by_key["workflows-1"]["peers"]["dbos"],))
    ratios = report["comparison"]["ratios"]
    for peer, ran in report["peers"]["ran"].items():
        assert ran["version"] and ran["settings"]
        assert f"pgjobs, defaults / {peer} {ran['version']}" in ratios
        assert f"pgjobs, tuned / {peer} {ran['version']}" in ratios
    # Their databases too travel in the environment only, and are gone afterwards.
    assert not [c for c in report["commands"] if any(PASSWORD in arg for arg in c)]
    assert PASSWORD not in proc.stdout + proc.stderr
    assert leftover_peer_databases() == []


def test_the_scraper_reads_the_database_at_each_interval() -> None:
    """Workload 8's scraper: each scrape reads the database (the cache dropped), its gauges'
    read a part of its time."""
    with Scraper(0.05) as scraper:
        wait_for(lambda: len(scraper.scrapes) >= 3, what="three scrapes")
    assert len(scraper.scrapes) >= 3
    starts = [started for started, _, _ in scraper.scrapes]
    assert starts == sorted(starts)
    assert all(0 < gauges <= took for _, took, gauges in scraper.scrapes)


def test_only_runs_the_workloads_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_script("run.py", "--scale", "0.005", "--repeat", "1", "--only", "latency",
                      "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [only] = json.loads(out.read_text())["results"]
    assert only["name"].startswith("latency, commit to handler start")
    refused = run_script("run.py", "--only", "drain,speed")
    assert refused.returncode == 2 and "unknown workload(s) speed" in refused.stderr


def test_soak_runs_for_a_few_seconds(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = run_script("soak.py", "--seconds", "4", "--rate", "200", "--sample", "1",
                      "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["enqueued"] >= 200
    assert len(report["samples"]) >= 3
    # The worker ran beside the producer: jobs were completed while it enqueued.
    assert report["samples"][-1]["completed"] > 0


def test_flow_claim_measures_each_case(tmp_path: Path) -> None:
    out = tmp_path / "claim.json"
    proc = run_script("flow_claim.py", "--keys", "300", "--repeat", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["case"] for r in results] == ["started", "started, due", "running"]
    # The free keys' jobs start, past keys at their limit (300 busy keys are within the walk).
    assert all(r["claimed"] == 10 and r["claim_ms"] > 0 for r in results), results
    assert PASSWORD not in proc.stdout + proc.stderr


def test_pooled_measures_each_setup_through_a_real_pgbouncer(tmp_path: Path) -> None:
    if shutil.which("pgbouncer") is None and shutil.which("pgbouncer", path="/usr/sbin") is None:
        why = "needs pgbouncer (apt-get install pgbouncer)"
        if os.environ.get("PGJOBS_REQUIRE_PGBOUNCER"):
            pytest.fail(f"PGJOBS_REQUIRE_PGBOUNCER is set but {why}")
        pytest.skip(why)
    out = tmp_path / "pooled.json"
    proc = run_script("pooled.py", "--repeat", "1", "--count", "5", "--rounds", "2",
                      "--idle-seconds", "0", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert len(results) == 3
    assert all(r["start_p50_ms"] > 0 and r["send_to_result_p50_ms"] > 0 for r in results.values())
    assert PASSWORD not in proc.stdout + proc.stderr
