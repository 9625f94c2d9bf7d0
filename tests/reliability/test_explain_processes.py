"""explain_job about a real worker process: the worker it names heartbeats while it runs the job,
has no handler for a name it never registered, serves only its own queues, and, once killed, is
silent since its last heartbeat."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.test import override_settings

from django_pgjobs import enqueue, explain_job
from django_pgjobs.models import Job
from django_pgjobs.observability.explain import Blocker, Explanation
from tests.helpers import start_worker, wait_for
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Short leases: the killed worker is silent (not live) after a second.
FAST_LEASES = {"LEASE_SECONDS": 1.0, "HEARTBEAT_SECONDS": 0.2, "POLL_INTERVAL": 0.2}


def test_a_worker_process_is_named_alive_then_silent(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    with override_settings(PGJOBS=FAST_LEASES):  # liveness judged here by the same limit
        explained_alive_then_silent(processes, tmp_path)


def explained_alive_then_silent(processes: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    release = tmp_path / "release"
    job_id = enqueue("test.block", {"release": str(release)}, queue="q")
    log = tmp_path / "worker.log"
    proc = start_worker("--queues", "q", settings=FAST_LEASES, log=log)
    processes.append(proc)
    wait_for(
        lambda: Run.objects.filter(label="block:started").exists(),
        what=f"the handler to start; worker log:\n{log}",
    )
    worker_id = Job.objects.get(id=job_id).locked_by
    said = explain_job(job_id)
    assert (said.blocker, said.worker_id) == (Blocker.RUNNING, worker_id)
    assert f"Held by worker {worker_id} " in said.message and "Last heartbeat " in said.message

    unknown = explain_job(enqueue("nobody.has.this", queue="q"))
    assert unknown.blocker is Blocker.NO_HANDLER
    assert f"({worker_id}) has no handler for 'nobody.has.this'" in unknown.message
    elsewhere = explain_job(enqueue("test.record", queue="elsewhere"))
    assert elsewhere.blocker is Blocker.NO_WORKER
    assert f"({worker_id}) serves other queues" in elsewhere.message

    proc.kill()
    proc.wait(timeout=10)

    def once_silent() -> Explanation | None:
        said = explain_job(job_id)
        return said if "Silent since" in said.message else None

    silent = wait_for(once_silent, what="the killed worker to fall silent")
    assert silent is not None
    assert silent.blocker is Blocker.RUNNING
    assert "no worker is live to sweep" in silent.message
    release.touch()
