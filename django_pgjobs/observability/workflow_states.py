"""How ``pgjobs_workflows`` words what a workflow is doing beyond its status: the wait it is in,
said the same way by ``list`` (for a pending workflow) and ``show`` (for its waiting step)."""

from __future__ import annotations

from datetime import datetime

from django_pgjobs.observability.display import local_time


def described_wait(
    workflow_id: str, step_name: str, wait_key: str | None, wake_at: datetime | None
) -> str:
    """A wait in progress in words, from its step row: ``sleeping until <time>``, ``waiting
    (recv 'topic') until <time>``, ``waiting (get_event 'WORKFLOW:KEY')``, ``waiting
    (get_result of 'child')``, with ``, no time limit`` for one without a deadline. The wake-up
    keys are those :mod:`django_pgjobs.workflows.waits` registers; an event's target and key
    both may hold a colon, so they are shown as the key joins them."""
    until = f" until {local_time(wake_at)}" if wake_at is not None else ", no time limit"
    if step_name == "pgjobs.sleep":
        return f"sleeping{until}"
    key = wait_key or ""
    if step_name == "pgjobs.recv":
        topic = key.removeprefix(f"message:{workflow_id}:")
        what = f"recv {topic!r}" if topic else "recv"
    elif step_name == "pgjobs.get_event":
        what = f"get_event {key.removeprefix('event:')!r}"
    elif step_name == "pgjobs.get_result":
        what = f"get_result of {key.removeprefix('result:')!r}"
    else:  # a kind of wait this version does not know (a later one wrote it)
        what = step_name
    return f"waiting ({what}){until}"
