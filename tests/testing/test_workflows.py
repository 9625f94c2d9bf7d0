"""Workflows under drain(): they run to their first wait, suspend, and come back once the
clock is moved past it; in a TestCase as well as in a transaction test."""

from __future__ import annotations

import pytest

from django_pgjobs import get_workflow, send, start_workflow
from django_pgjobs.testing import advance, drain
from django_pgjobs.workflows import list_workflow_steps
from tests.testapp import workflows as wf
from tests.testing.kinds import BOTH_KINDS


@BOTH_KINDS
def test_a_workflow_runs_to_its_end(kind: str) -> None:
    handle = start_workflow(wf.greet, "Ada")
    assert drain().completed == 1
    assert handle.get_result(0) == "hello Ada!"


@BOTH_KINDS
def test_a_sleeping_workflow_wakes_when_advance_passes_its_deadline(kind: str) -> None:
    handle = start_workflow(wf.sleeper, f"nap-{kind}", 3600)
    assert drain().handed_back == 1
    assert get_workflow(handle.workflow_id).status == "pending"
    advance(1800)
    assert drain().claimed == 0  # half way: its job is not due
    moved = advance(1800)
    assert (moved.jobs, moved.waits) == (1, 1)
    assert drain().completed == 1
    assert handle.get_result(0) == f"nap-{kind}:after"
    assert [s.status for s in list_workflow_steps(handle.workflow_id)] == ["completed"] * 3


@pytest.mark.django_db
def test_a_short_sleep_in_a_testcase_suspends_as_the_clock_stands_still() -> None:
    # A worker waits out a sleep under a second in-process; inside the test's transaction
    # now() never moves, so that wait would never end.
    handle = start_workflow(wf.sleeper, "short", 0.5)
    assert drain().handed_back == 1
    advance(1)
    assert drain().completed == 1
    assert handle.get_result(0) == "short:after"


@BOTH_KINDS
def test_a_message_wakes_a_waiting_workflow(kind: str) -> None:
    handle = start_workflow(wf.receiver, "inbox", 3600)
    assert drain().handed_back == 1
    send(handle.workflow_id, "first", topic="inbox")
    send(handle.workflow_id, "second", topic="inbox")
    assert drain().completed == 1
    assert handle.get_result(0) == ["first", "second"]


@BOTH_KINDS
def test_a_receive_times_out_when_advance_passes_its_timeout(kind: str) -> None:
    handle = start_workflow(wf.receiver, "silence", 60)
    drain()
    advance(60)
    drain()  # the first recv timed out; the second waits
    advance(60)
    assert drain().completed == 1
    assert handle.get_result(0) == [None, None]


@BOTH_KINDS
def test_a_parent_waits_for_its_children_and_gets_their_results(kind: str) -> None:
    handle = start_workflow(wf.parent, 3)
    drain()
    assert handle.get_result(0) == [0, 10, 20]
