"""advance(): deadlines move, the clock does not; one statement per table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_pgjobs import cancel_job, enqueue
from django_pgjobs.models import Job
from django_pgjobs.testing import advance, drain
from tests.testing.kinds import BOTH_KINDS


@BOTH_KINDS
def test_a_delayed_job_becomes_due_once_the_clock_has_moved_past_its_delay(kind: str) -> None:
    job_id = enqueue("test.record", scheduled_for=timedelta(hours=1))
    assert drain().claimed == 0
    advance(timedelta(minutes=30))
    assert drain().claimed == 0
    advance(30 * 60)
    assert drain().completed == 1
    assert Job.objects.get(id=job_id).status == "completed"


@pytest.mark.django_db
def test_only_pending_jobs_move() -> None:
    done = enqueue("test.record")
    drain()
    cancelled = enqueue("test.record", scheduled_for=timedelta(hours=1))
    cancel_job(cancelled)
    waiting = enqueue("test.record", scheduled_for=timedelta(hours=1))
    before = {j.id: j.scheduled_for for j in Job.objects.all()}
    assert advance(60).jobs == 1
    after = {j.id: j.scheduled_for for j in Job.objects.all()}
    assert after[done] == before[done] and after[cancelled] == before[cancelled]
    assert before[waiting] - after[waiting] == timedelta(seconds=60)


@pytest.mark.django_db
def test_the_order_of_jobs_is_kept() -> None:
    first = enqueue("test.record", scheduled_for=timedelta(minutes=1))
    second = enqueue("test.record", scheduled_for=timedelta(minutes=2))
    advance(3600)
    ordered = list(Job.objects.order_by("scheduled_for").values_list("id", flat=True))
    assert ordered == [first, second]


@pytest.mark.django_db
@pytest.mark.parametrize("by", [-1, float("nan"), float("inf"), timedelta(seconds=-1)])
def test_the_clock_only_moves_forward(by: float | timedelta) -> None:
    with pytest.raises(ValueError, match="moves the clock forward"):
        advance(by)


@pytest.mark.django_db
def test_seconds_or_a_timedelta_nothing_else() -> None:
    with pytest.raises(TypeError, match="seconds or a timedelta, not str"):
        advance("60")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        advance(True)
