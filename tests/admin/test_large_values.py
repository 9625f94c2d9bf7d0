"""Large payloads, errors, inputs and outputs: lists never read them, detail pages show a
bounded preview with the value's size, and a raw view returns the whole value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_pgjobs import start_workflow
from django_pgjobs.models import Job, Schedule, WorkflowExecution, WorkflowStep
from django_pgjobs.worker import Worker
from tests.admin.changelists import changelist
from tests.helpers import drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

BIG = 3 * 1024 * 1024  # a 3 MB value; a page stays far below it
PAGE_LIMIT = 200_000


def insert(table: str, payload: str, error: str, **columns: Any) -> Any:
    """A row written by SQL: no Python-side limit stands between it and the admin."""
    names = ", ".join(["job_name", "payload", "error", *columns])
    values = ", ".join(["'test.record'", "%s::jsonb", "%s", *["%s"] * len(columns)])
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} ({names}) VALUES ({values}) RETURNING id",
            [payload, error, *columns.values()],
        )
        return cur.fetchone()[0]


def big_payload() -> str:
    return json.dumps({"blob": "x" * BIG, "id": "A-42"})  # jsonb puts short keys first


@pytest.mark.parametrize(
    ("model", "table"), [("job", "pgjobs_job_queue"), ("failedjob", "pgjobs_failed_jobs")]
)
def test_a_3_mb_payload_and_error_never_make_a_3_mb_page(
    admin_client_: Client, model: str, table: str
) -> None:
    error = "ValueError: too big\n" + "y" * BIG
    extra = {"progress_message": "z" * BIG, "progress": 5} if model == "job" else {}
    pk = insert(table, big_payload(), error, **extra)
    with CaptureQueriesContext(connection) as queries:
        listing = admin_client_.get(changelist(model))
    assert listing.status_code == 200 and len(listing.content) < PAGE_LIMIT
    assert "ValueError: too big" in listing.content.decode()
    listed = [q["sql"] for q in queries if f'FROM "{table}"' in q["sql"]]
    selected = (f'"{table}"."payload",', f'"{table}"."payload" FROM')  # read as a column
    assert listed and not any(column in sql for sql in listed for column in selected)

    detail = admin_client_.get(reverse(f"admin:pgjobs_{model}_change", args=[pk]))
    page = detail.content.decode()
    assert detail.status_code == 200 and len(detail.content) < PAGE_LIMIT
    assert "3.0 MB" in page and "A-42" in page  # the size, and the start of the value
    raw = reverse(f"admin:pgjobs_{model}_raw", args=[pk, "payload"])
    assert raw in page
    whole = admin_client_.get(raw)
    assert whole["Content-Type"] == "application/json; charset=utf-8"
    assert whole["X-Content-Type-Options"] == "nosniff"
    assert json.loads(whole.content)["blob"] == "x" * BIG
    error_raw = admin_client_.get(reverse(f"admin:pgjobs_{model}_raw", args=[pk, "error"]))
    assert error_raw.content.decode() == error
    assert error_raw["Content-Type"] == "text/plain; charset=utf-8"


def test_the_raw_view_needs_the_view_permission(
    admin_client_: Client, viewer_client: Client, client: Client
) -> None:
    pk = insert("pgjobs_job_queue", '{"secret": 1}', "")
    raw = reverse("admin:pgjobs_job_raw", args=[pk, "payload"])
    assert viewer_client.get(raw).status_code == 200
    assert client.get(raw).status_code == 302  # to the login page
    assert admin_client_.get(reverse("admin:pgjobs_job_raw", args=[pk, "key"])).status_code == 404


def test_a_payload_python_cannot_decode_is_shown_as_stored(admin_client_: Client) -> None:
    pk = insert("pgjobs_job_queue", '{"amount": 1e5000}', "")
    assert admin_client_.get(changelist("job")).status_code == 200
    page = admin_client_.get(reverse("admin:pgjobs_job_change", args=[pk])).content.decode()
    assert "&quot;amount&quot;: 1000000" in page


def test_a_workflow_with_a_3_mb_input_and_output(
    admin_client_: Client, make_worker: type[Worker]
) -> None:
    handle = start_workflow(wf.greet, "ada", workflow_id="big-one")
    drain(make_worker())
    # As if it had been given (and had returned) 3 MB: the test workflows store short labels.
    name = "n" * BIG
    WorkflowExecution.objects.filter(workflow_id="big-one").update(
        input={"args": [name], "kwargs": {}}, output=f"hello {name}!"
    )
    WorkflowStep.objects.filter(workflow_id="big-one").update(output=f"hello {name}")
    listing = admin_client_.get(changelist("workflowexecution"))
    assert listing.status_code == 200 and len(listing.content) < PAGE_LIMIT
    detail = admin_client_.get(
        reverse("admin:pgjobs_workflowexecution_change", args=[quote(handle.workflow_id)])
    )
    page = detail.content.decode()
    assert len(detail.content) < PAGE_LIMIT and "3.0 MB" in page
    step_raw = reverse("admin:pgjobs_workflowexecution_step_raw", args=["big-one", 0, "output"])
    assert step_raw in page
    assert json.loads(admin_client_.get(step_raw).content) == f"hello {name}"
    raw_input = admin_client_.get(
        reverse("admin:pgjobs_workflowexecution_raw", args=["big-one", "input"])
    )
    assert json.loads(raw_input.content)["args"] == [name]


def test_select_all_is_refused_before_reading_every_id(
    admin_client_: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_pgjobs.admin import common

    monkeypatch.setattr(common, "ACTION_LIMIT", 2)
    ids = [insert("pgjobs_job_queue", "{}", "") for _ in range(5)]
    with CaptureQueriesContext(connection) as queries:
        admin_client_.post(
            changelist("job"),
            {"action": "cancel", "select_across": "1", "index": "0", "_selected_action": ids[:1]},
        )
    reads = [q["sql"] for q in queries if 'FROM "pgjobs_job_queue"' in q["sql"]]
    assert reads and all("LIMIT" in sql for sql in reads), reads
    assert "More than 2 rows selected" in admin_client_.get(changelist("job")).content.decode()
    assert Job.objects.filter(status="pending").count() == 5


def test_a_schedule_with_a_3_mb_payload_is_previewed_not_put_in_the_form(
    admin_client_: Client,
) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name, payload)"
            " VALUES ('huge', '0 * * * *', 'test.record', %s::jsonb) RETURNING id",
            [big_payload()],
        )
        pk = cur.fetchone()[0]
    listing = admin_client_.get(changelist("schedule"))
    assert listing.status_code == 200 and len(listing.content) < PAGE_LIMIT
    url = reverse("admin:pgjobs_schedule_change", args=[pk])
    page = admin_client_.get(url)
    assert page.status_code == 200 and len(page.content) < PAGE_LIMIT
    assert "3.0 MB" in page.content.decode() and 'name="payload"' not in page.content.decode()
    raw = admin_client_.get(reverse("admin:pgjobs_schedule_raw", args=[pk, "payload"]))
    assert json.loads(raw.content)["blob"] == "x" * BIG
    form = {
        "name": "huge", "cron": "0 * * * *", "job_name": "test.record", "timezone": "UTC",
        "catch_up": "skip", "catch_up_limit": "10",
    }  # fmt: skip
    assert admin_client_.post(url, form).status_code == 302  # disabled, payload untouched
    row = Schedule.objects.get(pk=pk)
    assert not row.enabled and row.payload["blob"] == "x" * BIG


def test_a_small_schedule_payload_stays_editable(admin_client_: Client) -> None:
    row = Schedule.objects.create(
        name="small", cron="0 * * * *", job_name="test.record", payload={"to": "ops"}
    )
    page = admin_client_.get(reverse("admin:pgjobs_schedule_change", args=[row.pk]))
    assert 'name="payload"' in page.content.decode()
