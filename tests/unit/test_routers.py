"""QueueDatabaseRouter: the queue's models and migrations go to the queue's database only, and
every other app is left to the project's routers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import router
from django.test import override_settings

from django_pgjobs.models import Job, WorkflowStep
from django_pgjobs.routers import QueueDatabaseRouter, queue_databases

ROUTER = "django_pgjobs.routers.QueueDatabaseRouter"


class KeepsAuthElsewhere:
    """A project's own router, with opinions on its own app only."""

    def db_for_read(self, model: type, **hints: object) -> str | None:
        return "users" if model._meta.app_label == "auth" else None  # type: ignore[attr-defined]

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return db == "users" if app_label == "auth" else None


@pytest.fixture
def queue_in_jobs() -> Iterator[None]:
    with override_settings(PGJOBS={"DATABASE": "jobs"}):
        yield


@pytest.mark.usefixtures("queue_in_jobs")
def test_the_queues_models_are_read_and_written_on_the_queues_database() -> None:
    ours = QueueDatabaseRouter()
    assert ours.db_for_read(Job) == ours.db_for_write(WorkflowStep) == "jobs"
    assert ours.db_for_read(User) is None
    assert ours.db_for_write(User) is None


@pytest.mark.usefixtures("queue_in_jobs")
def test_the_queues_migrations_run_on_the_queues_database_only() -> None:
    ours = QueueDatabaseRouter()
    assert ours.allow_migrate("jobs", "pgjobs") is True
    assert ours.allow_migrate("jobs", "pgjobs", model_name="job") is True
    assert ours.allow_migrate("default", "pgjobs") is False
    assert ours.allow_migrate("default", "pgjobs", model_name="job") is False


@pytest.mark.usefixtures("queue_in_jobs")
def test_other_apps_are_left_to_the_projects_routers() -> None:
    ours = QueueDatabaseRouter()
    assert ours.allow_migrate("default", "auth") is None
    assert ours.allow_migrate("jobs", "testapp", model_name="run") is None


def test_the_default_layout_keeps_the_queue_on_default() -> None:
    assert QueueDatabaseRouter().allow_migrate("default", "pgjobs") is True
    assert QueueDatabaseRouter().allow_migrate("other", "pgjobs") is False


def test_a_tasks_backends_own_database_is_a_queue_database_too() -> None:
    tasks = {
        "default": {"BACKEND": "django_pgjobs.backend.PgJobsBackend"},
        "reports": {
            "BACKEND": "django_pgjobs.backend.PgJobsBackend",
            "OPTIONS": {"DATABASE": "reports"},
        },
        "elsewhere": {
            "BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
            "OPTIONS": {"DATABASE": "unrelated"},
        },
    }
    with override_settings(PGJOBS={"DATABASE": "jobs"}, TASKS=tasks):
        assert queue_databases() == {"jobs", "reports"}
        assert QueueDatabaseRouter().allow_migrate("reports", "pgjobs") is True
        assert QueueDatabaseRouter().allow_migrate("unrelated", "pgjobs") is False


@pytest.mark.usefixtures("queue_in_jobs")
def test_it_composes_with_the_projects_routers_in_either_order() -> None:
    theirs = f"{__name__}.KeepsAuthElsewhere"
    for routers in ([theirs, ROUTER], [ROUTER, theirs]):
        with override_settings(DATABASE_ROUTERS=routers):
            assert Job.objects.all().db == "jobs"
            assert User.objects.all().db == "users"
            assert router.allow_migrate("default", "pgjobs") is False
            assert router.allow_migrate("jobs", "pgjobs") is True
            assert router.allow_migrate("users", "auth") is True
            assert router.allow_migrate("jobs", "auth") is False
            assert router.allow_migrate("default", "sessions") is True  # nobody's opinion


@pytest.mark.usefixtures("queue_in_jobs")
def test_an_instance_is_read_and_written_where_it_came_from() -> None:
    # A job read from a Tasks backend's own database and saved went to PGJOBS["DATABASE"] as a
    # second copy of the job, which ran twice.
    ours = QueueDatabaseRouter()
    loaded = Job(job_name="test.record")
    loaded._state.db = "jobs2"
    assert ours.db_for_write(Job, instance=loaded) == "jobs2"
    assert ours.db_for_read(WorkflowStep, instance=loaded) == "jobs2"
    assert ours.db_for_write(Job, instance=Job(job_name="test.record")) == "jobs"  # never saved
    assert ours.db_for_write(User, instance=loaded) is None
