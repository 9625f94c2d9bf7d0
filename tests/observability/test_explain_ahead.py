"""What "why is this job not running?" says to a job with others ahead of it at a full limit."""

from __future__ import annotations

from datetime import UTC

import pytest
from django.db import transaction

from django_pgjobs import enqueue, explain_job
from django_pgjobs.observability.explain import Blocker
from django_pgjobs.queues import set_queue_limits
from tests.observability.test_explain import claim, live_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_behind_others_at_a_full_limit_is_told_how_many_go_first() -> None:
    """Trial: the 8th job of a key at its limit was told "It starts when one of them ends"."""
    live_worker()
    set_queue_limits("part", partition_concurrency=1)
    with transaction.atomic():
        ids = [enqueue("test.record", {"n": n}, queue="part", partition_key="c") for n in range(4)]
    assert claim() == ids[:1]
    said = explain_job(ids[3])
    assert said.blocker is Blocker.PARTITION_CONCURRENCY
    assert "2 due jobs ahead of it start first, each when one of them ends" in said.message
    assert "It starts when one of them ends." in explain_job(ids[1]).message
    # One ahead: "starts", not "start" (a new user's trial).
    assert (
        "1 due job ahead of it starts first, when one of them ends" in explain_job(ids[2]).message
    )


def test_a_short_rate_window_is_said_in_seconds_not_rounded_to_nothing() -> None:
    """Trial: a period of 0.2 s read "in the last 0:00:00"."""
    live_worker()
    set_queue_limits("q", rate_limit=1, rate_period=0.25)
    first, second = enqueue("test.record", queue="q"), enqueue("test.record", queue="q")
    assert claim() == [first]
    said = explain_job(second)
    assert said.blocker is Blocker.RATE_LIMITED
    assert "started 1 job in the last 0.25 s (its rate_limit is 1)" in said.message
    # The window's room is under a second away: said so, not "(in 0:00:00)".
    assert "0:00:00" not in said.message
    assert "(in under a second)" in said.message


def test_half_a_second_away_is_under_a_second_not_nothing() -> None:
    """rev26: round(0.5) is 0, so half a second would read "(in 0:00:00)"."""
    from datetime import datetime, timedelta

    from django_pgjobs.observability.explain_messages import _at

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert "(in under a second)" in _at(now + timedelta(seconds=0.5), now)
    assert "(under a second ago)" in _at(now - timedelta(seconds=0.5), now)
    assert "(in 0:00:01)" in _at(now + timedelta(seconds=0.6), now)


def test_a_fair_queue_at_its_concurrency_counts_the_jobs_its_turns_put_first() -> None:
    """Trial15b: three jobs of key C, then one of D, in a fair queue at its concurrency of 1:
    D's job was told "2 due jobs ahead of it" (claim order), yet it ran next (its turn)."""
    live_worker()
    set_queue_limits("fairq", fair=True, concurrency=1)
    with transaction.atomic():
        c = [enqueue("test.record", queue="fairq", partition_key="C") for _ in range(3)]
        d = enqueue("test.record", queue="fairq", partition_key="D")
    assert claim() == c[:1]
    said = explain_job(d)
    assert said.blocker is Blocker.QUEUE_CONCURRENCY
    assert "It is next in its queue's turns: it starts when one of them ends." in said.message
    said = explain_job(c[2])
    assert "2 due jobs come before it in its queue's turns" in said.message
    assert "they start first, as running jobs end; then it does." in said.message


def test_a_partitioned_queue_at_its_concurrency_names_the_walk_not_a_count() -> None:
    live_worker()
    set_queue_limits("keyed", partition_concurrency=1, concurrency=1)
    with transaction.atomic():
        first = enqueue("test.record", queue="keyed", partition_key="A")
        later = enqueue("test.record", queue="keyed", partition_key="B")
    assert claim() == [first]
    said = explain_job(later)
    assert said.blocker is Blocker.QUEUE_CONCURRENCY
    assert "a claim's walk of the queue's partition keys" in said.message
