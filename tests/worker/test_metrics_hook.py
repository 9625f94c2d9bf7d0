"""A worker's ``metrics`` (worker.after_write.Measured): told of each start, outcome and rescue
on the thread where it happens, and drained on the after-write thread, never on the loop's;
Worker.busy_slots, the exporter's gauge of them."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, queries, signals
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from django_pgjobs.worker.outcomes import Written
from tests.helpers import drain, in_thread, wait_for
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """A Measured that remembers what it heard, on which thread, and where it was drained."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str]] = []  # (event, job name or counts, thread)
        self.drained_on: list[str] = []
        self.pending = False

    def _note(self, event: str, what: str) -> bool:
        self.heard.append((event, what, threading.current_thread().name))
        first, self.pending = not self.pending, True
        return first

    def started(self, job: queries.ClaimedJob) -> bool:
        return self._note("started", job.job_name)

    def written(self, written: Written, took: float) -> bool:
        return self._note(written.outcome.value, written.job.job_name)

    def rescued(self, *, retried: int, buried: int, unstarted: int) -> bool:
        return self._note("rescued", f"{retried}/{buried}/{unstarted}")

    def drain(self) -> None:
        self.pending = False
        self.drained_on.append(threading.current_thread().name)


def test_starts_and_outcomes_are_noted_where_they_happen_and_drained_after_write(
    make_worker: type[Worker],
) -> None:
    recorder = Recorder()
    worker = make_worker(metrics=recorder, concurrency=2)
    enqueue("test.record")
    enqueue("test.fail", max_attempts=1)
    drain(worker)

    loop = threading.current_thread().name  # run_once runs the loop in the caller's thread
    events = sorted((event, name) for event, name, _ in recorder.heard)
    assert events == [
        ("buried", "test.fail"), ("completed", "test.record"),
        ("started", "test.fail"), ("started", "test.record"),
    ]  # fmt: skip
    # Outcomes on the loop thread (which writes them), starts on the handlers' threads.
    assert {t for e, _, t in recorder.heard if e != "started"} == {loop}
    assert all(
        t.startswith("pgjobs-") and t != loop for e, _, t in recorder.heard if e == "started"
    )
    # Applied on the after-write thread only; none left pending.
    assert recorder.drained_on
    assert all(name.startswith("pgjobs-after-") for name in recorder.drained_on)
    assert not recorder.pending


def test_a_rescue_is_told_with_what_became_of_the_jobs(make_worker: type[Worker]) -> None:
    enqueue("test.record")
    enqueue("test.record", max_attempts=1)
    with connection.cursor() as cur:
        queries.claim_jobs(
            cur, worker_id="dead", limit=2, lease_seconds=30, queues=None, job_names=None
        )
    Job.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    recorder = Recorder()
    make_worker(metrics=recorder).run_once()
    assert [what for event, what, _ in recorder.heard if event == "rescued"] == ["1/1/0"]


def test_busy_slots_count_the_handlers_running_now(
    make_worker: type[Worker], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    worker = make_worker(concurrency=3)
    enqueue("test.block", {"release": str(release)})
    enqueue("test.block", {"release": str(release)})
    runner = in_thread(lambda: worker.run(burst=True))
    try:
        wait_for(lambda: Run.objects.filter(label="block:started").count() == 2, what="2 starts")
        assert worker.busy_slots == 2
    finally:
        release.touch()
        runner.join(timeout=30)
    assert worker.busy_slots == 0


class FailingStarts(Recorder):
    def started(self, job: queries.ClaimedJob) -> bool:
        raise RuntimeError("the exporter broke")


def test_a_failing_start_hook_is_logged_and_the_job_still_runs(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    job_id = enqueue("test.record")
    heard: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs["job_id"])

    signals.job_started.connect(receiver, weak=False)
    try:
        worker = make_worker(metrics=FailingStarts())
        drain(worker)
        assert worker.stats.completed == 1
        assert Run.objects.count() == 1  # the handler ran: the hook's failure is not the job's
        wait_for(lambda: heard == [job_id], what="job_started, sent all the same")
    finally:
        signals.job_started.disconnect(receiver)
    assert "Noting the start of test.record" in caplog.text
    assert "RuntimeError: the exporter broke" in caplog.text
