"""Queues as an operator sees them: paused or not, their limits, running and due jobs.

Shared by ``manage.py pgjobs queues`` / ``queue-limits`` and the admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError

from django_pgjobs.conf import conf
from django_pgjobs.models.queues import LIMIT_FIELDS, Queue
from django_pgjobs.observability.status import queue_status
from django_pgjobs.queues.declarations import (
    LEFT_OUT,
    MAXIMUM,
    TAKES,
    Wording,
    limit_problems,
    too_large,
)

# The CLI's options: what each takes.
LIMIT_OPTIONS = {
    "concurrency": "N",
    "worker_concurrency": "N",
    "rate_limit": "N",
    "rate_period": "SECONDS",
    "partition_concurrency": "N",
    "partition_rate_limit": "N",
    "fair": "yes|no",
    "timeout": "SECONDS",
}


@dataclass(frozen=True)
class QueueView:
    name: str
    paused: bool
    limits: str  # described, "" when none
    running: int
    due: int
    overridden: bool


def row_limits(row: Queue) -> dict[str, Any]:
    """A row's limits as the API takes them (durations in seconds)."""
    limits: dict[str, Any] = {name: getattr(row, name) for name in LIMIT_FIELDS}
    for name in ("rate_period", "timeout"):
        if isinstance(limits[name], timedelta):
            limits[name] = limits[name].total_seconds()
    return limits


def describe_limits(limits: dict[str, Any]) -> str:
    parts = []
    if limits.get("concurrency") is not None:
        parts.append(f"at most {limits['concurrency']} running")
    if limits.get("worker_concurrency") is not None:
        parts.append(f"at most {limits['worker_concurrency']} per worker")
    period = limits.get("rate_period") or 1.0
    if limits.get("rate_limit") is not None:
        parts.append(f"at most {limits['rate_limit']} starts per {period:g}s")
    if limits.get("partition_concurrency") is not None:
        parts.append(f"at most {limits['partition_concurrency']} running per partition key")
    if limits.get("partition_rate_limit") is not None:
        parts.append(f"at most {limits['partition_rate_limit']} starts per key per {period:g}s")
    if limits.get("fair"):
        parts.append("keys take turns")
    if limits.get("timeout") is not None:
        parts.append(f"timeout {limits['timeout']:g}s")
    return ", ".join(parts)


def queue_views(*, using: str | None = None) -> list[QueueView]:
    """Every queue that has a row or jobs, by name."""
    alias = using or conf.DATABASE
    rows = {row.name: row for row in Queue.objects.using(alias)}
    counts = queue_status(using=alias).queues
    views = []
    for name in sorted(set(rows) | set(counts)):
        row = rows.get(name)
        count = counts.get(name)
        views.append(
            QueueView(
                name=name,
                paused=bool(row and row.paused),
                limits=describe_limits(row_limits(row)) if row else "",
                running=count.running if count else 0,
                due=count.due if count else 0,
                overridden=bool(row and row.overridden),
            )
        )
    return views


def current_limits(name: str, *, using: str | None = None) -> dict[str, Any]:
    row = Queue.objects.using(using or conf.DATABASE).filter(name=name).first()
    return row_limits(row) if row else {}


def limits_overridden(name: str, *, using: str | None = None) -> bool:
    """Whether queue ``name``'s limits are an operator's (False for a queue without a row)."""
    rows = Queue.objects.using(using or conf.DATABASE).filter(name=name, overridden=True)
    return rows.exists()


def parse_limit(option: str, text: str) -> Any:
    """A CLI value, checked: 'none' removes the limit (``rate_period``: back to the default);
    counts are whole numbers, durations seconds. Raises CommandError saying what to type."""
    try:
        value = _parsed(option, text)
    except ValueError:
        raise CommandError(in_cli(text)(option, text)) from None
    problems = limit_problems({option: value}, in_cli(text))
    if problems:
        raise CommandError(problems[option])
    return value


# What the CLI and the admin take, exactly: a number of seconds (a fraction or an exponent,
# 1e3, allowed; not Python's "nan", "inf" or "1_000", nor a duration like "1:00" or "P1D"),
# and a whole number. A sign is taken so that the range check says what a negative should be.
SECONDS_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
WHOLE_TEXT = re.compile(r"[+-]?\d+")


def _parsed(option: str, text: str) -> Any:
    typed = text.strip()  # " 60 ", as a shell quote or a paste leaves it
    if option == "fair":
        if typed.lower() not in ("yes", "no", "true", "false"):
            raise ValueError(text)
        return typed.lower() in ("yes", "true")
    if typed.lower() == "none":
        return None
    if LIMIT_OPTIONS[option] == "SECONDS":
        if not SECONDS_TEXT.fullmatch(typed):
            raise ValueError(text)
        return float(typed)
    if not WHOLE_TEXT.fullmatch(typed):
        raise ValueError(text)
    return int(typed)


def in_cli(text: str) -> Wording:
    """How ``pgjobs queue-limits`` says what an option takes: its flag, ``none``, and the
    ``text`` typed."""

    def wording(option: str, value: Any) -> str:
        flag = f"--{option.replace('_', '-')}"
        if option == "fair":
            return f"{flag} takes yes or no; got {text!r}."
        if too_large(option, value):
            return f"{flag} is too large: at most {MAXIMUM[option][1]}; got {text!r}."
        example = ", e.g. 60" if option in ("rate_period", "timeout") else ""
        without = LEFT_OUT[option]
        return f"{flag} takes {TAKES[option]}{example}, or none for {without}; got {text!r}."

    return wording
