"""Handlers the tests (and their worker subprocesses) run. Each records what really happened."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path
from typing import Any

from django.db import connection

from django_pgjobs import Cancel, Snooze, current_attempt, job
from django_pgjobs.jobs import ProgressReporter
from tests.testapp.models import Run


@job("test.record")
def record(payload: dict[str, Any]) -> None:
    Run.objects.create(
        job_id=payload.get("id", "00000000-0000-0000-0000-000000000000"),
        label=payload.get("label", "record"),
    )


@job("test.gc-frozen")
def gc_frozen(payload: dict[str, Any]) -> None:
    """Records how many objects the worker's process froze out of the garbage collector, and
    after how many allocations it collects the young ones."""
    label = f"frozen {gc.get_freeze_count()} young {gc.get_threshold()[0]}"
    Run.objects.create(job_id=payload["id"], label=label)


@job("test.fail", max_attempts=2)
def fail(payload: dict[str, Any]) -> None:
    raise ValueError(payload.get("message", "boom"))


@job("test.flaky", retry_delay=0)
def flaky(payload: dict[str, Any]) -> None:
    """Fails until it has been called ``succeed_on`` times for this ``label``."""
    label = payload["label"]
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=label)
    if Run.objects.filter(label=label).count() < payload["succeed_on"]:
        raise RuntimeError(f"flaky failure {Run.objects.filter(label=label).count()}")


@job("test.progress")
def progress(payload: dict[str, Any], report_progress: ProgressReporter) -> None:
    for value, message in payload["steps"]:
        report_progress(value, message)


@job("test.async")
async def async_record(payload: dict[str, Any]) -> None:
    await asyncio.sleep(0)
    await Run.objects.acreate(job_id="00000000-0000-0000-0000-000000000000", label=payload["label"])


@job("test.system_exit")
def system_exit(payload: dict[str, Any]) -> None:
    raise SystemExit(3)


@job("test.keyboard_interrupt")
def keyboard_interrupt(payload: dict[str, Any]) -> None:
    raise KeyboardInterrupt


@job("test.block", retry_delay=0)
def block(payload: dict[str, Any]) -> None:
    """Records 'started', waits until ``release`` (a path) exists, records 'finished'.

    Crash and shutdown tests use it to stop a worker at a known point inside a handler.
    """
    label = payload.get("label", "block")
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=f"{label}:started")
    release = Path(payload["release"])
    deadline = time.monotonic() + payload.get("timeout", 30)
    # Polls the milestone itself: the test that creates the file often runs in another process,
    # so no in-process event can carry it. Bounded, so a failed test cannot hang a worker.
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=f"{label}:finished")


@job("test.span", retry_delay=0)
def span(payload: dict[str, Any]) -> None:
    """Writes when it started and ended to the table flow_ledger (a test creates it): the
    flow-control tests measure concurrency and rates from these rows, never from the library's
    own counters. The times are the handler's own (time.time() as it is called, not when its
    write reached the database, which a thread's first connection delays by milliseconds); the
    tests' server runs on the same machine, so its clock is this one."""
    started = time.time()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO flow_ledger (label, pid, started_at) VALUES (%s, %s, to_timestamp(%s))",
            [payload["label"], os.getpid(), started],
        )
        time.sleep(payload.get("sleep", 0))
        cur.execute(
            "UPDATE flow_ledger SET ended_at = to_timestamp(%s) WHERE label = %s "
            "AND ended_at IS NULL",
            [time.time(), payload["label"]],
        )


@job("test.cooperative", retry_delay=0)
def cooperative(payload: dict[str, Any]) -> None:
    """Records 'cooperative:started', then works until ``release`` (a path) exists, checking
    between units of work whether to stop: on a worker's shutdown it records 'handed back' and
    gives its job back (``Snooze(0)``), when cancelled it records 'cancelled' and returns."""
    attempt = current_attempt()
    assert attempt is not None

    def mark(label: str) -> None:
        Run.objects.create(job_id=attempt.job_id, label=label, attempt_seen=attempt.attempt)

    mark("cooperative:started")
    release = Path(payload["release"])
    deadline = time.monotonic() + payload.get("timeout", 30)
    while not release.exists() and time.monotonic() < deadline:
        if attempt.stopping:
            mark("cooperative:handed back")
            raise Snooze(0)
        if attempt.is_cancelled():
            mark("cooperative:cancelled")
            return
        time.sleep(0.02)
    mark("cooperative:finished")


@job("test.until_told", max_attempts=1)
def until_told(payload: dict[str, Any], report_progress: ProgressReporter) -> None:
    """Reports progress 1 (it runs, in this pid), then waits until its attempt is cancelled (Cancel)
    or its worker stops (raises Snooze(0)), for ``timeout`` seconds at most (then returns).
    Touches no database: tests run it in a child process of their own."""
    attempt = current_attempt()
    assert attempt is not None
    report_progress(1, f"in {os.getpid()}")
    deadline = time.monotonic() + payload.get("timeout", 30)
    while time.monotonic() < deadline:
        if attempt.is_cancelled():
            raise Cancel("told it was cancelled")
        if attempt.stopping:
            raise Snooze(0)
        time.sleep(0.005)


@job("test.wait", retry_delay=0)
def wait(payload: dict[str, Any]) -> None:
    """Records 'started', then waits until ``release`` (a path) exists, touching the database no
    more: outage tests cut the worker's connections meanwhile."""
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label="wait:started")
    release = Path(payload["release"])
    deadline = time.monotonic() + payload.get("timeout", 30)
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@job("test.query_after_wait", max_attempts=1)
def query_after_wait(payload: dict[str, Any]) -> None:
    """Records 'started:<its session's pid>', waits until ``release`` exists, then writes again:
    the test ends that session meanwhile, so the second write loses its connection."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=f"started:{pid}")
    release = Path(payload["release"])
    deadline = time.monotonic() + payload.get("timeout", 30)
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label="finished")


class Undescribable(Exception):
    """An error ``traceback`` cannot format: reading its notes raises."""

    @property
    def __notes__(self) -> Any:  # type: ignore[override]
        raise RuntimeError("notes unreadable")


@job("test.undescribable")
def undescribable(payload: dict[str, Any]) -> None:
    raise Undescribable(payload.get("message", "undescribable"))


@job("test.pid_block", retry_delay=0)
def pid_block(payload: dict[str, Any], report_progress: ProgressReporter) -> str:
    """Records '<label>:<pid>' (the process running it) and reports progress, then waits like
    test.block; returns its pid. Process-pool tests use it to find, and outlive, a child."""
    label = payload.get("label", "pid")
    Run.objects.create(
        job_id="00000000-0000-0000-0000-000000000000", label=f"{label}:{os.getpid()}"
    )
    report_progress(50, f"in {os.getpid()}")
    release = Path(payload["release"])
    deadline = time.monotonic() + payload.get("timeout", 30)
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return str(os.getpid())


@job("test.exit_process", max_attempts=1)
def exit_process(payload: dict[str, Any]) -> None:
    """Ends the process running it at once, as a crash in C code would (process pool only: in a
    handler thread it would end the worker)."""
    os._exit(payload.get("status", 7))


def _host() -> str:
    """The host (tests/hosts: a network namespace) whose worker runs this handler."""
    return os.environ.get("PGJOBS_TEST_HOST", "here")


@job("test.on_host", retry_delay=0)
def on_host(payload: dict[str, Any]) -> None:
    """Records '<host>:started', works ``seconds`` (sleeps), records '<host>:finished', each
    row under its job's id and attempt: a test across hosts counts from these rows how often
    each job really ran, and where."""
    attempt = current_attempt()
    assert attempt is not None
    Run.objects.create(
        job_id=attempt.job_id, label=f"{_host()}:started", attempt_seen=attempt.attempt
    )
    time.sleep(payload.get("seconds", 0))
    Run.objects.create(
        job_id=attempt.job_id, label=f"{_host()}:finished", attempt_seen=attempt.attempt
    )


@job("test.held_on_host", retry_delay=0)
def held_on_host(payload: dict[str, Any]) -> None:
    """Records '<host>:started', touches ``<dir>/waiting-<attempt>`` (the record's reply has
    reached the handler: cutting its host off from now on cannot leave it waiting for that
    reply), then waits until the file ``<dir>/release-<attempt>`` exists without touching the
    database again (its host may be cut off from it meanwhile), touches
    ``<dir>/returned-<attempt>`` and returns: what it leaves in the database after its start is
    only its worker's write of its outcome."""
    attempt = current_attempt()
    assert attempt is not None
    Run.objects.create(
        job_id=attempt.job_id, label=f"{_host()}:started", attempt_seen=attempt.attempt
    )
    folder = Path(payload["dir"])
    (folder / f"waiting-{attempt.attempt}").touch()
    deadline = time.monotonic() + payload.get("timeout", 30)
    while not (folder / f"release-{attempt.attempt}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    (folder / f"returned-{attempt.attempt}").touch()
