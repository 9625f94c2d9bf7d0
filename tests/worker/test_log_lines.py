"""A worker's log lines: stored text (job names, error lines) cannot forge or rewrite a line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from io import StringIO

import pytest
from django.test import override_settings

from django_pgjobs import Cancel, Snooze, enqueue
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)

FORGED = "2026-12-03 14:00:00+0000 INFO django_pgjobs.worker: Completed forged"


@pytest.fixture
def worker_log() -> Iterator[StringIO]:
    """What a project's own plain handler on ``django_pgjobs`` writes while the worker runs (the
    app escapes pgjobs records at start-up: nothing to configure)."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("django_pgjobs")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_job_named_with_a_newline_produces_one_log_line(
    make_worker: type[Worker],
    register_handler: Callable[..., JobHandler],
    worker_log: StringIO,
) -> None:
    name = f"x\n{FORGED}"
    register_handler(name, lambda payload: None)
    job_id = enqueue(name)
    make_worker().run_once()
    lines = worker_log.getvalue().splitlines()
    [line] = [line for line in lines if "forged" in line]
    assert line.startswith(f"Completed x\\n{FORGED} {job_id} in ")
    assert not any(line.startswith("2026-12-03") for line in lines)


def test_an_error_line_cannot_move_the_cursor_or_rewrite_the_line(
    make_worker: type[Worker], worker_log: StringIO
) -> None:
    enqueue("test.fail", {"message": "\x1b[2K\rall good"}, max_attempts=1)
    make_worker().run_once()
    [line] = [line for line in worker_log.getvalue().splitlines() if "dead letters" in line]
    assert "\x1b" not in line and "\r" not in line
    assert line.endswith("moved to the dead letters: ValueError: \\x1b[2K\\rall good")


@override_settings(PGJOBS={"RETRY_JITTER": 0})  # the exact delay, unspread
def test_a_dead_lettered_job_has_no_delay_and_its_line_promises_no_retry(
    make_worker: type[Worker],
    register_handler: Callable[..., JobHandler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its failed write was given the retry delay it would have had (an hour here); nothing will
    wait it, so the line neither carries it nor talks of retrying. A retry's line does."""

    def fail(payload: object) -> None:
        raise ValueError("always")

    register_handler("test.fail_slowly", fail, retry_delay=3600)
    retried = enqueue("test.fail_slowly", max_attempts=2)
    buried = enqueue("test.fail_slowly", max_attempts=1)
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        make_worker(concurrency=1).run(burst=True)
    lines = {r.__dict__["job_id"]: r for r in caplog.records if r.name == "django_pgjobs.jobs"}
    dead, again = lines[str(buried)], lines[str(retried)]
    assert dead.__dict__["outcome"] == "buried" and "delay" not in dead.__dict__
    assert "retr" not in dead.getMessage().lower(), dead.getMessage()
    assert dead.getMessage().endswith("moved to the dead letters: ValueError: always")
    assert again.__dict__["outcome"] == "retried" and again.__dict__["delay"] == 3600
    assert "retrying in 3600.0s" in again.getMessage()


def test_the_connected_line_names_the_queues_plainly(
    make_worker: type[Worker], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="django_pgjobs.worker"):
        worker = make_worker(queues=["mail", "default"])
        worker.run_once()
    assert f"Worker {worker.worker_id} connected (queues: default, mail)" in caplog.messages


def test_each_outcome_s_line_carries_the_job_as_its_documented_extra_fields(
    make_worker: type[Worker],
    register_handler: Callable[..., JobHandler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """job_id, job_name, queue, attempt, outcome, duration (what observability.md lists)."""

    def cancels(payload: object) -> None:
        raise Cancel("no")

    def snoozes(payload: object) -> None:
        raise Snooze(60)

    def fails(payload: object) -> None:
        raise ValueError("again")

    register_handler("t.ok", lambda payload: None)
    register_handler("t.cancel", cancels)
    register_handler("t.snooze", snoozes)
    register_handler("t.fail", fails, retry_delay=3600)
    names = {
        "completed": "t.ok", "cancelled": "t.cancel", "snoozed": "t.snooze", "retried": "t.fail",
        "buried": "t.fail",
    }  # fmt: skip
    jobs = {
        outcome: enqueue(name, queue="mail", max_attempts=1 if outcome == "buried" else 2)
        for outcome, name in names.items()
    }
    with caplog.at_level(logging.INFO, logger="django_pgjobs"):
        make_worker(queues=["mail"]).run(burst=True)
    lines = {r.__dict__["outcome"]: r for r in caplog.records if r.name == "django_pgjobs.jobs"}
    assert set(lines) == set(jobs)
    for outcome, job_id in jobs.items():
        fields = lines[outcome].__dict__
        assert (fields["job_id"], fields["job_name"], fields["queue"], fields["attempt"]) == (
            str(job_id), names[outcome], "mail", 1
        )  # fmt: skip
        assert isinstance(fields["duration"], float) and 0 <= fields["duration"] < 10
