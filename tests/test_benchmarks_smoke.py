"""The benchmark runs end to end at a tiny scale. It asserts that every workload reports a
figure, never how fast anything is: speed is measured in benchmarks/, not in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, database_conninfo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_benchmark_runs_at_a_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "DATABASE_URL": database_conninfo()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/run.py",
            "--scale",
            "0.005",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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
    backlog = report["results"][-1]
    assert "backlog" in backlog["name"] and backlog["claim_plan"]
    assert any("pgjobs_job_claim" in line for line in backlog["claim_plan"])
    for result in report["results"]:
        if "library" in result:
            assert result["library"]["median"] > 0
    assert report["postgresql"]["server_version"]
