"""``manage.py pgjobs_workflows``: each action calls the library and reports what it did."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_pgjobs import get_workflow, start_workflow
from django_pgjobs.models import WorkflowExecution
from django_pgjobs.worker import Worker
from django_pgjobs.workflows.definitions import app_version
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs_workflows", *args, stdout=out)
    return out.getvalue()


def test_list_and_show(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.greet, "cli", workflow_id="cli-1")
    start_workflow(wf.fails, "no", workflow_id="cli-2")
    make_worker().run_once()
    listing = run("list")
    assert "cli-1" in listing and "cli-2" in listing
    assert "cli-1" not in run("list", "--status", "failed")
    shown = run("show", handle.workflow_id)
    assert "completed" in shown and '"hello cli!"' in shown
    assert "tests.testapp.workflows.note" in shown
    assert "builtins.ValueError: no" in run("show", "cli-2")


def test_cancel_resume_fork() -> None:
    start_workflow(wf.greet, "ops", workflow_id="ops-1")
    assert "Cancelled workflow ops-1" in run("cancel", "ops-1")
    assert get_workflow("ops-1").status == "cancelled"
    WorkflowExecution.objects.filter(workflow_id="ops-1").update(app_version="old")
    assert "Resumed" in run("resume", "ops-1", "--deployed")
    assert get_workflow("ops-1").app_version == app_version()
    assert "as ops-copy" in run("fork", "ops-1", "--new-id", "ops-copy")
    assert get_workflow("ops-copy").forked_from == "ops-1"


def test_errors_become_command_errors() -> None:
    with pytest.raises(CommandError, match="No workflow has the id 'missing'"):
        run("show", "missing")
    with pytest.raises(CommandError, match="from-step"):
        run("fork", "missing", "--from-step", "-1")
