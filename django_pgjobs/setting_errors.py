"""The values of ``settings.PGJOBS`` that the system checks refuse, as messages: what each
setting takes and what it got (:mod:`django_pgjobs.checks` gives them their ids)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.db.utils import load_backend

from django_pgjobs.conf import DEFAULTS, HEALTH_DEFAULTS
from django_pgjobs.conf import seconds as _seconds
from django_pgjobs.jobs.validation import MAX_INT, shown_duration

_POSITIVE_SECONDS = (
    "RETRY_DELAY_MAX",
    "POLL_INTERVAL",
    "LEASE_SECONDS",
    "HEARTBEAT_SECONDS",
    "PRUNE_INTERVAL",
    "RETENTION",
    "WORKFLOW_RETENTION",
)
# Settings a stored time is computed from (a lease's end, a retry's due time): that time must
# stay before jobs.validation.LATEST_TIME, which the tables' range CHECKs enforce (migration
# 0014). A century is far beyond any sensible value and leaves thousands of years of room.
_STORED_SECONDS = ("RETRY_DELAY_MAX", "LEASE_SECONDS")
MAX_STORED_SECONDS = 100 * 365 * 24 * 3600
# Settings the prune subtracts from now(): a time before 4713 BC is out of PostgreSQL's range,
# and every prune (so every loop of a worker) failed. A century keeps any history one needs.
_RETENTIONS = ("RETENTION", "WORKFLOW_RETENTION")
# The longest wait of an idle worker or scheduler: a wait goes to poll(), which takes at most
# 2**31 - 1 milliseconds (24.8 days); past that the scheduler's thread died and cron schedules
# stopped. A day is far beyond any sensible poll.
MAX_POLL_INTERVAL = 24 * 3600


def poll_interval_error(seconds: float | None) -> None:
    """Refuse a command's ``--poll-interval`` (None: not given) outside (0, a day]."""
    from django.core.management import CommandError

    if seconds is not None and not 0 < seconds <= MAX_POLL_INTERVAL:
        raise CommandError(
            f"--poll-interval must be a number of seconds above 0 and at most "
            f"{MAX_POLL_INTERVAL} (a day); got {seconds:g}."
        )


def is_postgresql_engine(engine: str) -> bool:
    """Does a ``DATABASES`` entry's ENGINE name a PostgreSQL backend: Django's, GeoDjango's
    PostGIS, or any other whose ``DatabaseWrapper`` says its vendor is PostgreSQL (a pooling or
    instrumenting wrapper, a project's own subclass)? Told from the name for the usual ones;
    any other is imported, never connected to (PostGIS's import needs GDAL, so it is told by
    name only). One that cannot be imported is not taken for PostgreSQL: Django says why."""
    if engine.endswith((".postgresql", ".postgis")):
        return True
    try:
        backend = load_backend(engine)
    except Exception:  # any import failure: not known to be PostgreSQL
        return False
    return getattr(getattr(backend, "DatabaseWrapper", None), "vendor", None) == "postgresql"


def is_number(value: Any) -> bool:
    """A finite number of seconds, or a timedelta (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        return False
    return math.isfinite(_seconds(value))


def value_errors(config: dict[str, Any]) -> list[str]:
    """What is wrong with the plain values of ``config`` (``settings.PGJOBS``): times, counts,
    sizes, the metrics' settings (pgjobs.E004)."""
    problems: list[str] = []
    for name in _POSITIVE_SECONDS:
        value = config.get(name, DEFAULTS[name])
        if not is_number(value) or _seconds(value) <= 0:
            problems.append(
                f"{name} must be a positive number of seconds (or a timedelta); got "
                f"{shown_duration(value)}."
            )
        elif name in _STORED_SECONDS and _seconds(value) > MAX_STORED_SECONDS:
            problems.append(
                f"{name} must be at most {MAX_STORED_SECONDS} seconds (100 years): the time "
                f"computed from it is stored, and must stay before 9000-01-01; got {value!r}."
            )
        elif name in _RETENTIONS and _seconds(value) > MAX_STORED_SECONDS:
            problems.append(
                f"{name} must be at most {MAX_STORED_SECONDS} seconds (100 years): the prune "
                f"compares finished times with now() less it; got {shown_duration(value)}."
            )
        elif name == "POLL_INTERVAL" and _seconds(value) > MAX_POLL_INTERVAL:
            problems.append(
                f"POLL_INTERVAL must be at most {MAX_POLL_INTERVAL} seconds (a day): it is the "
                f"longest wait of an idle worker or scheduler; got {shown_duration(value)}."
            )
    delay = config.get("RETRY_DELAY", DEFAULTS["RETRY_DELAY"])
    if not is_number(delay) or _seconds(delay) < 0:
        problems.append(f"RETRY_DELAY must be a number of seconds >= 0; got {delay!r}.")
    for name in ("MAX_ATTEMPTS", "CONCURRENCY"):
        value = config.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
            problems.append(f"{name} must be an int from 1 to {MAX_INT}; got {value!r}.")
    prefetch = config.get("PREFETCH", DEFAULTS["PREFETCH"])
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        problems.append(f"PREFETCH must be an int >= 0; got {prefetch!r}.")
    jitter = config.get("RETRY_JITTER", DEFAULTS["RETRY_JITTER"])
    if not is_number(jitter) or not 0 <= float(jitter) <= 1:
        problems.append(f"RETRY_JITTER must be a fraction between 0 and 1; got {jitter!r}.")
    grace = config.get("SHUTDOWN_GRACE", DEFAULTS["SHUTDOWN_GRACE"])
    if not is_number(grace) or _seconds(grace) < 0:
        problems.append(f"SHUTDOWN_GRACE must be a number of seconds >= 0; got {grace!r}.")
    limit = config.get("MAX_PAYLOAD_BYTES", DEFAULTS["MAX_PAYLOAD_BYTES"])
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
        problems.append(
            f"MAX_PAYLOAD_BYTES must be None (no limit) or an int of at least 2 bytes (the "
            f"empty payload {{}}); got {limit!r}."
        )
    if not isinstance(config.get("POLL_ONLY", False), bool):
        problems.append(f"POLL_ONLY must be True or False; got {config['POLL_ONLY']!r}.")
    if not isinstance(config.get("DATABASE", "default"), str):
        problems.append(f"DATABASE must be a database alias (str); got {config['DATABASE']!r}.")
    if not isinstance(config.get("LISTEN_DATABASE", ""), str):
        problems.append(
            "LISTEN_DATABASE must be None or a database alias (str); got "
            f"{config['LISTEN_DATABASE']!r}."
        )
    version = config.get("APP_VERSION")
    if version is not None and not (
        isinstance(version, str)
        and version.strip()
        and len(version) <= 64
        and "\x00" not in version
    ):
        problems.append(
            f"APP_VERSION must be None or a non-empty str of at most 64 characters; "
            f"got {version!r}."
        )
    problems += _metrics_errors(config)
    return problems


# A token shorter than this could be guessed by a scraper trying tokens; 16 characters of a
# random token (secrets.token_urlsafe()) are far beyond that.
MIN_METRICS_TOKEN = 16


def _metrics_errors(config: dict[str, Any]) -> list[str]:
    problems = []
    cache = config.get("METRICS_CACHE_SECONDS", DEFAULTS["METRICS_CACHE_SECONDS"])
    if not is_number(cache) or _seconds(cache) < 0:
        problems.append(
            f"METRICS_CACHE_SECONDS must be a number of seconds >= 0 (or a timedelta); got "
            f"{shown_duration(cache)}."
        )
    token = config.get("METRICS_TOKEN")
    # Printable ASCII: a WSGI server decodes the Authorization header as latin-1, so a token of
    # other characters could never match the one a scraper sends.
    if token is not None and (
        not isinstance(token, str)
        or len(token) < MIN_METRICS_TOKEN
        or token != token.strip()
        or not (token.isascii() and token.isprintable())
    ):
        # Never the value itself: a check's message ends up in logs and CI output.
        got = type(token).__name__
        if isinstance(token, str):
            got = f"a str of {len(token)} characters"
        problems.append(
            f"METRICS_TOKEN must be None or a str of at least {MIN_METRICS_TOKEN} printable "
            "ASCII characters without surrounding spaces (secrets.token_urlsafe() makes one); "
            f"got {got}."
        )
    return problems


_HEALTH_RATIOS = ("DEAD_RATIO", "BLOAT_RATIO")
_HEALTH_COUNTS = ("DEAD_ROWS", "BLOAT_BYTES", "XMIN_AGE_TRANSACTIONS", "XID_AGE")


def health_errors(health: Any) -> list[str]:
    """PGJOBS["HEALTH"]: a dict of known thresholds, each a number in its range. A wrong one
    would stop ``pgjobs health`` and the dashboard's health section, so it is an error here."""
    if not isinstance(health, dict):
        return [f"HEALTH must be a dict of thresholds; got {health!r}."]
    problems = []
    unknown = sorted(set(health) - set(HEALTH_DEFAULTS), key=str)
    if unknown:
        problems.append(
            f"HEALTH has unknown key(s) {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(HEALTH_DEFAULTS)}."
        )
    for name in _HEALTH_RATIOS:
        value = health.get(name, HEALTH_DEFAULTS[name])
        if isinstance(value, timedelta) or not is_number(value) or not 0 <= value <= 1:
            problems.append(f"HEALTH[{name!r}] must be a fraction from 0 to 1; got {value!r}.")
    for name in _HEALTH_COUNTS:
        value = health.get(name, HEALTH_DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"HEALTH[{name!r}] must be an int >= 0; got {value!r}.")
    age = health.get("XMIN_AGE_SECONDS", HEALTH_DEFAULTS["XMIN_AGE_SECONDS"])
    if not is_number(age) or _seconds(age) < 0:
        problems.append(
            "HEALTH['XMIN_AGE_SECONDS'] must be a number of seconds >= 0 (or a timedelta); "
            f"got {shown_duration(age)}."
        )
    return problems
