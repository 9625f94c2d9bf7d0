"""``PGJOBS["QUEUES"]``: each queue's limits as settings declare them, checked and normalised.

Mistakes are reported by the system check ``pgjobs.E013`` (and refused by the admin form and the
CLI, which use :func:`limit_problems` too); a worker syncs only valid declarations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import validation
from django_pgjobs.models.queues import LIMIT_FIELDS

_COUNTS = (
    "concurrency",
    "worker_concurrency",
    "rate_limit",
    "partition_concurrency",
    "partition_rate_limit",
)
# A rate window longer than a day would keep a day of ledger rows per queue for no use anyone
# has asked for; a count past this is no limit at all.
MAX_RATE_PERIOD = timedelta(days=1).total_seconds()


def limit_problems(limits: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a queue's limits (field -> message); empty when nothing is."""
    problems: dict[str, str] = {}
    for name in limits:
        if name not in LIMIT_FIELDS:
            problems[name] = f"unknown option {name!r}; the options are {', '.join(LIMIT_FIELDS)}"
    for name in _COUNTS:
        value = limits.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
            problems[name] = (
                f"{name} must be a whole number from 1 to 2147483647, or None; got {value!r}"
            )
    period = limits.get("rate_period")
    if period is not None:
        seconds = period.total_seconds() if isinstance(period, timedelta) else period
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or not 0.001 <= seconds <= MAX_RATE_PERIOD
        ):
            problems["rate_period"] = (
                "rate_period must be seconds or a timedelta from 1 ms to a day; got "
                f"{validation.shown_duration(period)}"
            )
    fair = limits.get("fair")
    if fair is not None and not isinstance(fair, bool):
        problems["fair"] = f"fair must be True or False; got {fair!r}"
    timeout = limits.get("timeout")
    if timeout is not None:
        try:
            validation.check_timeout(timeout)
        except InvalidJobError as exc:
            problems["timeout"] = str(exc).rstrip(".")
    return problems


def normalised(limits: Mapping[str, Any]) -> dict[str, Any]:
    """Valid ``limits`` as the queue row stores them: every option, durations in seconds."""
    out: dict[str, Any] = {name: limits.get(name) for name in LIMIT_FIELDS}
    for name in ("rate_period", "timeout"):
        value = out[name]
        if isinstance(value, timedelta):
            out[name] = value.total_seconds()
    out["fair"] = bool(out["fair"])
    return out


def declared_queues() -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The valid queues of ``PGJOBS["QUEUES"]`` (normalised), and messages for the others."""
    raw = conf.get("QUEUES")
    if not isinstance(raw, Mapping):
        return {}, ['PGJOBS["QUEUES"] must be a dict of queue name -> {"concurrency": ...}.']
    valid: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for name, limits in raw.items():
        where = f'PGJOBS["QUEUES"][{name!r}]'
        try:
            validation.check_name(name, "queue name")
        except InvalidJobError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if not isinstance(limits, Mapping):
            errors.append(f"{where} must be a dict of options, not {type(limits).__name__}.")
            continue
        problems = limit_problems(limits)
        if problems:
            errors.extend(f"{where}: {message.rstrip('.')}." for message in problems.values())
            continue
        valid[name] = normalised(limits)
    return valid, errors
