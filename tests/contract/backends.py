"""The backends Django's task tests are pointed at, in place of Django's ImmediateBackend and
DummyBackend: PgJobsBackend itself, plus only what the scenarios need to observe it.

Nothing here produces a result: every status, return value, error, worker id, time, log line and
signal the tests see comes from a job row written by PgJobsBackend and run by a real
:class:`~django_pgjobs.worker.Worker`.
"""

from __future__ import annotations

from typing import Any

from django_pgjobs.backend import PgJobsBackend
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.tasks.definitions import PgJobsTaskResult
from django_pgjobs.worker import Worker

# Worker cycles an enqueue() of RunNowBackend waits for its task: one runs it; a task still not
# finished after more never will be (its job is not visible to the worker, say).
MAX_CYCLES = 3


class RunNowBackend(PgJobsBackend):
    """For ImmediateBackend's scenarios: ``enqueue()`` writes the job as PgJobsBackend does
    (committed: these tests run without a transaction), a Worker runs it on its own connection,
    and the result is then read back from the job.

    One attempt, as Django's backends make: our default is ``PGJOBS["MAX_ATTEMPTS"]`` (3), and
    a retry waits its backoff. Set here rather than in ``OPTIONS``, which the tests compare
    with ``{}``."""

    @property
    def max_attempts(self) -> int | None:
        return super().max_attempts or 1

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> PgJobsTaskResult:
        result = super().enqueue(task, args, kwargs)
        worker = Worker(queues=[task.queue_name], concurrency=1, using=self.database, listen=False)
        try:
            for _ in range(MAX_CYCLES):
                if not worker.run_once().claimed:
                    break
                result.refresh()
                if result.is_finished:
                    break
        finally:
            worker.close()
        result.refresh()
        return result


def run_due_tasks() -> None:
    """One cycle of a worker over every queue: what a DummyBackend test fakes, done."""
    worker = Worker(concurrency=1, listen=False)
    try:
        worker.run_once()
    finally:
        worker.close()


class EnqueueOnlyBackend(PgJobsBackend):
    """For DummyBackend's scenarios: PgJobsBackend, whose tasks no worker runs here, with
    DummyBackend's two test conveniences over the database instead of a list."""

    @property
    def results(self) -> list[PgJobsTaskResult]:
        """Every task's result as stored, oldest first (``DummyBackend.results``)."""
        ids = Job.objects.using(self.database).order_by("created_at", "id")
        return [self.get_result(str(pk)) for pk in ids.values_list("id", flat=True)]

    def clear(self) -> None:
        """Delete every job and dead letter (``DummyBackend.clear()``): a result whose job is
        gone, as after pruning, must raise TaskResultDoesNotExist."""
        Job.objects.using(self.database).all().delete()
        FailedJob.objects.using(self.database).all().delete()
