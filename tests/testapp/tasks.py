"""Django tasks the tests (and their worker subprocesses) run through PgJobsBackend. Each records
what really happened."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django_pgjobs import Cancel, Discard, Retry, Snooze
from django_pgjobs.tasks.definitions import PgJobsTaskContext
from django_pgjobs.tasks.framework import task
from tests.testapp.models import Run


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=5)
def record_task(label: str, *, attempt_seen: int = 0) -> str:
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=label)
    return label


@task()
async def add_async(a: int, b: int) -> int:
    return a + b


@task(max_attempts=2, backoff=0)  # type: ignore[call-overload, untyped-decorator]
def fail_task(message: str) -> None:
    raise ValueError(message)


def _stop_on_lookup(exc: BaseException, task_result: Any) -> float | None:
    """A backoff callable: no retry for a LookupError; otherwise run again at once."""
    return None if isinstance(exc, LookupError) else 0


@task(max_attempts=5, backoff=_stop_on_lookup)  # type: ignore[call-overload, untyped-decorator]
def fail_with(kind: str) -> None:
    raise {"lookup": LookupError, "value": ValueError}[kind](kind)


@task(takes_context=True, max_attempts=3, backoff=0)  # type: ignore[call-overload, untyped-decorator]
def flaky_context(context: PgJobsTaskContext, succeed_on: int) -> dict[str, Any]:
    """Fails until attempt ``succeed_on``; saves its metadata on the way."""
    context.metadata["seen"] = [*context.metadata.get("seen", []), context.attempt]
    context.save_metadata()
    context.report_progress(50, "half way")
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
def unstorable() -> object:
    return object()


@task(max_attempts=2, backoff=0)  # type: ignore[call-overload, untyped-decorator]
def wait_for_file(path: str, label: str) -> str:
    """Records its start, then runs until ``path`` exists (a test kills its worker meanwhile)."""
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=f"{label} started")
    deadline = time.monotonic() + 60
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    Run.objects.create(job_id="00000000-0000-0000-0000-000000000000", label=f"{label} done")
    return label


@task
def fail_plain(message: str) -> None:
    """Sets no max_attempts or backoff: the backend's OPTIONS decide."""
    raise ValueError(message)


@task(takes_context=True, max_attempts=3, backoff=0)  # type: ignore[call-overload, untyped-decorator]
def progress_then_note(context: PgJobsTaskContext) -> str:
    """Attempt 1 reports progress and fails; attempt 2 only saves a note in its metadata."""
    if context.attempt == 1:
        context.report_progress(50, "half way")
        raise RuntimeError("attempt 1 fails")
    context.metadata["note"] = "attempt 2"
    context.save_metadata()
    return "ok"


@task(takes_context=True)  # type: ignore[arg-type]
async def note_async(context: PgJobsTaskContext, note: str) -> bool:
    """An async task saving its metadata with asave_metadata()."""
    context.metadata["note"] = note
    return await context.asave_metadata()


@task(takes_context=True, max_attempts=3, backoff=3600)  # type: ignore[call-overload, untyped-decorator]
def controlled(context: PgJobsTaskContext, outcome: str) -> str:
    """Raises the outcome named: snooze, retry (in 5 s, not the task's hour), discard, cancel.
    'watch' works until it is cancelled or its worker stops and records which (and what
    report_progress said then); stopping, it hands itself back."""
    if outcome == "snooze":
        raise Snooze(60)
    if outcome == "retry":
        raise Retry("rate limited", delay=5)
    if outcome == "discard":
        raise Discard("unknown customer")
    if outcome == "cancel":
        raise Cancel("order withdrawn")
    context.report_progress(5, "watching")
    Run.objects.create(job_id=context.task_result.id, label="watch:started")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if context.is_cancelled() or context.stopping:
            break
        time.sleep(0.01)
    label = "cancelled" if context.is_cancelled() else "stopping" if context.stopping else "neither"
    progress = context.report_progress(50, "still here?")
    Run.objects.create(job_id=context.task_result.id, label=f"watch:{label}:{progress}")
    if context.stopping:
        raise Snooze(0)
    return label


def _account_key(account: int, *args: Any, **kwargs: Any) -> str | None:
    """A partition_key callable: the task's arguments, as the task gets them."""
    return None if account == 0 else f"account:{account}"


@task(partition_key=_account_key)  # type: ignore[call-overload, untyped-decorator]
def post_entry(account: int, amount: int = 0) -> int:
    return amount


@task(partition_key="reports")  # type: ignore[call-overload, untyped-decorator]
def build_report(title: str = "") -> str:
    return title
