from __future__ import annotations

import random

import pytest

from django_pgjobs.jobs.retry import backoff_delay


def test_doubles_from_the_base() -> None:
    assert [backoff_delay(a, base=1, cap=3600) for a in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [backoff_delay(a, base=2.5, cap=3600) for a in (1, 2, 3)] == [2.5, 5, 10]


def test_is_capped_and_survives_huge_attempt_numbers() -> None:
    assert backoff_delay(10, base=1, cap=60) == 60
    assert backoff_delay(100_000, base=1, cap=60) == 60


def test_zero_base_means_retry_at_once() -> None:
    assert backoff_delay(5, base=0, cap=60) == 0


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 7.2), (0.5, 8.0), (1.0, 8.8)])
def test_jitter_spreads_within_the_fraction(rand: float, expected: float) -> None:
    assert backoff_delay(4, base=1, cap=60, jitter=0.1, rand=lambda: rand) == pytest.approx(
        expected
    )


def test_jitter_never_takes_a_delay_past_its_cap() -> None:
    """RETRY_DELAY_MAX promises that no retry waits longer: a capped delay is spread below it."""
    assert backoff_delay(10, base=1, cap=60, jitter=0.1, rand=lambda: 0.5) == 60
    assert backoff_delay(10, base=1, cap=60, jitter=0.1, rand=lambda: 1.0) == pytest.approx(54)
    assert backoff_delay(10, base=1, cap=60, jitter=0.1, rand=lambda: 0.0) == pytest.approx(54)
    assert backoff_delay(10, base=1, cap=60, jitter=0.1, rand=lambda: 0.75) == pytest.approx(57)


@pytest.mark.parametrize("attempt", [7, 10, 10_000])  # 64 s, just past 60 s, and far past it
def test_capped_delays_are_spread_below_the_cap_not_piled_on_it(attempt: int) -> None:
    # Clipped after the spread, about half of them waited exactly the cap: jobs failing together
    # at the cap came back together.
    draws = random.Random(5).random
    delays = [backoff_delay(attempt, base=1, cap=60, jitter=0.1, rand=draws) for _ in range(1000)]
    assert all(54 <= delay <= 60 for delay in delays)
    assert sum(delay == 60 for delay in delays) <= 1
    assert len(set(delays)) >= 990


def test_a_delay_near_the_cap_is_spread_without_landing_on_it() -> None:
    draws = random.Random(7).random
    delays = [backoff_delay(1, base=58, cap=60, jitter=0.1, rand=draws) for _ in range(1000)]
    assert min(delays) >= 58 * 0.9
    assert max(delays) <= 60
    assert sum(delay == 60 for delay in delays) <= 1
