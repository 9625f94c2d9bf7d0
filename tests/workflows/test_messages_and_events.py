"""Messages (send, recv) and events (set_event, get_event), between workflows and from outside."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections

from django_pgjobs import get_event, recv, send, set_event, start_workflow
from django_pgjobs.exceptions import NotInWorkflow, WorkflowNotFound, WorkflowSerializationError
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import list_workflow_steps
from tests.helpers import drain, end_workflow_wait, in_thread, wait_for
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_send_and_recv_with_topics_and_timeout(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, "orders", 30)
    worker = make_worker()
    assert worker.run_once().handed_back == 1  # waiting for the first message
    send(handle.workflow_id, {"n": 1}, topic="other")  # another topic: does not wake it
    assert worker.run_once().claimed == 0
    send(handle.workflow_id, {"n": 2}, topic="orders")
    send(handle.workflow_id, {"n": 3}, topic="orders")
    drain(worker)
    assert handle.get_result(1) == [{"n": 2}, {"n": 3}]
    # Consumed messages are gone; the other topic's is still there.
    with connection.cursor() as cur:
        cur.execute("SELECT topic FROM pgjobs_workflow_messages")
        assert cur.fetchall() == [("other",)]

    timed_out = start_workflow(wf.receiver, None, 0.5)
    assert worker.run_once().handed_back == 1
    send(timed_out.workflow_id, "only one")
    drain(worker)
    # The second recv waits out its 0.5 s timeout (its recorded deadline, moved to now).
    assert end_workflow_wait(timed_out.workflow_id) <= timedelta(seconds=0.5)
    drain(worker)
    assert timed_out.get_result(1) == ["only one", None]


def test_a_message_sent_before_the_workflow_waits_is_not_lost(make_worker: type[Worker]) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    send(handle.workflow_id, "early")
    send(handle.workflow_id, "also early")
    drain(make_worker())
    assert handle.get_result(1) == ["early", "also early"]


def test_a_send_committing_during_registration_is_not_lost(
    make_worker: type[Worker], other_connection: Any
) -> None:
    handle = start_workflow(wf.receiver, None, 30)
    other_connection.autocommit = False
    with other_connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_messages (workflow_id, topic, message) "
            "VALUES (%s, '', '\"held\"'::jsonb)",
            [handle.workflow_id],
        )
        cur.execute("SELECT pgjobs_workflow_wake(%s)", [f"message:{handle.workflow_id}:"])
    worker = make_worker()
    thread = in_thread(worker.run_once)
    # The worker registers its wait while the send is uncommitted: it queues behind the send's
    # lock on the wait key, and the send commits meanwhile.
    wait_for(lambda: blocked_by(other_connection.info.backend_pid), what="the worker to block")
    other_connection.commit()
    thread.join(10)
    steps = list_workflow_steps(handle.workflow_id)
    assert (steps[0].status, steps[0].output) == ("completed", "held")


def blocked_by(pid: int) -> bool:
    """Some session waits for a lock that the session ``pid`` holds."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
        return cur.fetchone() is not None


def outside_waiter_listening() -> bool:
    """A waiter outside workflows (get_event, get_result) has run its LISTEN: it waits for a
    wake-up now, after a first look that found nothing."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'pgjobs wait' AND state = 'idle' AND query LIKE 'LISTEN %%'"
        )
        return cur.fetchone() is not None


def test_send_to_an_unknown_workflow_and_recv_outside_a_workflow_are_errors() -> None:
    with pytest.raises(WorkflowNotFound, match="no workflow has that id"):
        send("nobody", "hi")
    with pytest.raises(NotInWorkflow, match=r"recv\(\) can only be called inside a workflow"):
        recv()
    with pytest.raises(NotInWorkflow) as raised:
        set_event("k", 1)
    # The message says what to do instead.
    assert "in the body of a @workflow function" in str(raised.value)
    assert "send(workflow_id, ...), get_event(workflow_id, key)" in str(raised.value)
    with pytest.raises(WorkflowSerializationError):
        send("nobody", {1, 2})
    # Waiting for an event of a workflow that does not exist would wait for nothing.
    with pytest.raises(WorkflowNotFound, match="No workflow has the id 'nobody'"):
        get_event("nobody", "k", timeout=None)


def test_workflows_message_each_other(make_worker: type[Worker]) -> None:
    ponger = start_workflow(wf.pong)
    pinger = start_workflow(wf.ping, ponger.workflow_id)
    drain(make_worker(concurrency=1))
    assert pinger.get_result(1) == "pong!"
    assert ponger.get_result(1) == {"reply_to": pinger.workflow_id}


def test_events_are_read_from_outside_and_awaited_inside(make_worker: type[Worker]) -> None:
    publisher = start_workflow(wf.publisher, "ev")
    waiter = start_workflow(wf.event_waiter, publisher.workflow_id, 30)
    worker = make_worker(concurrency=1)
    assert get_event(publisher.workflow_id, "stage", timeout=0) is None
    drain(worker)
    assert publisher.get_result(1) == "published"
    assert get_event(publisher.workflow_id, "stage", timeout=1) == "done"
    # The waiter ran first or second; either way it got a value the publisher set.
    assert waiter.get_result(5) in ("started", "done")


def test_get_event_from_outside_waits_for_the_value(make_worker: type[Worker]) -> None:
    publisher = start_workflow(wf.publisher, "ev2")
    got: list[Any] = []

    def read() -> None:
        try:
            got.append(get_event(publisher.workflow_id, "stage", timeout=10))
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(outside_waiter_listening, what="the reader to listen")  # it found no value yet
    drain(make_worker())
    reader.join(10)
    assert got and got[0] in ("started", "done")
    assert get_event(publisher.workflow_id, "missing", timeout=0.2) is None
