from __future__ import annotations

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
    assert backoff_delay(10, base=1, cap=60, jitter=0.1, rand=lambda: 1.0) == 60
    assert backoff_delay(10, base=1, cap=60, jitter=0.1, rand=lambda: 0.0) == pytest.approx(54)
