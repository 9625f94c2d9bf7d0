"""The worker's summary line: at most one per interval, only when something happened, and the
verbosity that keeps per-job lines out of a default worker's log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.conf import settings

from django_pgjobs.worker.process import configure_logging
from django_pgjobs.worker.stats import Summary, WorkerStats


def test_one_line_per_interval_saying_what_changed(caplog: pytest.LogCaptureFixture) -> None:
    stats = WorkerStats()
    summary = Summary("w1", now=0.0, interval=60)
    with caplog.at_level(logging.INFO, logger="django_pgjobs.worker"):
        stats.completed, stats.retried = 117, 3
        summary.maybe_log(stats, now=30.0)  # too soon
        assert not caplog.records
        summary.maybe_log(stats, now=60.0)
        [line] = caplog.records
        said = "Worker w1, the last 60s: 117 completed, 3 retried (2.0 attempts ended a second)"
        assert line.getMessage() == said
        assert (line.completed, line.retried) == (117, 3)  # type: ignore[attr-defined]
        # The fields observability.md documents for a JSON formatter.
        assert (line.worker_id, line.seconds, line.attempts_per_second) == ("w1", 60.0, 2.0)  # type: ignore[attr-defined]
        summary.maybe_log(stats, now=200.0)  # nothing new: no line
        stats.buried = 1
        summary.maybe_log(stats, now=260.0)
        # One attempt in a minute: no rate ("0.0 a second" would say nothing).
        assert caplog.records[-1].getMessage() == "Worker w1, the last 60s: 1 dead-lettered"
        # Rescues end other workers' attempts: said as such, and no rate of this worker's.
        stats.rescued = 1
        summary.maybe_log(stats, now=320.0)
        assert caplog.records[-1].getMessage() == (
            "Worker w1, the last 60s: 1 rescued from dead workers"
        )
        # Workflows waiting are counted too, so that a busy run of them is not a silent minute.
        stats.handed_back = 4
        summary.maybe_log(stats, now=380.0)
        assert caplog.records[-1].getMessage() == (
            "Worker w1, the last 60s: 4 handed back (workflows waiting)"
        )
        assert caplog.records[-1].handed_back == 4  # type: ignore[attr-defined]
        assert len(caplog.records) == 4


@pytest.fixture
def bare_logging() -> Iterator[None]:
    """No handler on the pgjobs loggers, as in a project without LOGGING; put back afterwards."""
    names = ("django_pgjobs", "django_pgjobs.jobs")
    saved = [(logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names]
    for n in names:
        logging.getLogger(n).handlers = []
        logging.getLogger(n).setLevel(logging.NOTSET)
    yield
    for n, (handlers, lvl) in zip(names, saved, strict=True):
        logging.getLogger(n).handlers = handlers
        logging.getLogger(n).setLevel(lvl)


@pytest.mark.parametrize(
    ("verbosity", "worker", "per_job"),
    [(0, False, False), (1, True, False), (2, True, True), (3, True, True)],
)
def test_verbosity_keeps_a_line_per_job_for_minus_v_2(
    bare_logging: None, monkeypatch: pytest.MonkeyPatch, verbosity: int, worker: bool, per_job: bool
) -> None:
    # A project whose LOGGING names no logger (patched: Django 6.1 re-applies an overridden
    # LOGGING when the override ends).
    monkeypatch.setattr(settings, "LOGGING", {"version": 1})
    root = logging.getLogger()
    capture, root.handlers = root.handlers, []  # pytest's, added for the test's call
    try:
        configure_logging(verbosity)
    finally:
        root.handlers = capture
    assert logging.getLogger("django_pgjobs.worker").isEnabledFor(logging.INFO) is worker
    assert logging.getLogger("django_pgjobs.jobs").isEnabledFor(logging.INFO) is per_job
    assert logging.getLogger("django_pgjobs.jobs").isEnabledFor(logging.WARNING)
