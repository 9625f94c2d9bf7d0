"""Job names and keys starting with ``pgjobs.`` are the library's own: refused wherever a user
names a job or a key (Python, the SQL function, the command), and the library's keys live there,
so a user's key can never take a workflow's or a tick's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DataError, connection, transaction

from django_pgjobs import enqueue, enqueue_many, enqueue_on_commit, start_workflow
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.models import Job
from django_pgjobs.workflows.definitions import runner_job_name
from tests.testapp import workflows as wf
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)

RESERVED_NAMES = ["pgjobs.workflow:x", "pgjobs.cleanup"]


@pytest.mark.parametrize("name", RESERVED_NAMES)
@pytest.mark.parametrize(
    "producer",
    [
        lambda name: enqueue(name, {"workflow_id": "w"}),
        lambda name: enqueue_on_commit(name, {"workflow_id": "w"}),
        lambda name: enqueue_many(name, [{"workflow_id": "w"}]),
    ],
    ids=["enqueue", "enqueue_on_commit", "enqueue_many"],
)
def test_python_refuses_a_reserved_job_name_and_the_transaction_stays_usable(
    producer: Callable[[str], Any], name: str
) -> None:
    with transaction.atomic():
        with pytest.raises(InvalidJobError, match="reserved for django-pgjobs's own jobs"):
            producer(name)
        Order.objects.create(reference="still usable")
    assert Job.objects.count() == 0


def test_the_workflow_runner_name_of_this_process_is_refused_too() -> None:
    with pytest.raises(InvalidJobError, match="reserved"):
        enqueue(runner_job_name(), {"workflow_id": "w"})


@pytest.mark.parametrize("key", ["pgjobs.workflow:w", "pgjobs.cron:nightly:2026", "pgjobs."])
def test_python_refuses_a_reserved_key(key: str) -> None:
    with transaction.atomic():
        with pytest.raises(InvalidJobError, match="reserved for django-pgjobs's own keys"):
            enqueue("test.record", key=key)
        Order.objects.create(reference="still usable")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pgjobs.workflow:x", None], "The job name 'pgjobs.workflow:x' starts with 'pgjobs.'"),
        (["test.record", "pgjobs.workflow:w"], "The key 'pgjobs.workflow:w' starts with"),
    ],
)
def test_the_sql_function_refuses_reserved_names_and_keys(args: list[Any], message: str) -> None:
    with connection.cursor() as cur, pytest.raises(DataError, match=message) as raised:
        cur.execute("SELECT pgjobs_enqueue(%s, job_key => %s)", args)
    cause = raised.value.__cause__
    assert isinstance(cause, psycopg.Error) and cause.sqlstate == "22023"
    assert Job.objects.count() == 0


def test_the_sql_function_still_enqueues_ordinary_names_and_keys() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pgjobs_enqueue('test.record', job_key => 'workflow:w')")
        job_id = cur.fetchone()[0]
    assert Job.objects.get(id=job_id).key == "workflow:w"


def test_the_enqueue_command_refuses_a_reserved_name() -> None:
    with pytest.raises(CommandError, match="reserved for django-pgjobs's own jobs"):
        call_command("pgjobs", "enqueue", "pgjobs.workflow:x", "--payload", '{"workflow_id": "w"}')
    assert Job.objects.count() == 0


def test_a_user_key_shaped_like_a_workflow_key_does_not_block_that_workflow_id() -> None:
    """Before: a client-chosen key 'workflow:order-7' made start_workflow(workflow_id='order-7')
    fail with an IntegrityError on the job's key: the client had blocked that workflow id."""
    enqueue("test.record", key="workflow:order-7")
    handle = start_workflow(wf.greet, "ada", workflow_id="order-7")
    job = Job.objects.get(key="pgjobs.workflow:order-7")
    assert job.job_name == runner_job_name()
    assert job.payload == {"workflow_id": handle.workflow_id}
