"""How ``pgjobs queues``, ``queue-limits`` and the admin describe a queue's limits (no database)."""

from __future__ import annotations

from django_pgjobs.observability.queues import describe_limits


def test_a_rate_of_one_start_is_said_in_the_singular() -> None:
    """It said "at most 1 starts per 15s" (new-user trial)."""
    assert describe_limits({"rate_limit": 1, "rate_period": 15.0}) == "at most 1 start per 15s"
    assert describe_limits({"partition_rate_limit": 1}) == "at most 1 start per key per 1s"
    assert describe_limits({"rate_limit": 1000, "partition_rate_limit": 2, "rate_period": 60}) == (
        "at most 1,000 starts per 60s, at most 2 starts per key per 60s"
    )
