"""The worker's after-write thread (where its signals are sent, and where it reads which
workflows a dead letter killed) takes care of its Django connection as handler threads do: one
the server closed (a restart, pg_terminate_backend, idle_session_timeout) is replaced, so the
signals go on (every later send failed, for the life of the worker, as reviewed)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_pgjobs import enqueue, start_workflow
from django_pgjobs import signals as pgjobs_signals
from django_pgjobs.models import Job, WorkflowExecution
from django_pgjobs.worker import Worker
from tests.helpers import second_connection, workflow_job

pytestmark = pytest.mark.django_db(transaction=True)


def _doomed_workflow(name: str) -> str:
    flow = start_workflow("test.greet", name).workflow_id
    Job.objects.filter(id=workflow_job(flow).id).update(max_attempts=1)
    WorkflowExecution.objects.filter(workflow_id=flow).update(name="test.not_deployed")
    return flow


def test_workflow_dead_is_still_announced_after_the_threads_connection_was_lost(
    make_worker: type[Worker],
) -> None:
    finished: list[str] = []
    pids: list[int] = []

    def on_finished(sender: Any, workflow_id: str, status: str, **kwargs: Any) -> None:
        finished.append(f"{workflow_id}:{status}")

    def on_succeeded(sender: Any, **kwargs: Any) -> None:
        # A receiver that uses the database, as receivers do: it learns the thread's backend.
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pids.append(cur.fetchone()[0])

    pgjobs_signals.workflow_finished.connect(on_finished, weak=False)
    pgjobs_signals.job_succeeded.connect(on_succeeded, weak=False)
    try:
        worker = make_worker(concurrency=1)
        first = _doomed_workflow("one")
        enqueue("test.record", {})
        for _ in range(5):
            worker.run_once()
        assert f"{first}:dead" in finished
        assert pids, "the receiver ran"
        # The after-write thread's backend goes away (a restart, an idle_session_timeout...).
        with second_connection() as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pids[-1]])
        second = _doomed_workflow("two")
        third = _doomed_workflow("three")
        for _ in range(5):
            worker.run_once()
        assert WorkflowExecution.objects.get(workflow_id=second).status == "dead"
        assert WorkflowExecution.objects.get(workflow_id=third).status == "dead"
        # One failure right after the loss could be forgiven; the thread never recovers.
        assert f"{third}:dead" in finished, finished
    finally:
        pgjobs_signals.workflow_finished.disconnect(on_finished)
        pgjobs_signals.job_succeeded.disconnect(on_succeeded)
