"""Which timeout an attempt gets: job > handler > queue > PGJOBS["TIMEOUT"], and how its failure
reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.jobs.timeouts import (
    AttemptTimeout,
    attempt_timeout,
    resolve_timeout,
    timeout_error,
)
from django_pgjobs.queries import ClaimedJob


def claimed(*, timeout: float | None = None, queue_timeout: float | None = None) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(), job_name="t", payload={}, queue="default", priority=0, attempt=1,
        max_attempts=3, scheduled_for=datetime.now(UTC), lease_token=uuid.uuid4(),
        timeout=timeout, queue_timeout=queue_timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("job", "handler", "queue", "setting", "expected"),
    [
        (1.0, 2.0, 3.0, 4.0, AttemptTimeout(1.0, "job")),
        (None, 2.0, 3.0, 4.0, AttemptTimeout(2.0, "handler")),
        (None, None, 3.0, 4.0, AttemptTimeout(3.0, "queue")),
        (None, None, None, 4.0, AttemptTimeout(4.0, "setting")),
        (None, None, None, None, None),
        # A longer timeout further up still wins: a job may run longer than its queue allows.
        (7200.0, None, 60.0, 3600.0, AttemptTimeout(7200.0, "job")),
        (None, 10.0, None, None, AttemptTimeout(10.0, "handler")),
    ],
)
def test_the_first_timeout_set_wins(
    job: float | None,
    handler: float | None,
    queue: float | None,
    setting: float | None,
    expected: AttemptTimeout | None,
) -> None:
    found = resolve_timeout(job=job, handler=handler, queue=queue, setting=setting)
    assert found == expected


def test_an_attempt_reads_its_job_its_handler_its_queue_and_the_setting() -> None:
    handler = JobHandler(name="t", func=lambda payload: None, timeout=20.0)
    no_timeout = JobHandler(name="t", func=lambda payload: None)
    with override_settings(PGJOBS={"TIMEOUT": timedelta(minutes=2)}):
        assert attempt_timeout(claimed(timeout=5, queue_timeout=30), handler) == AttemptTimeout(
            5, "job"
        )
        assert attempt_timeout(claimed(queue_timeout=30), handler) == AttemptTimeout(20, "handler")
        assert attempt_timeout(claimed(queue_timeout=30), no_timeout) == AttemptTimeout(30, "queue")
        assert attempt_timeout(claimed(), None) == AttemptTimeout(120.0, "setting")
    with override_settings(PGJOBS={"TIMEOUT": None}):
        assert attempt_timeout(claimed(), no_timeout) is None


def test_the_default_is_an_hour() -> None:
    with override_settings(PGJOBS={}):
        assert attempt_timeout(claimed(), None) == AttemptTimeout(3600.0, "setting")


def test_the_error_names_the_timeout_where_it_was_set_and_what_became_of_the_handler() -> None:
    soft = timeout_error(AttemptTimeout(0.5, "handler"), hard=False)
    assert soft.startswith(
        "JobTimeout: the attempt ran longer than its timeout of 0.5s (its handler's timeout);"
    )
    assert soft.endswith("its thread was abandoned and its outcome discarded.")
    hard = timeout_error(AttemptTimeout(3600, "setting"), hard=True)
    assert hard == (
        'JobTimeout: the attempt ran longer than its timeout of 3600s (PGJOBS["TIMEOUT"]); '
        "its process was killed."
    )


def test_attempts_with_the_same_timeout_share_one_object() -> None:
    """Asked for every attempt a worker claims: no new (frozen, so slow to make) object each."""
    first = resolve_timeout(job=None, handler=None, queue=None, setting=3600)
    assert first == AttemptTimeout(3600.0, "setting")
    assert resolve_timeout(job=None, handler=None, queue=None, setting=3600.0) is first
    assert resolve_timeout(job=2, handler=None, queue=None, setting=3600) == AttemptTimeout(
        2.0, "job"
    )
