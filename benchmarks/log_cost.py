"""Workload 7 of run.py: what the worker's log lines cost a drain (issue 16).

N due no-op jobs drained by one ``manage.py pgjobs_worker --burst`` process as a user types it
(no ``--concurrency``, nothing in ``LOGGING`` for pgjobs, so the worker logs to stderr itself),
at three verbosities:

- the default (``-v 1``): the worker's own life and a summary a minute, no line per job;
- ``-v 0``: warnings and errors only, the floor;
- ``-v 2``: a line per job.

The worker's stdout and stderr go to a file, as under a process manager that keeps a log. The
three runs of each repeat are interleaved (in a rotating order) so that a machine's drift
touches them alike. Ratios are to ``-v 0``: of the medians, and the median of each repeat's
ratio to its own ``-v 0`` run. The target (issue 16): the default within 5%.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.commands import ROOT
from benchmarks.report import interleaved

if TYPE_CHECKING:
    from benchmarks.run import Bench

# Label and the options a user adds to ``pgjobs_worker --burst`` for it.
VERBOSITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default verbosity", ()),
    ("-v 0", ("-v", "0")),
    ("-v 2", ("-v", "2")),
)


def _drain(bench: Bench, count: int, options: tuple[str, ...], log: Path) -> tuple[float, int]:
    """One drain; its rate (from the rows) and how many lines the worker wrote."""

    bench.copy_jobs(count)
    bench.raw.execute("VACUUM ANALYZE pgjobs_job_queue")
    command = [sys.executable, "-m", "django", "pgjobs_worker", "--burst", *options]
    if command not in bench.commands:
        bench.commands.append(command)
    with log.open("wb") as out:
        proc = subprocess.run(  # noqa: S603 (our own command line)
            command, cwd=ROOT, env=bench.env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker failed: {command!r}\n{text[-2000:]}")
    return bench.drain_rate(), len(text.splitlines())


def log_cost(bench: Bench) -> list[dict[str, Any]]:
    count = bench.n(20_000)
    rates: dict[str, list[float]] = {label: [] for label, _ in VERBOSITIES}
    lines: dict[str, list[int]] = {label: [] for label, _ in VERBOSITIES}
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "worker.log"
        for repeat in range(bench.repeat):
            turn = repeat % len(VERBOSITIES)
            for label, options in VERBOSITIES[turn:] + VERBOSITIES[:turn]:
                bench.reset()
                rate, written = _drain(bench, count, options, log)
                rates[label].append(rate)
                lines[label].append(written)

    def figures(label: str) -> dict[str, Any]:
        runs = rates[label]
        return {
            "median": statistics.median(runs),
            "min": min(runs),
            "max": max(runs),
            "runs": runs,
            "lines_written": statistics.median(lines[label]),
        }

    floor = figures("-v 0")
    results = []
    for label in ("default verbosity", "-v 2"):
        ours = figures(label)
        results.append(
            interleaved(
                f"drain {count} jobs, 1 process, {label} / -v 0", count, ours, floor,
                "the same worker at -v 0, interleaved",
            )
        )  # fmt: skip
    return results
