"""Schedules declared in code (``@cron``, ``schedule()``) and in ``PGJOBS["SCHEDULES"]``, their
validation, and their sync into ``pgjobs_schedules``.

Declarations are only recorded here; mistakes are reported by the system check ``pgjobs.E010``
(and by the admin form, which uses the same :func:`declaration_problems`), never by a crashed
scheduler.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypedDict, TypeVar, Unpack

import psycopg

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import CatchUp, ScheduleSource
from django_pgjobs.schedules.validation import (
    catch_up_limit_problem,
    declaration_problems,
    default_timezone,
    option_problems,
)

logger = logging.getLogger("django_pgjobs.scheduler")

# What @cron decorates: a @job handler or a Django task (any object with a module_path).
Scheduled = TypeVar("Scheduled")


@dataclass(frozen=True)
class Declaration:
    name: str
    cron: str
    job_name: str
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    partition_key: str | None = None
    timezone: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    catch_up: str = CatchUp.SKIP
    catch_up_limit: int = 10
    source: str = ScheduleSource.CODE

    def problems(self) -> dict[str, str]:
        found = option_problems(
            name=self.name,
            queue=self.queue,
            priority=self.priority,
            partition_key=self.partition_key,
        )
        found |= declaration_problems(
            cron=self.cron,
            timezone=self.timezone or default_timezone(),
            start=self.start,
            end=self.end,
            job_name=self.job_name,
            payload=self.payload,
            partition_key=self.partition_key,
        )
        if self.catch_up not in CatchUp.values:
            found["catch_up"] = f"catch_up must be one of {', '.join(CatchUp.values)}."
        limit_problem = catch_up_limit_problem(self.catch_up_limit)
        if limit_problem is not None:
            found["catch_up_limit"] = limit_problem
        return found

    def option_name(self, field_name: str) -> str:
        """The name this declaration's source gives a field (``start``, not ``start_at``): what
        a check's hint must say."""
        names = {"start_at": "start", "end_at": "end"}
        if self.source == ScheduleSource.SETTINGS:
            names["job_name"] = "job"
        return names.get(field_name, field_name)


_declared: dict[str, Declaration] = {}
_redeclared: dict[str, list[Declaration]] = {}


class ScheduleOptions(TypedDict, total=False):
    """Everything about a schedule but its name, expression and job (see :func:`schedule`)."""

    payload: Mapping[str, Any] | None
    queue: str | None
    priority: int | None
    partition_key: str | None
    timezone: str | None
    start: datetime | None
    end: datetime | None
    catch_up: str
    catch_up_limit: int


def schedule(
    name: str, *, cron: str, job_name: str, **options: Unpack[ScheduleOptions]
) -> Declaration:
    """Declare a schedule in code: run ``job_name`` on ``cron`` (see
    :mod:`django_pgjobs.schedules.crontab`).

    ``partition_key`` is the partition key of the schedule's jobs (default: the handler's,
    see ``@job(partition_key=...)``). ``timezone`` defaults to ``settings.TIME_ZONE``.
    ``catch_up`` decides what happens to ticks missed while no scheduler ran: ``"skip"`` them,
    run the ``"latest"`` once, or run ``"all"`` (at most ``catch_up_limit``, the most recent).
    ``start``/``end`` bound the series.
    """
    fields: dict[str, Any] = {**options, "payload": dict(options.get("payload") or {})}
    declaration = Declaration(name=name, cron=cron, job_name=job_name, **fields)
    existing = _declared.get(name)
    # Importing a module again declares the same schedule again; a different one under the same
    # name (two @cron on one job without name=, two apps) would silently replace the first.
    if existing is not None and existing != declaration:
        _redeclared.setdefault(name, [existing]).append(declaration)
    _declared[name] = declaration
    return declaration


def redeclared() -> dict[str, list[Declaration]]:
    """Names declared in code more than once with different settings (the check pgjobs.E012)."""
    return {name: list(found) for name, found in _redeclared.items()}


def cron(
    expression: str, *, name: str | None = None, **options: Unpack[ScheduleOptions]
) -> Callable[[Scheduled], Scheduled]:
    """Run the ``@job`` (or Django ``@task``) below on a schedule: ``@cron("*/5 * * * *")``
    stacked on ``@job(...)`` or ``@task(...)``.

    The schedule is named after the job (a task's module path) unless ``name`` is given; stack
    several ``@cron`` with different names for several schedules. Options as for
    :func:`schedule`; a task's ``payload`` is ``{"args": [...], "kwargs": {...}}`` (default: no
    arguments).
    """

    def decorate(handler: Scheduled) -> Scheduled:
        module_path = getattr(handler, "module_path", None)
        if isinstance(handler, JobHandler):
            job_name = handler.name
        elif isinstance(module_path, str) and callable(getattr(handler, "enqueue", None)):
            job_name = module_path  # a Django task: its jobs are named so
        else:
            raise TypeError(
                "@cron goes above @job or @task: it schedules a registered job handler or task."
            )
        schedule(name or job_name, cron=expression, job_name=job_name, **options)
        return handler

    return decorate


# The keys of a PGJOBS["SCHEDULES"] entry ("cron" and "job" required), in the documented order.
SETTINGS_KEYS = (
    "cron",
    "job",
    "payload",
    "queue",
    "priority",
    "partition_key",
    "timezone",
    "start",
    "end",
    "catch_up",
    "catch_up_limit",
)


def settings_declarations() -> tuple[list[Declaration], list[str]]:
    """Declarations from ``PGJOBS["SCHEDULES"]``, and messages for entries that are malformed."""
    raw = conf.get("SCHEDULES")
    if not isinstance(raw, Mapping):
        return [], ['PGJOBS["SCHEDULES"] must be a dict of name -> {"cron": ..., "job": ...}.']
    found: list[Declaration] = []
    errors: list[str] = []
    for name, entry in raw.items():
        if not isinstance(entry, Mapping) or "cron" not in entry or "job" not in entry:
            errors.append(f"Schedule {name!r} needs at least 'cron' and 'job'.")
            continue
        unknown = sorted(set(entry) - set(SETTINGS_KEYS), key=str)
        if unknown:
            errors.append(
                f"Schedule {name!r} has unknown key(s): {', '.join(map(str, unknown))}; the "
                f"allowed keys are {', '.join(SETTINGS_KEYS)}."
            )
            continue
        found.append(
            Declaration(
                name=str(name),
                cron=entry["cron"],
                job_name=entry["job"],
                payload=entry.get("payload", {}),
                queue=entry.get("queue"),
                priority=entry.get("priority"),
                partition_key=entry.get("partition_key"),
                timezone=entry.get("timezone"),
                start=entry.get("start"),
                end=entry.get("end"),
                catch_up=entry.get("catch_up", CatchUp.SKIP),
                catch_up_limit=entry.get("catch_up_limit", 10),
                source=ScheduleSource.SETTINGS,
            )
        )
    return found, errors


def declarations() -> list[Declaration]:
    """Every declared schedule; settings win over code for the same name."""
    merged = dict(_declared)
    merged.update({d.name: d for d in settings_declarations()[0]})
    return sorted(merged.values(), key=lambda d: d.name)


def forget(name: str) -> None:
    """Remove a code declaration (tests)."""
    _declared.pop(name, None)
    _redeclared.pop(name, None)


class SyncedSchedules(NamedTuple):
    created: int
    updated: int  # changed since the last sync (unchanged ones are not written)
    orphaned: int  # no longer declared


def sync_schedules(cur: queries.Cursor) -> SyncedSchedules:
    """Write valid declarations to ``pgjobs_schedules`` and mark rows whose declaration is gone.

    Returns how many rows it created, updated and orphaned. Invalid declarations are left out
    (the system check names them). An operator's enable/disable of a declared schedule survives
    a re-sync; a schedule removed from code is disabled, and enabled again if it comes back.
    """
    valid = [d for d in declarations() if not d.problems()]
    rows = [
        {
            "name": d.name,
            "cron": " ".join(d.cron.split()),
            "job_name": d.job_name,
            "payload": json.dumps(d.payload),
            "queue": d.queue,
            "priority": d.priority,
            "partition_key": d.partition_key,
            "timezone": d.timezone or default_timezone(),
            "start_at": d.start,
            "end_at": d.end,
            "catch_up": d.catch_up,
            "catch_up_limit": d.catch_up_limit,
            "source": d.source,
        }
        for d in valid
    ]
    written: Counter[str | None] = Counter()
    for row in rows:
        try:
            written[queries.upsert_declared_schedule(cur, row)] += 1
        except psycopg.DataError as exc:
            # One unstorable declaration must not stop the others from syncing.
            logger.error("Could not sync schedule %r: %s", row["name"], exc)
    orphaned = queries.orphan_undeclared_schedules(cur, names=[d.name for d in valid])
    return SyncedSchedules(written["created"], written["updated"], orphaned)
