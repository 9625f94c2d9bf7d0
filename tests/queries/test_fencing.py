"""Fencing: an attempt that lost its lease writes nothing (see the queries package docstring)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import wait_for
from tests.testapp.models import Run

# Their workers' sweeps rescue expired leases: the server must have been up for the hold.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("rescuable")]


class TestFencing:
    def test_a_rescued_attempt_cannot_complete_the_job(self, make_worker: type[Worker]) -> None:
        """A stalls past its lease; B rescues and completes; A's late outcome is dropped."""
        job_id = enqueue("test.record")
        with connection.cursor() as cur:
            (claimed,) = queries.claim_jobs(
                cur, worker_id="A", limit=1, lease_seconds=30, queues=None, job_names=None
            )
        Job.objects.filter(id=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        stats = make_worker().run_once()
        assert (stats.rescued, stats.completed) == (1, 1)
        with connection.cursor() as cur:
            assert queries.complete_jobs(cur, tokens=[claimed.token]) == []
            outcome = queries.fail_job(cur, token=claimed.token, error="late", delay=0)
        assert outcome == "lost"
        job = get_job(job_id)
        assert (job.status, job.attempt) == ("completed", 2)
        assert job.error is not None and job.error.startswith("Lease expired: worker A")

    def test_cancelling_a_running_job_discards_its_outcome(
        self, make_worker: type[Worker], tmp_path: Path
    ) -> None:
        release = tmp_path / "release"
        job_id = enqueue("test.block", {"release": str(release)})
        worker = make_worker(poll_interval=0.05)
        runner = threading.Thread(target=worker.run, kwargs={"burst": True})
        runner.start()
        wait_for(lambda: Run.objects.filter(label="block:started").exists(), what="handler start")
        from django_pgjobs import cancel_job

        cancel_job(job_id)
        release.touch()
        runner.join(10)
        assert worker.stats.lost == 1 and worker.stats.completed == 0
        assert get_job(job_id).status == "cancelled"
