"""Counts in the worker's lines: one job, two jobs; never "1 jobs" nor "job(s)"."""

from __future__ import annotations

import logging

import pytest

from django_pgjobs.observability.display import counted
from django_pgjobs.worker.housekeeping import HousekeepingReport


def test_a_count_takes_its_noun_in_the_right_number() -> None:
    assert [counted(n, "job") for n in (0, 1, 2, 1500)] == [
        "0 jobs",
        "1 job",
        "2 jobs",
        "1,500 jobs",
    ]


def test_the_rescue_and_prune_lines_say_one_job_for_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="django_pgjobs.worker"):
        HousekeepingReport(rescued=1, pruned=1).log()
        HousekeepingReport(rescued=1, rescued_buried=1, pruned=3).log()
    assert caplog.messages == [
        "Rescued 1 job of dead workers: 0 dead-lettered, 0 never started",
        "Pruned 1 finished job past the retention window",
        "Rescued 2 jobs of dead workers: 1 dead-lettered, 0 never started",
        "Pruned 3 finished jobs past the retention window",
    ]
