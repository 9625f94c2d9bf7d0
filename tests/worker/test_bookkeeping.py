"""What follows a batch of completions (worker.bookkeeping): every one is counted and leaves the
worker's attempts, and each is handed on to whatever hears of it (its attempt's callback, a
``job_succeeded`` receiver, the job's INFO line) even when nothing else does, since the batch
skips the ones nothing hears of."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from django_pgjobs import enqueue_many, job
from django_pgjobs import signals as pgjobs_signals
from django_pgjobs.jobs.context import current_notes
from django_pgjobs.worker import Worker
from django_pgjobs.worker.bookkeeping import Bookkeeper
from django_pgjobs.worker.outcomes import jobs_logger

pytestmark = pytest.mark.django_db(transaction=True)

_heard: list[tuple[int, str]] = []
_lock = threading.Lock()


@job("test.bookkeeping.noted")
def noted(payload: dict[str, Any]) -> None:
    """Asks for a callback once its outcome is written, for odd ``i`` only."""
    if payload["i"] % 2:
        notes = current_notes.get()
        assert notes is not None

        def written(outcome: str, i: int = payload["i"]) -> None:
            with _lock:
                _heard.append((i, outcome))

        notes.on_written = written


@pytest.fixture(autouse=True)
def _quiet_jobs_log() -> Any:
    """The worker's default verbosity: no line per completed job."""
    level = jobs_logger.level
    jobs_logger.setLevel(logging.WARNING)
    _heard.clear()
    yield
    jobs_logger.setLevel(level)


def _batched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the bookkeeper was handed (so a test knows one held several)."""
    sizes: list[int] = []
    completed = Bookkeeper.completed

    def noting(self: Bookkeeper, jobs: list[Any]) -> None:
        sizes.append(len(jobs))
        completed(self, jobs)

    monkeypatch.setattr(Bookkeeper, "completed", noting)
    return sizes


def _drain(worker: Worker, count: int) -> int:
    completed = 0
    for _ in range(20):
        completed += worker.run_once().completed
        if completed >= count:
            break
    return completed


def test_callbacks_of_a_batch_are_run_when_nothing_else_listens(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _batched(monkeypatch)
    enqueue_many("test.bookkeeping.noted", [{"i": i} for i in range(12)])
    worker = make_worker(concurrency=4)
    assert _drain(worker, 12) == 12
    assert sum(sizes) == 12 and max(sizes) > 1, sizes
    assert worker.stats.completed == 12
    assert not worker._inflight  # every attempt left the worker's books
    assert worker._after_write.wait_idle(10)
    assert sorted(_heard) == [(i, "completed") for i in range(1, 12, 2)]


def test_a_receiver_hears_every_completion_of_a_batch(make_worker: type[Worker]) -> None:
    succeeded: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        succeeded.append(kwargs["job_id"])

    pgjobs_signals.job_succeeded.connect(receiver, weak=False)
    try:
        ids = enqueue_many("test.bookkeeping.noted", [{"i": i} for i in range(10)])
        worker = make_worker(concurrency=4)
        assert _drain(worker, 10) == 10
        assert worker._after_write.wait_idle(10)
    finally:
        pgjobs_signals.job_succeeded.disconnect(receiver)
    assert sorted(map(str, succeeded)) == sorted(map(str, ids))
    assert sorted(_heard) == [(i, "completed") for i in range(1, 10, 2)]


def test_each_completion_has_its_line_at_info(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    ids = enqueue_many("test.bookkeeping.noted", [{"i": i} for i in range(6)])
    worker = make_worker(concurrency=2)
    with caplog.at_level(logging.INFO, logger="django_pgjobs.jobs"):
        assert _drain(worker, 6) == 6
    lines = [r for r in caplog.records if r.getMessage().startswith("Completed ")]
    assert sorted(r.__dict__["job_id"] for r in lines) == sorted(map(str, ids))
