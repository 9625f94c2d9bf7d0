"""System checks, run by every manage.py command (``pgjobs.E001`` ...), each with its own test."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError

from django_pgjobs.conf import DEFAULTS
from django_pgjobs.conf import seconds as _seconds
from django_pgjobs.jobs.validation import MAX_TIMEOUT, MIN_TIMEOUT, shown_duration
from django_pgjobs.setting_errors import (
    health_errors,
    is_number,
    is_postgresql_engine,
    value_errors,
)

# Where the docs say how to get a PostgreSQL for development (the embedded server helpers).
POSTGRESQL_FOR_DEVELOPMENT = "docs/howto/install.md#a-postgresql-for-development"
# The router a queue in a database of its own needs, and where the docs say why (pgjobs.W003).
QUEUE_ROUTER = "django_pgjobs.routers.QueueDatabaseRouter"
SEPARATE_DATABASE = "docs/howto/install.md#a-database-of-its-own"


@register()
def check_settings(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    config = getattr(settings, "PGJOBS", {})
    if not isinstance(config, dict):
        return [Error("settings.PGJOBS must be a dict.", id="pgjobs.E003")]
    errors: list[CheckMessage] = []
    unknown = sorted(set(config) - set(DEFAULTS), key=str)
    if unknown:
        guesses = [
            f"{close[0]} for {name}"
            for name in unknown
            if (close := difflib.get_close_matches(str(name), list(DEFAULTS), n=1))
        ]
        hint = f"Did you mean {', '.join(guesses)}? " if guesses else ""
        errors.append(
            Error(
                f"Unknown PGJOBS setting(s): {', '.join(map(str, unknown))}.",
                hint=f"{hint}Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="pgjobs.E007",
            )
        )
    errors += [Error(p, id="pgjobs.E004") for p in value_errors(config)]
    errors += _timeout_errors(config)
    errors += [
        Error(p, hint="See PostgreSQL health in docs/howto/observability.md.", id="pgjobs.E040")
        for p in health_errors(config.get("HEALTH", {}))
    ]
    if config.get("LISTEN_DATABASE") is not None and config.get("POLL_ONLY") is True:
        message = "LISTEN_DATABASE is set but POLL_ONLY is True, so nothing listens there."
        hint = "Remove POLL_ONLY: statements still go through DATABASE, wake-ups come faster."
        errors.append(CheckWarning(message, hint=hint, id="pgjobs.W002"))
    lease = config.get("LEASE_SECONDS", DEFAULTS["LEASE_SECONDS"])
    beat = config.get("HEARTBEAT_SECONDS", DEFAULTS["HEARTBEAT_SECONDS"])
    if is_number(lease) and is_number(beat) and _seconds(beat) * 2 > _seconds(lease):
        errors.append(
            Error(
                f"HEARTBEAT_SECONDS ({_seconds(beat)}) must be at most half of LEASE_SECONDS "
                f"({_seconds(lease)}), or one late heartbeat gets a healthy worker's jobs rescued.",
                id="pgjobs.E005",
            )
        )
    return errors


def _timeout_errors(config: dict[str, Any]) -> list[CheckMessage]:
    """TIMEOUT: None (no limit) or what ``enqueue(timeout=...)`` accepts. Its own id: a wrong
    value here is found by no test of the caller's, since only a hung handler ever reaches it."""
    timeout = config.get("TIMEOUT", DEFAULTS["TIMEOUT"])
    if timeout is None or (is_number(timeout) and MIN_TIMEOUT <= _seconds(timeout) <= MAX_TIMEOUT):
        return []
    return [
        Error(
            f"TIMEOUT must be None (no limit) or a number of seconds (or a timedelta) from "
            f"{MIN_TIMEOUT} to {MAX_TIMEOUT:.0f} (a year); got {shown_duration(timeout)}.",
            hint="It is how long an attempt may run when neither the job, its handler nor its "
            "queue sets a timeout; past it the attempt fails with JobTimeout.",
            id="pgjobs.E008",
        )
    ]


@register()
def check_schedules(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Code and settings schedules must be able to run: found here, not by a scheduler."""
    from django_pgjobs.schedules.declarations import (
        declarations,
        redeclared,
        settings_declarations,
    )

    config = getattr(settings, "PGJOBS", {})
    if not isinstance(config, dict):
        return []  # pgjobs.E003 already says so
    errors: list[CheckMessage] = [
        Error(message, id="pgjobs.E011") for message in settings_declarations()[1]
    ]
    for name, found in redeclared().items():
        each = "; ".join(f"job {d.job_name!r} on {d.cron!r}" for d in found)
        errors.append(
            Error(
                f"Schedule name {name!r} is declared {len(found)} times in code with different "
                f"settings ({each}); only the last one would run.",
                hint="Give each schedule its own name: @cron(..., name=...), schedule(name, ...).",
                id="pgjobs.E012",
            )
        )
    for declaration in declarations():
        for field_name, problem in declaration.problems().items():
            errors.append(
                Error(
                    f"Schedule {declaration.name!r} ({declaration.source}): {problem}",
                    hint=f"Fix its {declaration.option_name(field_name)!r}.",
                    id="pgjobs.E010",
                )
            )
    return errors


@register()
def check_queues(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    """PGJOBS["QUEUES"] must be valid: a worker syncs only the valid queues into the database."""
    from django_pgjobs.queues.declarations import declared_queues

    config = getattr(settings, "PGJOBS", {})
    if not isinstance(config, dict):
        return []  # pgjobs.E003 already says so
    return [
        Error(
            message,
            hint=(
                "Fix the entry: management commands, pgjobs_worker among them, refuse to run "
                "until then."
            ),
            id="pgjobs.E013",
        )
        for message in declared_queues()[1]
    ]


@register()
def check_database(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    config = getattr(settings, "PGJOBS", {})
    config = config if isinstance(config, dict) else {}
    errors = _alias_errors("DATABASE", config.get("DATABASE", "default"), "pgjobs.E006")
    if isinstance(listen := config.get("LISTEN_DATABASE"), str):
        errors += _alias_errors("LISTEN_DATABASE", listen, "pgjobs.E009")
    if errors:
        return errors
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return [
            Error(
                "django-pgjobs needs psycopg 3, but Django is using psycopg2.",
                hint="pip install 'psycopg[binary]' (and uninstall psycopg2 if it is preferred).",
                id="pgjobs.E002",
            )
        ]
    return []


@register()
def check_queue_router(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    """A queue in a database of its own needs a router that keeps its migrations there: without
    one a plain ``migrate`` runs them on ``default`` too (PostgreSQL's SQL on what may be SQLite,
    or a second, unused queue). A warning: the project's own router may mean it."""
    from django.db import router

    from django_pgjobs.conf import conf
    from django_pgjobs.routers import APP_LABEL, QueueDatabaseRouter, queue_databases

    alias = conf.DATABASE
    if alias == "default" or alias not in settings.DATABASES:
        return []  # the usual layout, or pgjobs.E006
    ours = queue_databases()
    elsewhere = [
        other
        for other in settings.DATABASES
        if other not in ours and router.allow_migrate(other, APP_LABEL) is not False
    ]
    if not elsewhere:
        return []
    if any(isinstance(each, QueueDatabaseRouter) for each in router.routers):
        # Present, so a router before it answered first (Django takes the first answer): one
        # that allows every app everywhere, as the docs' PrimaryReplicaRouter does.
        hint = (
            f"{QUEUE_ROUTER!r} is in DATABASE_ROUTERS, but a router before it answers "
            "allow_migrate for django-pgjobs first: put it before routers that answer for "
            "every app (first in the list)."
        )
    else:
        hint = (
            f"Add {QUEUE_ROUTER!r} to DATABASE_ROUTERS, first: it keeps the queue's migrations, "
            "reads and writes on PGJOBS['DATABASE']."
        )
    return [
        CheckWarning(
            f"PGJOBS['DATABASE'] is {alias!r}, but the routers let django-pgjobs' migrations "
            f"run on {', '.join(map(repr, elsewhere))} too: `manage.py migrate` would create "
            "the queue's tables, functions and triggers there as well (on a database that is "
            "not PostgreSQL it fails).",
            hint=f"{hint} See {SEPARATE_DATABASE} in django-pgjobs.",
            id="pgjobs.W003",
        )
    ]


def _alias_errors(setting: str, alias: Any, missing: str) -> list[CheckMessage]:
    """PGJOBS[setting] names a PostgreSQL database of DATABASES; ``missing`` is the id for one
    that does not (and for a LISTEN_DATABASE that is not PostgreSQL; a DATABASE gets E001)."""
    # Not a str (a list, a dict): E004 says so; looked up, it raised TypeError from the check.
    if not isinstance(alias, str) or alias not in settings.DATABASES:
        message = f"PGJOBS[{setting!r}] is {alias!r}, which is not in settings.DATABASES."
        return [Error(message, id=missing)]
    engine = settings.DATABASES[alias].get("ENGINE", "")
    if is_postgresql_engine(engine):
        return []
    if setting != "DATABASE":
        message = f"PGJOBS[{setting!r}] is {alias!r}, which uses {engine!r}, not PostgreSQL."
        return [Error(message, id=missing)]
    return [
        Error(
            f"django-pgjobs needs PostgreSQL, but database {alias!r} uses {engine!r}.",
            hint=(
                "Set ENGINE to 'django.db.backends.postgresql' (PostgreSQL 13 or newer). No "
                "server for development? pip install 'django-pgjobs[embedded]' and two lines "
                f"of settings start one: see {POSTGRESQL_FOR_DEVELOPMENT} in django-pgjobs."
            ),
            id="pgjobs.E001",
        )
    ]


@register()
def check_time_zone_support(
    *, app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Every time the queue stores is a point in time (timestamptz), compared with PostgreSQL's
    clock and with aware datetimes from the worker's own connection. Under USE_TZ = False Django
    hands out naive datetimes for the same columns, and the admin and the commands could not show
    them in TIME_ZONE: one clear error instead of pages that fail."""
    if settings.USE_TZ:
        return []
    return [
        Error(
            "django-pgjobs needs USE_TZ = True (Django's default since 5.0).",
            hint="Set USE_TZ = True: times are then stored in UTC and shown in TIME_ZONE.",
            id="pgjobs.E021",
        )
    ]


@register(Tags.database)
def check_migrations_applied(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Django runs database checks only when asked for a database (``check --database``,
    ``migrate``). A warning, not an error: ``migrate`` runs this before migrating, and an error
    would stop the very command that fixes it."""
    from django_pgjobs.conf import conf
    from django_pgjobs.database import unapplied_migrations

    alias = conf.DATABASE
    if not databases or alias not in databases or alias not in settings.DATABASES:
        return []
    try:
        missing = unapplied_migrations(alias)
    except DatabaseError as exc:
        return [
            CheckWarning(
                f"Could not read the migrations applied on database {alias!r}: {exc}",
                id="pgjobs.W001",
            )
        ]
    if not missing:
        return []
    return [
        CheckWarning(
            f"Database {alias!r} has {len(missing)} unapplied django-pgjobs migration(s) "
            f"({', '.join(missing)}); workers and the scheduler refuse to start on it.",
            hint="Run `python manage.py migrate"
            + ("`." if alias == "default" else f" --database {alias}`."),
            id="pgjobs.W001",
        )
    ]


@register()
def check_admin_filters(
    *, app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """The admin's filters are django-admin-list-filter-dropdown's, whose template Django finds
    only when that app is installed: without it every job list fails to render."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.admin"):
        return []
    if apps.is_installed("django_admin_listfilter_dropdown"):
        return []
    return [
        Error(
            "The django-pgjobs admin needs 'django_admin_listfilter_dropdown' in INSTALLED_APPS.",
            hint="Add 'django_admin_listfilter_dropdown' to INSTALLED_APPS (the package is a "
            "dependency of django-pgjobs): the admin's filters use its select box, and the "
            "job, dead letter and workflow lists cannot render without its template.",
            id="pgjobs.E020",
        )
    ]
