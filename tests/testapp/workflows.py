"""Workflows the tests (and their worker subprocesses) run. Steps record each real execution in
``Run`` rows, so a test can count how many times a step's body actually ran."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django_pgjobs import (
    Cancel,
    Discard,
    Retry,
    Snooze,
    get_event,
    recv,
    send,
    set_event,
    sleep,
    start_workflow,
    step,
    transaction_step,
    workflow,
)
from django_pgjobs.exceptions import WorkflowSerializationError
from django_pgjobs.workflows import current_workflow_id
from tests.testapp.models import Run

ZERO = "00000000-0000-0000-0000-000000000000"


def runs(label: str) -> int:
    return Run.objects.filter(label=label).count()


@step
def note(label: str) -> str:
    Run.objects.create(job_id=ZERO, label=label)
    return label


@transaction_step
def reserve(label: str) -> int:
    """Writes in the step's transaction: its row exists exactly once however often we crash."""
    Run.objects.create(job_id=ZERO, label=label)
    return runs(label)


@step
def gate(label: str, flag: str) -> str:
    """Blocks while the file ``flag`` exists (at most a minute): the test kills the worker here."""
    Run.objects.create(job_id=ZERO, label=label)
    # Polls the milestone itself: the test removing the file may be another process. Bounded,
    # so a test that failed before removing it cannot hang a worker thread for ever.
    deadline = time.monotonic() + 60
    while Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "passed"


@workflow("test.five_steps", max_recovery_attempts=3)
def five_steps(tag: str, flag: str) -> list[Any]:
    return [
        note(f"{tag}:0"),
        reserve(f"{tag}:1"),
        note(f"{tag}:2"),
        gate(f"{tag}:3", flag),
        note(f"{tag}:4"),
    ]


@workflow("test.greet")
def greet(name: str, punctuation: str = "!") -> str:
    return str(note(f"hello {name}")) + punctuation


@step(retries_allowed=True, max_attempts=3, interval_seconds=0.2, backoff_rate=2.0)
def flaky_step(label: str, succeed_on: int) -> int:
    Run.objects.create(job_id=ZERO, label=label)
    if runs(label) < succeed_on:
        raise ConnectionError(f"attempt {runs(label)} failed")
    return runs(label)


@workflow("test.flaky")
def flaky(label: str, succeed_on: int) -> int:
    return int(flaky_step(label, succeed_on))


@workflow("test.fails")
def fails(message: str) -> None:
    note("before failing")
    raise ValueError(message)


@step
def not_json() -> object:
    return object()


@workflow("test.not_json")
def returns_not_json() -> None:
    not_json()


@workflow("test.branches")
def branches(tag: str) -> str:
    """Non-deterministic: which step it calls depends on a Run row, not on its inputs."""
    if runs(f"{tag}:flag"):
        return str(note(f"{tag}:b"))
    return str(reserve(f"{tag}:a"))


@workflow("test.sleeper")
def sleeper(tag: str, seconds: float) -> str:
    note(f"{tag}:before")
    sleep(seconds)
    return str(note(f"{tag}:after"))


@workflow("test.receiver")
def receiver(topic: str | None, timeout: float) -> list[Any]:
    first = recv(topic, timeout=timeout)
    second = recv(topic, timeout=timeout)
    return [first, second]


@workflow("test.publisher")
def publisher(tag: str) -> str:
    set_event("stage", "started")
    note(f"{tag}:work")
    set_event("stage", "done")
    return "published"


@workflow("test.event_waiter")
def event_waiter(target: str, timeout: float) -> Any:
    return get_event(target, "stage", timeout=timeout)


@workflow("test.child")
def child(n: int) -> int:
    return int(note(f"child {n}").split()[-1]) * 10


@workflow("test.parent")
def parent(count: int) -> list[int]:
    handles = [start_workflow(child, n) for n in range(count)]
    return [int(h.get_result()) for h in handles]


@workflow("test.ping")
def ping(peer: str) -> Any:
    send(peer, {"reply_to": current_workflow_id()}, topic="ping")
    return recv("pong", timeout=30)


@workflow("test.pong")
def pong() -> Any:
    got = recv("ping", timeout=30)
    send(got["reply_to"], "pong!", topic="pong")
    return got


@step
def die(label: str) -> None:
    """Kills the worker process running it, as an OOM killer would."""
    import os
    import signal

    Run.objects.create(job_id=ZERO, label=label)
    os.kill(os.getpid(), signal.SIGKILL)


@workflow("test.crashes_its_worker", max_recovery_attempts=1)
def crashes_its_worker(tag: str) -> None:
    note(f"{tag}:before")
    die(f"{tag}:die")


@transaction_step
def hold_transaction(label: str, flag: str) -> int:
    """Writes in the step's transaction, touches ``<flag>.started``, then waits while ``flag``
    exists: the test terminates this step's database session here."""
    Run.objects.create(job_id=ZERO, label=label)
    Path(f"{flag}.started").touch()
    deadline = time.monotonic() + 60  # bounded, as gate() is
    while Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return runs(label)  # the first statement after the session ended


@workflow("test.atomic_step_loses_its_connection", max_recovery_attempts=3)
def atomic_step_loses_its_connection(tag: str, flag: str) -> list[Any]:
    return [note(f"{tag}:0"), hold_transaction(f"{tag}:1", flag), note(f"{tag}:2")]


@step(retries_allowed=True, max_attempts=3, interval_seconds=3600)
def controlled_step(label: str, outcome: str) -> int:
    """Raises the outcome named until its third run: 'retry' is Retry(delay=0), not the hour its
    interval says; 'discard' is Discard, which no retry may follow."""
    Run.objects.create(job_id=ZERO, label=label)
    if runs(label) < 3:
        raise Retry(delay=0) if outcome == "retry" else Discard("no use")
    return runs(label)


@workflow("test.controlled")
def controlled(label: str, outcome: str) -> int:
    """A body that raises Snooze or Cancel ('snooze', 'cancel'), else calls controlled_step."""
    if outcome == "snooze":
        raise Snooze(30)
    if outcome == "cancel":
        raise Cancel("not needed")
    steps: int = controlled_step(label, outcome)
    return steps


@workflow("test.gap")
def gap(tag: str) -> list[str]:
    """Step 1 takes its index and raises before it is recorded (an argument that is not JSON),
    which the workflow catches: its steps are 0 and 2."""
    done = [note(f"{tag}:0")]
    try:
        note(object())
    except WorkflowSerializationError:
        done.append("skipped")
    done.append(note(f"{tag}:2"))
    return done
