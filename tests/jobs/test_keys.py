"""Job keys: one active job per key, replaced in place while pending."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from django_pgjobs import enqueue, get_job
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


class TestKeys:
    def test_same_key_returns_the_existing_job_and_writes_nothing(self) -> None:
        first = enqueue("test.record", {"v": 1}, key="report:2026-01-15")
        second = enqueue("test.record", {"v": 2}, key="report:2026-01-15")
        assert first == second
        assert Job.objects.count() == 1
        assert get_job(first).payload == {"v": 1}

    def test_replace_updates_a_pending_job_in_place_and_resets_it(self) -> None:
        first = enqueue("test.record", {"v": 1}, key="k", priority=1)
        Job.objects.filter(id=first).update(attempt=2, error="old failure")
        second = enqueue("test.record", {"v": 2}, key="k", priority=5, replace=True)
        assert first == second
        job = get_job(first)
        assert (job.payload, job.priority, job.attempt, job.error) == ({"v": 2}, 5, 0, None)

    def test_replace_when_running_moves_the_key_to_a_new_job(self) -> None:
        running = enqueue("test.record", {"v": 1}, key="k")
        Job.objects.filter(id=running).update(status="running")
        replacement = enqueue("test.record", {"v": 2}, key="k", replace=True)
        assert replacement != running
        assert get_job(running).key is None
        assert get_job(replacement).key == "k"

    def test_a_finished_job_frees_its_key(self) -> None:
        first = enqueue("test.record", key="k")
        Job.objects.filter(id=first).update(status="completed")
        assert enqueue("test.record", key="k") != first


def test_replacing_a_pending_job_wakes_workers(other_connection: psycopg.Connection[Any]) -> None:
    enqueue("test.record", {"v": 1}, key="k", queue="reports")
    other_connection.execute("LISTEN pgjobs")
    enqueue("test.record", {"v": 2}, key="k", queue="reports", replace=True)
    assert [n.payload for n in other_connection.notifies(timeout=2, stop_after=1)] == ["reports"]
