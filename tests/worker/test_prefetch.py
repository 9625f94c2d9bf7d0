"""How much a worker claims at once: free slots, plus prefetch once jobs have shown they are
short."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from django_pgjobs import enqueue, enqueue_many, get_job, queries
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from django_pgjobs.worker.pacing import PREFETCH_HORIZON
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def _record_claim_limits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limit of every claim the worker makes."""
    limits: list[int] = []
    original = queries.claim_jobs

    def spy(*args: Any, **kwargs: Any) -> Any:
        limits.append(kwargs["limit"])
        return original(*args, **kwargs)

    monkeypatch.setattr(queries, "claim_jobs", spy)
    return limits


def test_short_jobs_are_prefetched_in_bigger_claims(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _record_claim_limits(monkeypatch)
    enqueue_many("test.record", [{"label": str(n)} for n in range(60)])
    make_worker(concurrency=2).run(burst=True)
    assert Run.objects.count() == 60
    # The first claim fills the free slots; once jobs have shown they are short, claims take
    # up to PREFETCH more.
    assert limits[0] == 2
    assert max(limits) > 2


def test_long_jobs_are_not_prefetched(
    make_worker: type[Worker],
    monkeypatch: pytest.MonkeyPatch,
    register_handler: Callable[..., Any],
) -> None:
    """Jobs longer than the prefetch horizon: claiming ahead would hold work another worker
    could start now."""
    limits = _record_claim_limits(monkeypatch)
    # The sleep is the work, not a wait: how long a job runs is what decides prefetch (the
    # worker measures it), so the handler must take that long. Twice the horizon: 0.1 s.
    register_handler("test.slow", lambda payload: time.sleep(2 * PREFETCH_HORIZON))
    ids = enqueue_many("test.slow", [{}] * 4)
    make_worker(concurrency=1).run(burst=True)
    assert Job.objects.filter(id__in=ids, status="completed").count() == 4
    assert all(limit == 1 for limit in limits)


def test_prefetch_zero_claims_only_free_slots(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _record_claim_limits(monkeypatch)
    enqueue_many("test.record", [{"label": str(n)} for n in range(20)])
    with override_settings(PGJOBS={"PREFETCH": 0}):
        make_worker(concurrency=2).run(burst=True)
    assert Run.objects.count() == 20
    assert max(limits) <= 2  # never more than the free handler threads


def test_a_short_claims_jobs_start_before_it_asks_when_more_is_due(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look ahead (when is the next job due?) comes after the claimed jobs are in their
    threads' hands: a round trip before that delayed an idle worker's every start, and its
    failure left them claimed and never started (until their leases ran out)."""

    def fails(*args: Any, **kwargs: Any) -> float | None:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    monkeypatch.setattr(queries, "seconds_until_next_due", fails)
    job_id = enqueue("test.record", {"label": "first"})
    worker = make_worker(concurrency=2)
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            worker.run_once()  # a claim of 1 where 2 were asked for: short
        worker._slots.wait_idle()
        worker._flush(force=True)
    finally:
        worker.close()
    assert Run.objects.filter(label="first").exists()
    assert get_job(job_id).status == "completed"
