"""run.py runs its contenders in interleaved rounds (benchmarks/rounds.py): a change in the
machine during a run falls on all of them alike, not on whichever ran last."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.rounds import interleaved, spread


def test_each_round_runs_every_contender_once_in_alternating_order() -> None:
    ran: list[str] = []

    def contender(name: str, figure: float) -> Callable[[], float]:
        def run() -> float:
            ran.append(name)
            return figure + len(ran)

        return run

    resets: list[int] = []
    runs = interleaved(
        {"library": contender("library", 100), "baseline": contender("baseline", 200),
         "peer:x": contender("peer:x", 300)},
        4,
        before=lambda: resets.append(len(ran)),
    )  # fmt: skip
    assert ran == [
        *("library", "baseline", "peer:x"),
        *("peer:x", "baseline", "library"),
        *("library", "baseline", "peer:x"),
        *("peer:x", "baseline", "library"),
    ]
    # The queue is emptied before every run, never between a run and its figure.
    assert resets == list(range(12))
    assert runs["library"] == [101, 106, 107, 112]
    assert runs["peer:x"] == [303, 304, 309, 310]


def test_a_contenders_figures_spread_around_their_median() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([4, 1]) == {"median": 2.5, "min": 1.0, "max": 4.0}
