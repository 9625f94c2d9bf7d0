"""``PGJOBS["QUEUES"]``: each queue's options as settings declare them (its limits, and whether
it starts ``paused``), checked and normalised.

Mistakes are reported by the system check ``pgjobs.E013`` (and refused by the admin form and the
CLI, which use :func:`limit_problems` too); a worker syncs only valid declarations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.validation import MAX_INT
from django_pgjobs.models.queues import LIMIT_FIELDS

# What settings declare: the limits, and ``paused`` (an operator pauses and resumes with
# pause_queue() / resume_queue(), not with the limits).
DECLARED_OPTIONS = (*LIMIT_FIELDS, "paused")
COUNTS = (
    "concurrency",
    "worker_concurrency",
    "rate_limit",
    "partition_concurrency",
    "partition_rate_limit",
)
# A rate window longer than a day would keep a day of ledger rows per queue for no use anyone
# has asked for; a count past this is no limit at all.
MAX_RATE_PERIOD = timedelta(days=1).total_seconds()
MIN_RATE_PERIOD = 0.001
# As a job's (the CHECK here: pgjobs_queue_durations_positive).
MIN_TIMEOUT = validation.MIN_TIMEOUT

# What each option takes and what leaving it out means, in words shared by every place that
# takes limits. Each place says them its own way (a :data:`Wording`): how it names the option,
# how "leave it out" is written there (None in Python, an empty field in the admin, ``none`` in
# the CLI), and what it got.
TAKES = {
    **dict.fromkeys(COUNTS, f"a whole number from 1 to {MAX_INT}"),
    "rate_period": f"seconds from {MIN_RATE_PERIOD:g} to {MAX_RATE_PERIOD:.0f} (a day)",
    "timeout": f"seconds from {MIN_TIMEOUT:g} to {validation.MAX_TIMEOUT:.0f} (a year)",
}
LEFT_OUT = {
    **dict.fromkeys(COUNTS, "no limit"),
    "rate_period": "the default (1 second)",
    "timeout": "no timeout",
}

# The largest value of each numeric option, and how messages say it ("too large: at most ...").
MAXIMUM = {
    **{name: (float(MAX_INT), f"{MAX_INT}") for name in COUNTS},
    "rate_period": (MAX_RATE_PERIOD, f"{MAX_RATE_PERIOD:.0f} seconds (a day)"),
    "timeout": (validation.MAX_TIMEOUT, f"{validation.MAX_TIMEOUT:.0f} seconds (a year)"),
}


# A rate window without a rate to apply it to: the CLI, the admin and set_queue_limits() refuse
# it in these words (it was stored, marked the queue overridden, and shown nowhere).
DEFAULT_RATE_PERIOD = 1.0
RATE_PERIOD_ALONE = (
    "A rate period needs a rate limit (rate_limit or partition_rate_limit): alone it limits "
    f"nothing. Set one, or leave the rate period at its default ({DEFAULT_RATE_PERIOD:g} second)."
)


def rate_period_alone(limits: Mapping[str, Any]) -> bool:
    """``limits`` (every option; one left out is None) set a rate period other than the
    default and neither rate limit: :data:`RATE_PERIOD_ALONE` says so."""
    period = limits.get("rate_period")
    seconds = period.total_seconds() if isinstance(period, timedelta) else period
    return (
        seconds is not None
        and seconds != DEFAULT_RATE_PERIOD
        and limits.get("rate_limit") is None
        and limits.get("partition_rate_limit") is None
    )


def too_large_said(named: object, option: str) -> str:
    """How the CLI and the admin say a value is past ``option``'s largest; ``named`` is how
    the place names it (``--timeout``, "Timeout")."""
    return f"{named} is too large: at most {MAXIMUM[option][1]}"


def too_large(option: str, value: object) -> bool:
    """``value`` is a number (or timedelta) past ``option``'s largest: a message says so first."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if option not in MAXIMUM or isinstance(seconds, bool):
        return False
    return isinstance(seconds, int | float) and seconds > MAXIMUM[option][0]


# (option, the value refused) -> the message saying what the option takes where it was given.
Wording = Callable[[str, Any], str]


# A rate written as other libraries take it ("10/m", "100 / hour"): the message shows our two
# options for it.
_RATE_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
                 "h": 3600, "hour": 3600, "d": 86400, "day": 86400}  # fmt: skip


def rate_in_text(option: str, value: Any) -> tuple[int, int] | None:
    """A rate limit given as text such as "10/m" (as other queues write it), read: the count
    and the period in seconds, both in range; None for anything else."""
    found = _RATE_TEXT.match(value) if isinstance(value, str) else None
    if option not in ("rate_limit", "partition_rate_limit") or found is None:
        return None
    count, times, unit = found.groups()
    if not (times or unit):
        return None  # "10/": a period is missing, not misspelled
    unit = unit.lower()
    # "minutes", "secs"; but "ms" is not "m".
    seconds = _UNIT_SECONDS.get(unit if len(unit) <= 2 else unit.removesuffix("s"))
    if seconds is None or not 1 <= int(count) <= MAX_INT:
        return None
    period = seconds * int(times or 1)
    if not MIN_RATE_PERIOD <= period <= MAX_RATE_PERIOD:
        return None
    return int(count), period


def _rate_hint(option: str, value: Any) -> str:
    """For a rate limit given as text such as "10/m": how to say it here."""
    read = rate_in_text(option, value)
    if read is None:
        return ""
    return f" (for {value.strip()}: {option}={read[0]}, rate_period={read[1]})"


def in_python(option: str, value: Any) -> str:
    """The message for ``PGJOBS["QUEUES"]`` and :func:`~django_pgjobs.queues.set_queue_limits`:
    their values are Python's (None, a timedelta, True)."""
    if option in COUNTS:
        return (
            f"{option} must be {TAKES[option]}, or None for {LEFT_OUT[option]}; got {value!r}"
            f"{_rate_hint(option, value)}"
        )
    if option in ("rate_period", "timeout"):
        return (
            f"{option} must be {TAKES[option]}, as a number or a timedelta, or None for "
            f"{LEFT_OUT[option]}; got {validation.shown_duration(value)}"
        )
    if option == "fair":
        return f"fair must be True or False; got {value!r}"
    return f"unknown option {option!r}; the options are {', '.join(LIMIT_FIELDS)}"


def limit_problems(limits: Mapping[str, Any], wording: Wording = in_python) -> dict[str, str]:
    """What is wrong with a queue's limits (option -> message, phrased by ``wording`` for the
    place they were given); empty when nothing is."""
    refused = [name for name in limits if name not in LIMIT_FIELDS]
    for name in COUNTS:
        value = limits.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT
        ):
            refused.append(name)
    period = limits.get("rate_period")
    if period is not None and not _seconds_within(period, MIN_RATE_PERIOD, MAX_RATE_PERIOD):
        refused.append("rate_period")
    fair = limits.get("fair")
    if fair is not None and not isinstance(fair, bool):
        refused.append("fair")
    timeout = limits.get("timeout")
    if timeout is not None and not _seconds_within(timeout, MIN_TIMEOUT, validation.MAX_TIMEOUT):
        refused.append("timeout")
    return {name: wording(name, limits.get(name)) for name in refused}


def _seconds_within(value: object, low: float, high: float) -> bool:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return (
        not isinstance(seconds, bool)
        and isinstance(seconds, int | float)
        and math.isfinite(seconds)
        and low <= seconds <= high
    )


def normalised(limits: Mapping[str, Any]) -> dict[str, Any]:
    """Valid ``limits`` as the queue row stores them: every option, durations in seconds."""
    out: dict[str, Any] = {name: limits.get(name) for name in LIMIT_FIELDS}
    for name in ("rate_period", "timeout"):
        value = out[name]
        if isinstance(value, timedelta):
            out[name] = value.total_seconds()
    out["fair"] = bool(out["fair"])
    return out


def in_settings(option: str, value: Any) -> str:
    """The message for ``PGJOBS["QUEUES"]``: :func:`in_python`'s, where ``paused`` is an option
    too."""
    if option == "paused":
        return f"paused must be True or False; got {value!r}"
    if option not in DECLARED_OPTIONS:
        return f"unknown option {option!r}; the options are {', '.join(DECLARED_OPTIONS)}"
    return in_python(option, value)


def declaration_problems(options: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a queue's entry in ``PGJOBS["QUEUES"]`` (option -> message)."""
    limits = {name: value for name, value in options.items() if name != "paused"}
    problems = limit_problems(limits, in_settings)
    if not isinstance(options.get("paused", False), bool):
        problems["paused"] = in_settings("paused", options["paused"])
    if not problems and rate_period_alone(limits):
        problems["rate_period"] = RATE_PERIOD_ALONE  # as set_queue_limits() and the CLI say
    return problems


def declared_queues() -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The valid queues of ``PGJOBS["QUEUES"]`` (normalised: every limit, and ``paused``), and
    messages for the others."""
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
        problems = declaration_problems(limits)
        if problems:
            errors.extend(f"{where}: {message.rstrip('.')}." for message in problems.values())
            continue
        valid[name] = {**normalised(limits), "paused": limits.get("paused", False)}
    return valid, errors
