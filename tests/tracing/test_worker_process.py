"""A real ``pgjobs_worker`` process, with an SDK provider set up as an application would (the
testapp's, exporting to a file): a job and a workflow enqueued in this process's trace run in
it, the handler's spans made where the handler runs (a ``--pool process`` child)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from django_pgjobs import enqueue, start_workflow
from tests.helpers import start_worker, stop
from tests.testapp import workflows as wf
from tests.tracing.conftest import Spans

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_worker_process_runs_jobs_and_workflows_in_the_trace_that_enqueued_them(
    pool: str,
    spans: Spans,
    tracer: trace.Tracer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = tmp_path / "spans.jsonl"
    monkeypatch.setenv("PGJOBS_TEST_TRACE_FILE", str(exported))
    with tracer.start_as_current_span("request") as request:
        enqueue("test.record", {"label": "traced"})
        start_workflow(wf.greet, "Cy")
    log = tmp_path / "worker.log"
    proc = start_worker("--burst", "--no-scheduler", "--pool", pool, log=log)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not exit; its log:\n{log.read_text()}") from None
    finally:
        stop(proc)

    found: list[dict[str, Any]] = [json.loads(line) for line in exported.read_text().splitlines()]
    by_name = {span["name"]: span for span in found}
    trace_id = f"0x{request.get_span_context().trace_id:032x}"
    assert {span["context"]["trace_id"] for span in found} == {trace_id}

    def span_id(name: str) -> str:
        return f"0x{spans.one(name).context.span_id:016x}"

    ran = by_name["pgjobs run test.record"]
    assert ran["kind"] == "SpanKind.CONSUMER"
    assert ran["parent_id"] == span_id("pgjobs enqueue test.record")
    assert ran["attributes"]["pgjobs.job.outcome"] == "completed"
    [workflow_run] = [s for s in found if s["name"].startswith("pgjobs run pgjobs.workflow:")]
    assert workflow_run["parent_id"] == span_id("pgjobs start test.greet")
    code = by_name["pgjobs workflow test.greet"]
    assert code["parent_id"] == workflow_run["context"]["span_id"]
    step = by_name["pgjobs step tests.testapp.workflows.note"]
    assert step["parent_id"] == code["context"]["span_id"]
    # Each span is exported by the process that ran it: the worker, or its children.
    ran_in = {span["pid"] for span in found}
    if pool == "thread":
        assert ran_in == {proc.pid}
    else:
        assert proc.pid not in ran_in
