"""A workflow's steps on its detail page: a bounded table, and one step's whole value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.admin.utils import quote
from django.http import Http404, HttpResponse
from django.urls import reverse

from django_pgjobs.admin.common import _WORKFLOW_COLOURS, _badge, _excerpt
from django_pgjobs.admin.previews import (
    as_text,
    bounded,
    inert_response,
    traceback_of,
    whole_or_head,
)
from django_pgjobs.conf import conf
from django_pgjobs.models import WorkflowStep, WorkflowStepStatus

# A workflow's detail page lists at most this many steps (a workflow may loop over thousands).
STEPS_SHOWN = 500
# What the steps table reads of one step's output or traceback.
STEP_CHARS = 2_000


def error_summary(obj: Any, prefix: str) -> str:
    """``ValueError: card declined`` from a recorded error ({"type", "message", ...}), read
    from the bounded annotations of ``traceback_of(prefix)``."""
    kind = str(getattr(obj, f"{prefix}_type", None) or "").rpartition(".")[2]
    message = str(getattr(obj, f"{prefix}_message", None) or "")
    if not kind and not message:  # not an object as the runtime writes it (SQL wrote it)
        return str(getattr(obj, f"{prefix}_head", None) or "")
    return f"{kind}: {message}" if kind else message


def _step_row(step: WorkflowStep, raw_url: Callable[[str], str]) -> dict[str, Any]:
    """One line of the steps table: an excerpt of the output (or error, or what the step waits
    for), and more of it (bounded, with a link to all of it) when the excerpt cuts it short."""
    full = ""
    if step.status == WorkflowStepStatus.WAITING:
        text = f"waiting for {step.wait_key or 'its deadline'}"
    elif getattr(step, "error_head", None) is not None:
        text = error_summary(step, "error")
        if getattr(step, "error_traceback_head", None):
            full = whole_or_head(
                step,
                "error_traceback",
                json_value=False,
                raw_url=raw_url("error"),
                limit=STEP_CHARS,
            )
    else:
        text = str(getattr(step, "output_head", None) or "null")
        if _excerpt(text) != text:
            full = whole_or_head(
                step, "output", json_value=True, raw_url=raw_url("output"), limit=STEP_CHARS
            )
    return {
        "index": step.step_index,
        "name": step.step_name,
        "badge": _badge(step.status, _WORKFLOW_COLOURS.get(step.status, "#7a7a7a")),
        "excerpt": _excerpt(text),
        "full": full,
        "attempts": step.attempts,
        "wake_at": step.wake_at,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
    }


def step_heads() -> dict[str, Any]:
    """What the steps table reads of each step's output and error: a few KB, not megabytes."""
    return bounded("output", as_text("output", json_column=True), STEP_CHARS) | {
        **bounded("error", as_text("error", json_column=True), STEP_CHARS),
        **traceback_of("error", STEP_CHARS),
    }


def steps_table(workflow_id: str) -> dict[str, Any]:
    """The template context of the steps table: at most STEPS_SHOWN rows of bounded text."""
    rows = list(
        WorkflowStep.objects.using(conf.DATABASE)
        .filter(workflow_id=workflow_id)
        .defer("output", "error")
        .annotate(**step_heads())
        .order_by("step_index")[: STEPS_SHOWN + 1]
    )

    def raw_url(index: int) -> Callable[[str], str]:
        name = "admin:pgjobs_workflowexecution_step_raw"
        return lambda field: reverse(name, args=[quote(workflow_id), index, field])

    return {
        "workflow_steps": [_step_row(row, raw_url(row.step_index)) for row in rows[:STEPS_SHOWN]],
        "more_steps": len(rows) > STEPS_SHOWN,
        "steps_shown": STEPS_SHOWN,
    }


def step_raw_response(workflow_id: str, index: int, field: str) -> HttpResponse:
    """One step's whole output or error, as stored (the caller checked the permission)."""
    if field not in ("output", "error"):
        raise Http404(f"No raw view of {field!r}.")
    found = (
        WorkflowStep.objects.using(conf.DATABASE)
        .filter(workflow_id=workflow_id, step_index=index)
        .annotate(raw_text=as_text(field, json_column=True))
        .values_list("raw_text", flat=True)
    )
    if not found:
        raise Http404("No such step.")
    return inert_response(found[0] or "null", json_value=True)
