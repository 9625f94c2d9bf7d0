"""What run.py prints and writes: the machine and server it ran on, and its tables."""

from __future__ import annotations

import os
import platform
import statistics
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


def interleaved(
    name: str, count: int, ours: dict[str, Any], baseline: dict[str, Any], baseline_is: str
) -> dict[str, Any]:
    """A drain's figures against the same worker run beside it in other settings: the ratio of
    the medians, and the median of each repeat's ratio to the run beside it (what drifts between
    repeats, a busy machine, cancels out of each pair)."""
    return {
        "name": name,
        "unit": "jobs/s",
        "n": count,
        "library": ours,
        "baseline": baseline,
        "ratio": ours["median"] / baseline["median"],
        "paired_ratio": statistics.median(
            a / b for a, b in zip(ours["runs"], baseline["runs"], strict=True)
        ),
        "baseline_is": baseline_is,
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
            if "library_defaults_p50_ms" in r:
                for key in ("p50", "p95", "p99"):
                    lib, base = r[f"library_defaults_{key}_ms"], r[f"baseline_{key}_ms"]
                    label = f"  the same, the worker at its defaults, {key}"
                    print(f"{label:<62} {lib:>10.1f}ms {base:>10.1f}ms {lib / base:>7.2f}")
            continue
        lib = r["library"]["median"]
        if r.get("scrape_alone"):
            gauges = r["library"]["gauges_ms"]
            print(f"{r['name']:<62} {lib:>10.1f}ms {'':>12}")
            label = "  of which the database gauges (the rest: health, format)"
            print(f"{label:<62} {gauges:>10.1f}ms")
            continue
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
        if "scrapes_per_drain" in r["library"]:
            ours = r["library"]
            paired = "  median of each repeat's ratio to its unscraped run"
            print(f"{paired:<62} {'':>25} {r['paired_ratio']:>7.2f}")
            made = f"{ours['scrapes_per_drain']:,.0f} during each drain"
            if ours["scrape_ms"] is not None:
                made += f", {ours['scrape_ms']:.1f} ms each ({ours['gauges_ms']:.1f} ms gauges)"
            print(f"{'  scrapes':<62} {made:>38}")
        if "library_defaults" in r and base:
            at_defaults = r["library_defaults"]["median"]
            label = "  the same, the worker at its defaults"
            print(f"{label:<62} {at_defaults:>12,.0f} {base:>12,.0f} {at_defaults / base:>7.2f}")
        if "baseline_delete" in r:
            deleting = r["baseline_delete"]["median"]
            label = "  library / raw SQL deleting finished rows"
            print(f"{label:<62} {lib:>12,.0f} {deleting:>12,.0f} {lib / deleting:>7.2f}")
        if "steps" in r:
            lib_steps, base_steps = r["library"]["steps_per_s"], r["baseline"]["steps_per_s"]
            print(f"{'  the same, in steps/s':<62} {lib_steps:>12,.0f} {base_steps:>12,.0f}")
            print(
                f"{'  transactions per step (pg_stat_database)':<62} "
                f"{r['library']['transactions_per_step']:>12.2f} "
                f"{r['baseline']['transactions_per_step']:>12.2f}"
            )


# -- the comparison: every product side by side, with ratios ------------------------------------

# The workloads the peers take part in: (the result's key, the column's heading).
COLUMNS = (
    ("enqueue", "enqueue 1/txn"),
    ("drain-1", "drain, 1 proc"),
    ("drain-2", "drain, 2 proc"),
    ("latency", "p50 / p99 ms"),
    ("workflows-1", "wf/s, 1 proc"),
    ("workflows-2", "wf/s, 2 proc"),
)
# Our rows and the baselines': (label, the key of its figures in a result).
OURS = (
    ("pgjobs, defaults", "library_defaults"),
    ("pgjobs, tuned", "library"),
)
BASELINES = (
    ("raw SQL, keeps rows", "baseline"),
    ("raw SQL, deletes rows", "baseline_delete"),
)

# What each of those rows is, printed under the table.
LEGEND = {
    "pgjobs, defaults": "`pgjobs_worker --burst` as a user types it (no --concurrency, default "
    "verbosity, no PGJOBS setting); for the latency `pgjobs_worker`",
    "pgjobs, tuned": "`pgjobs_worker -v 0 --burst --concurrency 8`; for the latency "
    "`--concurrency 4 --poll-interval 60 --no-scheduler`",
    "raw SQL, keeps rows": "baseline.py: claim a batch, UPDATE it to completed; INSERT + COMMIT",
    "raw SQL, deletes rows": "baseline.py drain-delete: the same claim, DELETE the batch",
}

Cell = float | tuple[float, float]


def _cell(result: dict[str, Any], source: str) -> Cell | None:
    """One product's median in one workload: a rate, or (p50, p99) for the latency."""
    if result["key"] == "latency":
        if f"{source}_p50_ms" not in result:
            return None
        return (result[f"{source}_p50_ms"], result[f"{source}_p99_ms"])
    if result["key"] == "enqueue" and source == "library_defaults":
        source = "library"  # enqueue() is the same call whatever the worker's settings
    figures = result.get(source)
    return float(figures["median"]) if figures else None


def _peer_cell(figures: dict[str, Any], key: str) -> Cell:
    if key == "latency":
        return (float(figures["p50"]), float(figures["p99"]))
    return float(figures["median"])


def _ratio(ours: Cell, other: Cell) -> Cell:
    if isinstance(ours, tuple) and isinstance(other, tuple):
        return (ours[0] / other[0], ours[1] / other[1])
    assert isinstance(ours, float)
    assert isinstance(other, float)
    return ours / other


def comparison(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every product's medians in the workloads the peers share, and the ratios of ours (at its
    defaults and tuned) to each other: to both raw-SQL baselines and to every peer."""
    by_key = {r["key"]: r for r in results if r.get("key")}
    rows: dict[str, dict[str, Cell]] = {}
    for label, source in OURS + BASELINES:
        rows[label] = {}
        for key, _ in COLUMNS:
            cell = _cell(by_key[key], source) if key in by_key else None
            if cell is not None:
                rows[label][key] = cell
    for key, _ in COLUMNS:
        for name, figures in by_key.get(key, {}).get("peers", {}).items():
            rows.setdefault(f"{name} {figures['version']}", {})[key] = _peer_cell(figures, key)
    ratios: dict[str, dict[str, Cell]] = {}
    for ours, _ in OURS:
        for other, cells in rows.items():
            if other in dict(OURS):
                continue
            shared = [k for k in rows[ours] if k in cells]
            ratios[f"{ours} / {other}"] = {k: _ratio(rows[ours][k], cells[k]) for k in shared}
    return {"columns": dict(COLUMNS), "rows": rows, "ratios": ratios}


def _text(cell: Cell | None, ratio: bool = False) -> str:
    if cell is None:
        return ""
    if isinstance(cell, tuple):
        return f"{cell[0]:.2f} / {cell[1]:.2f}" if ratio else f"{cell[0]:.1f} / {cell[1]:.1f}"
    return f"{cell:.2f}" if ratio else f"{cell:,.0f}"


def print_comparison(table: dict[str, Any], peers: dict[str, Any]) -> None:
    """The medians side by side, then the ratios, and what each row is."""
    columns: dict[str, str] = table["columns"]
    if not any(table["rows"].values()):
        return
    width = max(len(label) for label in (*table["rows"], *table["ratios"]))
    head = "".join(f"{title:>15}" for title in columns.values())
    print(f"\n{'side by side (medians)':<{width}}{head}")
    for label, cells in table["rows"].items():
        if cells:
            print(f"{label:<{width}}" + "".join(f"{_text(cells.get(k)):>15}" for k in columns))
    print("\nratios, ours / theirs (above 1: ours faster; for the latency, below 1: ours quicker)")
    for label, cells in table["ratios"].items():
        if cells:
            text = "".join(f"{_text(cells.get(k), ratio=True):>15}" for k in columns)
            print(f"{label:<{width}}{text}")
    for label, what in LEGEND.items():
        print(f"  {label}: {what}")
    for name, ran in peers.get("ran", {}).items():
        print(f"  {name} {ran['version']}: {ran['settings']}")
    for name, why in peers.get("skipped", {}).items():
        print(f"peer {name}: {why}")
    for failure in peers.get("failures", []):
        print(failure)
