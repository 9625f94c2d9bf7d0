"""Queues as an operator sees them: paused or not, their limits, running and due jobs.

Shared by ``manage.py pgjobs queues`` / ``queue-limits`` and the admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError

from django_pgjobs.database import queue_database
from django_pgjobs.models.queues import LIMIT_FIELDS, Queue
from django_pgjobs.observability.display import counted, shell_word
from django_pgjobs.observability.status import queue_status
from django_pgjobs.queues import control
from django_pgjobs.queues.declarations import (
    LEFT_OUT,
    RATE_PERIOD_ALONE,
    TAKES,
    Wording,
    limit_problems,
    rate_in_text,
    rate_period_alone,
    too_large,
    too_large_said,
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
    """``limits`` in words; with ``paused`` among them (a declaration), "paused" first."""
    parts = ["paused"] if limits.get("paused") else []
    if limits.get("concurrency") is not None:
        parts.append(f"at most {limits['concurrency']} running")
    if limits.get("worker_concurrency") is not None:
        parts.append(f"at most {limits['worker_concurrency']} per worker")
    period = limits.get("rate_period") or 1.0
    if limits.get("rate_limit") is not None:
        parts.append(f"at most {counted(limits['rate_limit'], 'start')} per {period:g}s")
    if limits.get("partition_concurrency") is not None:
        parts.append(f"at most {limits['partition_concurrency']} running per partition key")
    if limits.get("partition_rate_limit") is not None:
        starts = counted(limits["partition_rate_limit"], "start")
        parts.append(f"at most {starts} per key per {period:g}s")
    if limits.get("fair"):
        parts.append("keys take turns")
    if limits.get("timeout") is not None:
        parts.append(f"timeout {limits['timeout']:g}s")
    return ", ".join(parts)


def queue_views(*, using: str | None = None) -> list[QueueView]:
    """Every queue that has a row or jobs, by name."""
    alias = queue_database(using)
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
    row = Queue.objects.using(queue_database(using)).filter(name=name).first()
    return row_limits(row) if row else {}


def limits_overridden(name: str, *, using: str | None = None) -> bool:
    """Whether queue ``name``'s options (its limits or its pause) are an operator's (False for a
    queue without a row)."""
    rows = Queue.objects.using(queue_database(using)).filter(name=name, overridden=True)
    return rows.exists()


def queue_paused(name: str, *, using: str | None = None) -> bool:
    return Queue.objects.using(queue_database(using)).filter(name=name, paused=True).exists()


def pause_said(name: str, *, paused: bool, changed: bool, using: str | None = None) -> str:
    """What ``pgjobs pause`` / ``resume`` printed for queue ``name`` (``changed``: it was not
    already so); a change against a pause ``PGJOBS["QUEUES"]`` declares says it overrides."""
    if not changed:
        return f"Queue {name} {'was paused already' if paused else 'was not paused'}."
    said = f"Queue {name} {'paused' if paused else 'resumed'}."
    declared = control.declared_limits(name)
    if declared is not None and declared["paused"] != paused:
        verb = "pauses" if declared["paused"] else "does not pause"
        said += (
            f" PGJOBS['QUEUES'] {verb} it: this overrides the settings until "
            f"`pgjobs queue-limits {shell_word(name)} --reset`."
        )
    return said


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
# and a whole number ("5", not "5.0"). A sign is taken so that the range check says what a
# negative should be. ASCII digits only: Python's \d and int() also take Arabic-Indic or
# full-width digits ("\u0666\u0660", "\uff16\uff10").
SECONDS_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
WHOLE_TEXT = re.compile(r"[+-]?\d+", re.ASCII)
# Spaces around a value, as a shell quote or a paste leaves them; str.strip() would also take
# a thin or no-break space, which no one types on purpose.
ASCII_SPACES = " \t\n\r\f\v"
# A whole number this long is past any count's largest (2147483647); int() refuses past 4,300
# digits, so a longer one is read as the float it is (inf), which the range check calls too
# large.
_DIGITS_READ = 20


def whole_number(text: str) -> int | float:
    """``text`` that :data:`WHOLE_TEXT` matched, as a number: an int, or for a number too long
    to be any count, a float (inf) that the range check refuses as too large."""
    return int(text) if len(text) <= _DIGITS_READ else float(text)


def shown_typed(text: str) -> str:
    """What was typed, as a message echoes it: quoted, and cut short past 40 characters."""
    if len(text) <= 40:
        return repr(text)
    return f"{text[:20]!r}... ({len(text)} characters)"


def _parsed(option: str, text: str) -> Any:
    typed = text.strip(ASCII_SPACES)
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
    return whole_number(typed)


def in_cli(text: str) -> Wording:
    """How ``pgjobs queue-limits`` says what an option takes: its flag, ``none``, and the
    ``text`` typed."""

    def wording(option: str, value: Any) -> str:
        flag, got = f"--{option.replace('_', '-')}", shown_typed(text)
        if option == "fair":
            return f"{flag} takes yes or no; got {got}."
        if too_large(option, value):
            return f"{too_large_said(flag, option)}; got {got}."
        example = ", e.g. 60" if option in ("rate_period", "timeout") else ""
        without = LEFT_OUT[option]
        said = f"{flag} takes {TAKES[option]}{example}, or none for {without}; got {got}."
        read = rate_in_text(option, text)
        if read is not None:  # "10/m", as other queues write a rate
            said += f" For {text.strip()}: {flag} {read[0]} --rate-period {read[1]}."
        return said

    return wording


def queue_limits_said(
    name: str, given: dict[str, str], *, reset: bool, using: str | None = None
) -> str:
    """What ``pgjobs queue-limits`` does to queue ``name`` and the line it prints: with nothing
    ``given``, the queue's limits; with ``reset``, the settings' again; else ``given`` (option ->
    the text typed) over the current limits. A bad value raises CommandError before anything is
    written."""
    if reset and given:
        raise CommandError("--reset takes no other option.")
    # The settings' limits are the base, even before a worker has written them.
    control.sync_declared_queues(using=using)
    source = "as PGJOBS['QUEUES'] says"
    if control.declared_limits(name) is None:
        source = "as for a queue PGJOBS['QUEUES'] does not name"
    was_overridden = limits_overridden(name, using=using)
    was_paused = queue_paused(name, using=using)
    if reset:
        if not control.reset_queue_limits(name, using=using):
            raise CommandError(f"Queue {name!r} has no limits to reset.")
        paused = queue_paused(name, using=using)
        limits = {**current_limits(name, using=using), "paused": paused}
        ended = "override ended" if was_overridden else "nothing to reset"
        if was_paused != paused:
            ended += f" ({'paused' if paused else 'resumed'})"
        return f"Queue {name}: {describe_limits(limits) or 'no limits'}, {source}: {ended}."
    limits = current_limits(name, using=using)
    if not given:
        whose = "changed by an operator" if was_overridden else source
        shown = {**limits, "paused": was_paused}
        return f"Queue {name}: {describe_limits(shown) or 'no limits'} ({whose})."
    limits.update({option: parse_limit(option, text) for option, text in given.items()})
    if "rate_period" not in given and rate_period_alone(limits):
        # The last rate limit removed (none): its window goes back to the default with it.
        limits["rate_period"] = None
    if rate_period_alone(limits):
        raise CommandError(RATE_PERIOD_ALONE)
    described = describe_limits(limits) or "no limits"
    if not control.set_queue_limits(name, using=using, **limits):
        # Not an override: the settings (or no limits) go on deciding.
        return f"Queue {name}: nothing changed ({described})."
    if not limits_overridden(name, using=using):
        # The settings' limits again (none, for a queue they do not name): no override.
        return f"Queue {name}: {described}, {source}: " + (
            "override ended." if was_overridden else "no override."
        )
    return f"Queue {name}: {described}."
