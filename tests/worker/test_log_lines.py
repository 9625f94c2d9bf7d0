"""A worker's log lines: stored text (job names, error lines) cannot forge or rewrite a line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from io import StringIO

import pytest

from django_pgjobs import enqueue
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
