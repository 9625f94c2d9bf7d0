"""Settings for the django-pgjobs example shop. Development only: DEBUG is on, the key is public.

The database is ``DATABASE_URL`` when set; otherwise an embedded PostgreSQL server is started in
``example_project/.pgdata`` and its URL exported, so the worker and runserver started by
``demo.py`` share one server instead of each starting their own.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django_pgjobs.contrib.embedded import database_settings, database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-pgjobs-example-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_admin_listfilter_dropdown",  # the admin's filters (a django-pgjobs dependency)
    "django_pgjobs",
    "shop",
]

# Django's Tasks framework runs on django-pgjobs (shop/tasks.py). Django 6 has it built in; on
# Django 5.2 it is the django-tasks backport (pip install 'django-pgjobs[tasks]').
try:
    import django.tasks  # noqa: F401
except ImportError:
    INSTALLED_APPS.append("django_tasks")
TASKS = {"default": {"BACKEND": "django_pgjobs.backend.PgJobsBackend"}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": database_settings(database_url(BASE_DIR / ".pgdata"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

STATIC_URL = "static/"

# Mail goes to the worker's stdout, so the welcome email shows up in the demo's terminal.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "shop@example.com"

PGJOBS = {
    # An idle worker wakes on NOTIFY at once; this poll only matters for jobs that become due
    # later (retries, scheduled jobs). Short here so the demo's retries show up quickly.
    "POLL_INTERVAL": 2.0,
    # Completed and cancelled jobs stay visible (home page, `pgjobs list`) for an hour.
    "RETENTION": timedelta(hours=1),
    # Ctrl-C in demo.py gives a running import this long to finish before it is handed back.
    "SHUTDOWN_GRACE": 10.0,
    # Flow control (docs/howto/queues.md): at most two imports at once across every worker.
    # `manage.py pgjobs queues` shows it; the admin's queues page changes or pauses it.
    "QUEUES": {"imports": {"concurrency": 2}},
}
