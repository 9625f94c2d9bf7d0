"""What the worker's logging set-up leaves alone: the loggers the project's LOGGING configures
(T1: a project's ``django_pgjobs`` at INFO got its per-job lines turned off by the worker), and
what it fills in when the project configured nothing; a real worker process with such a
LOGGING."""

from __future__ import annotations

import logging
import logging.config
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from django_pgjobs import enqueue
from django_pgjobs.worker.process import LogFormatter, configure_logging
from tests.helpers import start_worker, stop

NAMES = ("django_pgjobs", "django_pgjobs.jobs", "django_pgjobs.worker", "django", "django.tasks")


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """The pgjobs loggers without handler or level, as in a process whose LOGGING has not run
    yet; everything put back afterwards."""
    loggers = [logging.getLogger(name) for name in NAMES]
    saved = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    root = logging.getLogger()
    root_level = root.level
    for lg in loggers[:3]:
        lg.handlers, lg.level = [], logging.NOTSET
    logging.getLogger("django.tasks").handlers = []
    logging.getLogger("django.tasks").setLevel(logging.NOTSET)
    yield
    root.level = root_level
    for lg, (handlers, level, propagate, disabled) in zip(loggers, saved, strict=True):
        lg.handlers, lg.level, lg.propagate, lg.disabled = handlers, level, propagate, disabled
    logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


@pytest.fixture
def set_up(fresh_logging: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """What Django then the worker do: apply LOGGING, then configure_logging. (The setting is
    patched, not overridden: Django 6.1 re-applies LOGGING when override_settings ends.)"""

    def apply(config: dict[str, Any], verbosity: int = 1) -> None:
        monkeypatch.setattr(settings, "LOGGING", config)
        root = logging.getLogger()
        capture, root.handlers = root.handlers, []  # pytest's, added for the test's call
        try:
            logging.config.dictConfig(config)
            configure_logging(verbosity)
        finally:
            root.handlers = capture  # what dictConfig put on the root has been looked at

    return apply


def console(**loggers: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "loggers": loggers,
    }


def ours(name: str) -> list[logging.Handler]:
    return [h for h in logging.getLogger(name).handlers if isinstance(h.formatter, LogFormatter)]


def test_a_projects_pgjobs_logger_at_info_keeps_its_per_job_lines(
    set_up: Callable[..., None],
) -> None:
    set_up(console(django_pgjobs={"handlers": ["console"], "level": "INFO"}))
    package, jobs = logging.getLogger("django_pgjobs"), logging.getLogger("django_pgjobs.jobs")
    assert jobs.level == logging.NOTSET and jobs.isEnabledFor(logging.INFO)
    assert package.level == logging.INFO
    assert not ours("django_pgjobs") and len(package.handlers) == 1  # the project's only


def test_a_projects_pgjobs_logger_at_warning_is_not_raised_by_minus_v_2(
    set_up: Callable[..., None],
) -> None:
    set_up(console(django_pgjobs={"handlers": ["console"], "level": "WARNING"}), verbosity=2)
    assert not logging.getLogger("django_pgjobs.jobs").isEnabledFor(logging.INFO)
    assert not logging.getLogger("django_pgjobs.worker").isEnabledFor(logging.INFO)


def test_with_nothing_configured_the_worker_logs_by_verbosity(set_up: Callable[..., None]) -> None:
    set_up({"version": 1, "disable_existing_loggers": False})
    assert len(ours("django_pgjobs")) == 1
    assert logging.getLogger("django_pgjobs.worker").isEnabledFor(logging.INFO)
    assert logging.getLogger("django_pgjobs.jobs").level == logging.WARNING


def test_only_the_loggers_the_project_left_out_are_filled_in(set_up: Callable[..., None]) -> None:
    """The project configures the per-job lines alone: the worker's handler and level go on the
    package logger, and the project's level on django_pgjobs.jobs stays."""
    set_up(console(**{"django_pgjobs.jobs": {"handlers": ["console"], "level": "INFO"}}))
    assert len(ours("django_pgjobs")) == 1
    assert logging.getLogger("django_pgjobs").level == logging.INFO
    assert logging.getLogger("django_pgjobs.jobs").level == logging.INFO


def test_a_projects_django_logger_keeps_the_task_lines_to_itself(
    set_up: Callable[..., None],
) -> None:
    """The Tasks framework logs to django.tasks: a project that configures ``django`` gets
    those lines where and at the level it said, not a second copy on stderr at WARNING."""
    pytest.importorskip("django.tasks")
    from django_pgjobs.worker.process import _tasks_framework_logger

    if _tasks_framework_logger() is None:
        pytest.skip("the Tasks framework is not in use in these settings")
    set_up(console(django={"handlers": ["console"], "level": "INFO"}))
    tasks = logging.getLogger("django.tasks")
    assert not tasks.handlers and tasks.level == logging.NOTSET


def test_a_root_handler_means_the_worker_configures_nothing(set_up: Callable[..., None]) -> None:
    set_up({"version": 1, "handlers": {"h": {"class": "logging.NullHandler"}},
            "root": {"handlers": ["h"]}, "disable_existing_loggers": False})  # fmt: skip
    assert not logging.getLogger("django_pgjobs").handlers
    assert logging.getLogger("django_pgjobs.jobs").level == logging.NOTSET


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_process_logs_each_job_where_the_projects_logging_says(tmp_path: Path) -> None:
    """LOGGING: ``django_pgjobs`` at INFO to a handler, none on the root logger, and the
    worker at its default verbosity: the per-job line is there, once."""
    job_id = enqueue("test.record", {"label": "logged"})
    log = tmp_path / "worker.log"
    proc = start_worker(
        "--burst",
        log=log,
        logging=console(django_pgjobs={"handlers": ["console"], "level": "INFO"}),
    )
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker did not finish its burst") from None
    finally:
        stop(proc)
    lines = log.read_text().splitlines()
    assert (
        len([line for line in lines if line.startswith(f"Completed test.record {job_id} in ")]) == 1
    ), lines
