"""The harness itself: it refuses to run Django's tests half rewritten, and its run-now backend's
results come from a worker."""

from __future__ import annotations

import pytest

from django_pgjobs.models import Job
from django_pgjobs.tasks.framework import TaskResultStatus
from tests.contract import rewrite as rewriting
from tests.contract.backends import RunNowBackend
from tests.contract.loader import _exclude
from tests.testapp import tasks


def test_a_rule_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(rewriting.SuiteChanged, match="matched nothing"):
        rewriting.rewrite({"test_x.py": "print('no backend named here')\n"}, backport=False)


def test_an_exclusion_naming_a_missing_test_is_an_error() -> None:
    class Case:
        __module__ = f"{rewriting.PACKAGE}.test_tasks"

    with pytest.raises(rewriting.SuiteChanged, match="does not exist"):
        _exclude({"Case": Case}, {"test_tasks.py::Case::test_gone": "renamed upstream"})  # type: ignore[dict-item]


@pytest.mark.django_db(transaction=True)
def test_run_now_results_are_a_workers_and_stored() -> None:
    backend = RunNowBackend("default", {"QUEUES": []})
    result = backend.enqueue(tasks.add, [2, 40], {})
    job = Job.objects.get(id=result.id)
    assert (job.status, job.result) == ("completed", 42)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    assert result.worker_ids == [job.locked_by] and result.attempts == 1
