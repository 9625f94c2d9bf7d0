"""Runs of several contenders, interleaved, and the spread of their figures.

A round runs each contender once, in the reverse order every other round. So a change in the
machine over a run (another tenant's load, the server's caches, autovacuum) falls on all of
them alike. Run one contender's repeats after another's, the last to run took the whole of it:
the same code's ratio to a peer moved by a third from one run to the next (benchmarks/README.md,
the thirteenth round).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any


def interleaved(
    contenders: Mapping[str, Callable[[], Any]], repeat: int, *, before: Callable[[], object]
) -> dict[str, list[Any]]:
    """Each contender's ``repeat`` runs, by name, in interleaved rounds; ``before`` runs
    before each run (the benchmark empties its queue there)."""
    runs: dict[str, list[Any]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_number in range(repeat):
        for name in names if round_number % 2 == 0 else reversed(names):
            before()
            runs[name].append(contenders[name]())
    return runs


def spread(figures: list[Any]) -> dict[str, float]:
    """The median of a contender's figures, their least and greatest beside it."""
    values = [float(figure) for figure in figures]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
