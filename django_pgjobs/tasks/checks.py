"""The backend's system checks (``manage.py check`` runs them through Django's Tasks framework,
which asks each configured backend): its ``OPTIONS``, ``QUEUES`` and database. Settings only;
never the database."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error

from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import validation
from django_pgjobs.setting_errors import is_postgresql_engine

if TYPE_CHECKING:
    from django_pgjobs.backend import PgJobsBackend

_OPTIONS = ("DATABASE", "MAX_ATTEMPTS", "BACKOFF", "TIMEOUT")


def check_backend(backend: PgJobsBackend) -> list[CheckMessage]:
    where = f"TASKS[{backend.alias!r}]"
    errors: list[CheckMessage] = []
    if not apps.is_installed("django_pgjobs"):
        errors.append(
            Error(
                f"{where} uses PgJobsBackend, but django_pgjobs is not in INSTALLED_APPS.",
                hint="Add 'django_pgjobs' to INSTALLED_APPS and run migrate.",
                id="pgjobs.E034",
            )
        )
    unknown = sorted(str(k) for k in backend.options if k not in _OPTIONS)
    if unknown:
        guesses = [
            f"{key} (did you mean {close[0]}?)" if close else key
            for key in unknown
            for close in [difflib.get_close_matches(key.upper(), _OPTIONS, n=1)]
        ]
        errors.append(
            Error(
                f"{where}['OPTIONS'] has unknown keys: {', '.join(guesses)}.",
                hint=f"PgJobsBackend takes {', '.join(_OPTIONS)}.",
                id="pgjobs.E030",
            )
        )
    errors += _option_errors(backend, where)
    for queue in sorted(backend.queues, key=str):
        try:
            validation.check_name(queue, "queue name")
        except InvalidJobError as exc:
            errors.append(Error(f"{where}['QUEUES'] has {queue!r}: {exc}", id="pgjobs.E035"))
    return errors


def _option_errors(backend: PgJobsBackend, where: str) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    options = backend.options
    if "MAX_ATTEMPTS" in options:
        try:
            validation.check_max_attempts(options["MAX_ATTEMPTS"])
        except InvalidJobError as exc:
            errors.append(Error(f"{where}['OPTIONS']['MAX_ATTEMPTS']: {exc}", id="pgjobs.E031"))
    if "BACKOFF" in options:
        message = _backoff_error(options["BACKOFF"])
        if message:
            errors.append(
                Error(
                    f"{where}['OPTIONS']['BACKOFF']: {message}",
                    hint=(
                        "Seconds, a timedelta, or a callable (exception, task_result) -> "
                        "seconds | None, or the dotted path of one."
                    ),
                    id="pgjobs.E032",
                )
            )
    if options.get("TIMEOUT") is not None:
        try:
            validation.check_timeout(options["TIMEOUT"], "TIMEOUT")
        except InvalidJobError as exc:
            errors.append(Error(f"{where}['OPTIONS']['TIMEOUT']: {exc}", id="pgjobs.E036"))
    database = options.get("DATABASE")
    if database is not None and (
        not isinstance(database, str) or database not in settings.DATABASES
    ):
        errors.append(
            Error(
                f"{where}['OPTIONS']['DATABASE'] is {database!r}, which is not an alias in "
                "settings.DATABASES.",
                id="pgjobs.E033",
            )
        )
    elif database is not None:
        engine = settings.DATABASES[database].get("ENGINE", "")
        if not is_postgresql_engine(engine):
            errors.append(
                Error(
                    f"{where}['OPTIONS']['DATABASE'] is {database!r}, which uses {engine!r}, "
                    "not PostgreSQL: the backend's jobs live in django-pgjobs' tables.",
                    id="pgjobs.E033",
                )
            )
    return errors


def _backoff_error(value: Any) -> str | None:
    from django.utils.module_loading import import_string

    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            return f"cannot import {value!r}: {exc}"
    if callable(value):
        return None
    try:
        validation.check_retry_delay(value)
    except InvalidJobError as exc:
        return str(exc).replace("retry_delay", "BACKOFF")
    return None
