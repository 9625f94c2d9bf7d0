"""Forking a workflow from a step, and listing workflows."""

from __future__ import annotations

import pytest

from django_pgjobs import get_workflow, start_workflow
from django_pgjobs.exceptions import InvalidJobError, WorkflowConflict, WorkflowNotFound
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import fork_workflow, list_workflow_steps, list_workflows
from tests.helpers import drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_fork_reuses_checkpoints_before_the_given_step(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.five_steps, "fork", "/nonexistent")
    drain(make_worker())
    forked = fork_workflow(handle.workflow_id, from_step=3, new_workflow_id="fork-copy")
    info = get_workflow("fork-copy")
    assert (info.forked_from, info.args) == (handle.workflow_id, ["fork", "/nonexistent"])
    drain(make_worker())
    assert forked.get_result(1) == handle.get_result(1)
    assert [wf.runs(f"fork:{i}") for i in range(5)] == [1, 1, 1, 2, 2]
    with pytest.raises(WorkflowConflict):
        fork_workflow(handle.workflow_id, new_workflow_id="fork-copy")
    with pytest.raises(WorkflowNotFound):
        fork_workflow("missing")


def test_fork_from_a_step_the_workflow_never_reached_is_refused(
    make_worker: type[Worker],
) -> None:
    """A typo (step 99 of five) is an error that creates nothing, not a copy that reuses every
    checkpoint; from the step after the last, every checkpoint is reused."""
    handle = start_workflow(wf.five_steps, "reach", "/nonexistent")
    drain(make_worker())
    with pytest.raises(InvalidJobError, match=r"recorded steps up to step 4: .*at most 5.*got 6"):
        fork_workflow(handle.workflow_id, from_step=6, new_workflow_id="too-far")
    with pytest.raises(WorkflowNotFound):
        get_workflow("too-far")
    fork_workflow(handle.workflow_id, from_step=5, new_workflow_id="all-reused")
    drain(make_worker())
    assert get_workflow("all-reused").output == handle.get_result(1)
    assert [wf.runs(f"reach:{i}") for i in range(5)] == [1] * 5
    pending = start_workflow(wf.greet, "not yet run")
    with pytest.raises(InvalidJobError, match="recorded no step: from_step must be 0; got 1"):
        fork_workflow(pending.workflow_id, from_step=1)
    assert fork_workflow(pending.workflow_id).workflow_id


def test_fork_from_the_step_after_the_last_counts_an_index_left_unused(
    make_worker: type[Worker],
) -> None:
    """A call that raised before it was recorded leaves its index unused (steps 0 and 2): the
    step after the last is 3, not the two recorded."""
    handle = start_workflow(wf.gap, "gap")
    drain(make_worker())
    assert [s.index for s in list_workflow_steps(handle.workflow_id)] == [0, 2]
    fork_workflow(handle.workflow_id, from_step=3, new_workflow_id="gap-all")
    with pytest.raises(InvalidJobError, match=r"recorded steps up to step 2: .*at most 3"):
        fork_workflow(handle.workflow_id, from_step=4)
    drain(make_worker())
    assert get_workflow("gap-all").output == handle.get_result(1)
    assert [wf.runs(f"gap:{i}") for i in (0, 2)] == [1, 1]


def test_list_workflows_filters_and_orders_newest_first(make_worker: type[Worker]) -> None:
    a = start_workflow(wf.greet, "a")
    b = start_workflow(wf.fails, "b")
    drain(make_worker())
    c = start_workflow(wf.greet, "c")
    assert [w.workflow_id for w in list_workflows()] == [
        c.workflow_id,
        b.workflow_id,
        a.workflow_id,
    ]
    assert [w.workflow_id for w in list_workflows(status="failed")] == [b.workflow_id]
    assert [w.workflow_id for w in list_workflows(name="test.greet", limit=1)] == [c.workflow_id]
    with pytest.raises(InvalidJobError, match="Unknown status 'complete'"):
        list_workflows(status="complete")  # a typo is an error, not an empty list
    with pytest.raises(WorkflowNotFound):
        list_workflow_steps("missing")
