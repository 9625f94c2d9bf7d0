from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from django_pgjobs import enqueue, get_job


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_migrate_to_zero_and_back() -> None:
    call_command("migrate", "pgjobs", "zero", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('pgjobs_job_queue'), to_regproc('pgjobs_enqueue')")
        assert cur.fetchone() == (None, None)
    call_command("migrate", "pgjobs", verbosity=0)
    # Tables, defaults, trigger and SQL function are all back.
    assert get_job(enqueue("test.record")).status == "pending"
    with connection.cursor() as cur:
        cur.execute("SELECT pgjobs_enqueue('test.record')")
        assert cur.fetchone()[0] is not None
