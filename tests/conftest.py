from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from django_pgjobs.jobs.registry import JobHandler, register, registry
from django_pgjobs.worker import Worker
from tests.helpers import second_connection, stop


@pytest.fixture
def make_worker() -> Iterator[type[Worker]]:
    """Workers built by a test are closed (deregistered, threads stopped) after it."""
    made: list[Worker] = []

    class ClosingWorker(Worker):
        def __init__(self, **kwargs: object) -> None:
            kwargs.setdefault("concurrency", 2)
            super().__init__(**kwargs)  # type: ignore[arg-type]
            made.append(self)

    yield ClosingWorker
    for worker in made:
        worker.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker subprocesses a test starts are killed on teardown, pass or fail."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop(proc)


@pytest.fixture
def other_connection() -> Iterator[psycopg.Connection[Any]]:
    conn = second_connection()
    yield conn
    conn.close()


@pytest.fixture
def register_handler() -> Iterator[Callable[..., JobHandler]]:
    """Register a handler for one test only."""
    names: list[str] = []

    def add(name: str, func: Callable[..., Any], **options: Any) -> JobHandler:
        names.append(name)
        return register(name, func, **options)

    yield add
    for name in names:
        registry.remove(name)


@pytest.fixture
def admin_client_() -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client() -> Client:
    """Staff with view permission on every pgjobs model, nothing else."""
    user = User.objects.create_user("viewer", "viewer@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="pgjobs", codename__startswith="view_")
    )
    client = Client()
    client.force_login(user)
    return client
