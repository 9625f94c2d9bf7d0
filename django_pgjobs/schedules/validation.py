"""What makes a schedule unable to run, by field. A leaf: the model's ``clean()``, the system
check ``pgjobs.E010`` and the declarations all ask it, and it imports none of them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone as django_timezone

from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.registry import registry
from django_pgjobs.schedules.crontab import InvalidScheduleError, get_timezone, next_tick, parse

# The key under which a tick's job receives its scheduled fire time (ISO 8601, UTC).
FIRE_TIME_KEY = "fire_time"
# The most missed ticks one catch-up fires: each is a job, all inserted in one statement (and
# computed in memory first), so the bound keeps a long outage from becoming one huge insert.
MAX_CATCH_UP_LIMIT = 1000


def default_timezone() -> str:
    return str(getattr(settings, "TIME_ZONE", None) or "UTC")


def option_problems(
    *, name: object, queue: object, priority: object, partition_key: object = None
) -> dict[str, str]:
    """The checks enqueue applies to the same values: a tick must never fail its insert."""
    problems: dict[str, str] = {}
    for label, value, check in (
        ("name", name, lambda v: validation.check_name(v, "schedule name")),
        ("queue", queue, lambda v: validation.check_name(v, "queue name")),
        ("priority", priority, validation.check_priority),
        ("partition_key", partition_key, validation.check_partition_key),
    ):
        if value is None and label != "name":
            continue
        try:
            check(value)
        except InvalidJobError as exc:
            problems[label] = str(exc)
    return problems


def declaration_problems(
    *,
    cron: str,
    timezone: str,
    start: datetime | None,
    end: datetime | None,
    job_name: str,
    payload: Any,
    partition_key: str | None = None,
) -> dict[str, str]:
    """What is wrong with a schedule, by field; empty when it can run. Without a
    ``partition_key`` of its own, a tick's job gets its handler's: a handler's callable is
    asked here with the payload a tick sends."""
    problems: dict[str, str] = {}
    for moment, label in ((start, "start_at"), (end, "end_at")):
        if moment is not None and not isinstance(moment, datetime):
            problems[label] = f"Use an aware datetime, not {type(moment).__name__}."
    if problems:
        return problems
    # The zone apart from the expression, so that a bad zone does not hide a bad expression
    # (parse() stops at the zone): a form shows every error at once, not one per submission.
    try:
        get_timezone(timezone)
    except InvalidScheduleError as exc:
        problems["timezone"] = str(exc)
    try:
        spec = parse(cron, timezone="UTC" if "timezone" in problems else timezone, start=start)
    except InvalidScheduleError as exc:
        problems["cron"] = str(exc)
    else:
        # A first tick no table can store: the schedule would be over before it began. Not
        # asked in a zone that is wrong: the answer would be the UTC one's.
        after = start or django_timezone.now()
        if (
            "timezone" not in problems
            and django_timezone.is_aware(after)
            and validation.EARLIEST_TIME < after < validation.LATEST_TIME
            and next_tick(spec, after - timedelta(microseconds=1)) is None
        ):
            problems["cron"] = (
                f"{cron!r} would first fire at or after {validation.LATEST_TIME:%Y-%m-%d} (UTC), "
                "past the latest time pgjobs stores: it would never run. Use a shorter interval "
                "or an earlier start_at."
            )
    if start is not None and end is not None and end <= start:
        problems["end_at"] = "The window's end must be after its start."
    for moment, name in ((start, "start_at"), (end, "end_at")):
        if moment is not None and django_timezone.is_naive(moment):
            problems[name] = "Use an aware datetime."
        elif moment is not None:
            # 9999-12-31 is stored happily, then breaks every page and command that shows it.
            try:
                validation.check_time_range(moment, "This time")
            except InvalidJobError as exc:
                problems[name] = f"{exc} Leave it empty for no bound."
    try:
        validation.check_job_name(job_name)
    except InvalidJobError as exc:
        problems["job_name"] = str(exc)
    else:
        if registry.get(job_name) is None:
            known = ", ".join(
                n for n in registry.names() if not n.startswith(validation.RESERVED_PREFIX)
            )
            problems["job_name"] = (
                f"No job handler is registered as {job_name!r} (registered: {known or 'none'})."
            )
    if not isinstance(payload, dict):
        problems["payload"] = "A schedule's payload must be a JSON object."
    elif FIRE_TIME_KEY in payload:
        problems["payload"] = f"{FIRE_TIME_KEY!r} is set by the scheduler on every tick; rename it."
    else:
        # What enqueue checks (JSON, NUL, surrogates, MAX_PAYLOAD_BYTES): every tick enqueues it.
        try:
            validation.dump_payload(payload)
            handler = registry.get(job_name)
            if handler is not None:
                handler.check_payload(payload)  # a task's: {"args": [...], "kwargs": {...}}
        except (PayloadNotSerializable, InvalidJobError) as exc:
            problems["payload"] = str(exc)
        else:
            problem = _handler_partition_key_problem(job_name, payload, partition_key)
            if problem is not None:
                problems["partition_key"] = problem
    return problems


def tick_payload(payload: dict[str, Any], fire_time: str) -> dict[str, Any]:
    """What a tick's job receives: the schedule's payload and its fire time (ISO 8601)."""
    return {**payload, FIRE_TIME_KEY: fire_time}


def _handler_partition_key_problem(
    job_name: str, payload: dict[str, Any], partition_key: str | None
) -> str | None:
    """Whether the handler's partition key callable can key a tick of ``payload`` (asked with
    the payload a tick would send now); None when the schedule has a key of its own."""
    handler = registry.get(job_name)
    if partition_key is not None or handler is None or not callable(handler.partition_key):
        return None
    try:
        handler.partition_key_for(tick_payload(payload, django_timezone.now().isoformat()))
    except InvalidJobError as exc:
        return f"{exc} (asked with this schedule's payload; give the schedule a partition key)"
    return None


def catch_up_limit_problem(value: object) -> str | None:
    """What is wrong with a ``catch_up_limit``, if anything."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"catch_up_limit must be an int from 1 to {MAX_CATCH_UP_LIMIT}; got {value!r}."
    if not 1 <= value <= MAX_CATCH_UP_LIMIT:
        return (
            f"catch_up_limit must be from 1 to {MAX_CATCH_UP_LIMIT} (each missed tick run is a "
            f"job, all enqueued at once); got {value}."
        )
    return None
