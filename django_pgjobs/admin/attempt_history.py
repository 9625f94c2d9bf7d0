"""A job's failed attempts on its admin page (and a dead letter's): the ``error_history`` each
failure, rescue and burial appends to, newest last (see ``queries.base.append_failure``).

The history is JSON anyone with SQL can write, so every entry is read defensively: a missing or
odd value shows as a dash, never as an error page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from django_pgjobs.admin.columns import format_time
from django_pgjobs.admin.common import _excerpt
from django_pgjobs.jobs.validation import EARLIEST_TIME, LATEST_TIME
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.queries.base import ERROR_HISTORY_LIMIT
from django_pgjobs.stored_json import UndecodableJSON


class AttemptHistoryColumns:
    @admin.display(description="failed attempts")
    def attempt_history(self, obj: Job | FailedJob) -> str:
        return render_history(obj.error_history, attempts=obj.attempt)


def render_history(history: Any, *, attempts: int) -> str:
    if isinstance(history, UndecodableJSON):
        return f"(cannot be decoded: {history.error})"
    entries = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    if not entries:
        return "—"
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (_row(entry) for entry in entries),
    )
    note = ""
    first = entries[0].get("attempt")
    if isinstance(first, int) and first > 1:
        note = format_html(
            '<p class="help">Attempts before {} are not kept: a job keeps its newest {} '
            "failures (the error field above has the latest in full).</p>",
            first,
            ERROR_HISTORY_LIMIT,
        )
    return format_html(
        '<table class="pgjobs-attempts"><thead><tr><th>attempt</th><th>worker</th>'
        "<th>started</th><th>failed</th><th>exception</th><th>error</th></tr></thead>"
        "<tbody>{}</tbody></table>{}",
        rows,
        note,
    )


def _row(entry: dict[str, Any]) -> tuple[Any, ...]:
    error = str(entry.get("error") or "")
    details = (
        format_html(
            '<details><summary>{}</summary><pre style="white-space: pre-wrap">{}</pre></details>',
            _excerpt(error, 120),
            error,
        )
        if "\n" in error or len(error) > 120
        else error or "—"
    )
    return (
        _text(entry.get("attempt")),
        _text(entry.get("worker")),
        format_time(_time(entry.get("started_at"))),
        format_time(_time(entry.get("failed_at"))),
        _text(entry.get("exception")),
        details,
    )


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else _excerpt(str(value), 200)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Only what the queue itself writes shows as a time: any other (SQL can write year 1 or
    # 9999, which local time cannot hold) shows as a dash.
    if found.tzinfo is None or not EARLIEST_TIME <= found < LATEST_TIME:
        return None
    return found
