"""What run.py prints and writes: the machine and server it ran on, and its tables."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import psycopg


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    index = min(round(p / 100 * (len(values) - 1)), len(values) - 1)
    return values[index]


def environment(raw: psycopg.Connection[Any]) -> dict[str, Any]:
    import django

    settings = {
        name: raw.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
        for name in (
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_connections",
            "autovacuum",
            "autovacuum_naptime",
            "plan_cache_mode",
        )
    }
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "versions": {"django": django.get_version(), "psycopg": psycopg.__version__},
        "postgresql": settings,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'workload':<62} {'library':>12} {'baseline':>12} {'ratio':>7}")
    for r in results:
        if "handler_statements" in r:
            ours, theirs = r["statements_per_step_unbatched"], r["baseline_statements_per_step"]
            label = "statements per step, one workflow with its job's claim/completion"
            print(f"{label:<62} {ours:>12.2f} {theirs:>12.2f} {ours / theirs:>7.2f}")
            label = "  of which the workflow handler's (load, checkpoints, finish)"
            print(f"{label:<62} {r['handler_statements_per_step']:>12.2f}")
            continue
        if "library_p50_ms" in r:
            for key in ("p50", "p95", "p99"):
                lib, base = r[f"library_{key}_ms"], r[f"baseline_{key}_ms"]
                print(
                    f"{r['name'] + ' ' + key:<62} {lib:>10.1f}ms {base:>10.1f}ms {lib / base:>7.2f}"
                )
            continue
        lib = r["library"]["median"]
        if r["unit"] == "ratio":
            print(f"{r['name']:<62} {lib:>12.3f} {'(limit)':>12} {lib:>7.3f}")
            continue
        base = r.get("baseline", {}).get("median")
        ratio = r.get("ratio") or r.get("ratio_to_empty_table")
        base_text = f"{base:>12,.0f}" if base else f"{'(vs empty)':>12}"
        print(f"{r['name']:<62} {lib:>12,.0f} {base_text} {ratio or 0:>7.2f}")
        if "lines_written" in r["library"]:
            print(
                f"{'  lines the worker wrote, this / -v 0':<62} "
                f"{r['library']['lines_written']:>12,.0f} {r['baseline']['lines_written']:>12,.0f}"
            )
            paired = "  median of each repeat's ratio to its -v 0 run"
            print(f"{paired:<62} {'':>25} {r['paired_ratio']:>7.2f}")
        if "steps" in r:
            lib_steps, base_steps = r["library"]["steps_per_s"], r["baseline"]["steps_per_s"]
            print(f"{'  the same, in steps/s':<62} {lib_steps:>12,.0f} {base_steps:>12,.0f}")
            print(
                f"{'  transactions per step (pg_stat_database)':<62} "
                f"{r['library']['transactions_per_step']:>12.2f} "
                f"{r['baseline']['transactions_per_step']:>12.2f}"
            )
