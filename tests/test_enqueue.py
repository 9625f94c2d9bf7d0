from __future__ import annotations

import select
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_pgjobs import enqueue, enqueue_many, enqueue_on_commit, get_job
from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable
from django_pgjobs.models import Job
from tests.testapp.jobs import fail, record
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def count_seen_by(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> int:
    row = conn.execute("SELECT count(*) FROM pgjobs_job_queue WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return int(row[0])


def test_enqueue_writes_a_pending_job_with_resolved_defaults() -> None:
    job_id = enqueue("test.record", {"label": "a"})
    job = get_job(job_id)
    assert job.status == "pending"
    assert job.payload == {"label": "a"}
    assert (job.queue, job.priority, job.attempt, job.max_attempts) == ("default", 0, 0, 3)
    assert job.error is None and job.progress is None
    assert job.scheduled_for <= timezone.now()


def test_handler_options_are_enqueue_defaults_and_arguments_win() -> None:
    assert get_job(fail.enqueue()).max_attempts == 2  # from @job("test.fail", max_attempts=2)
    job = get_job(enqueue("test.fail", max_attempts=7, queue="mail", priority=-5))
    assert (job.max_attempts, job.queue, job.priority) == (7, "mail", -5)


@override_settings(PGJOBS={"MAX_ATTEMPTS": 9})
def test_max_attempts_setting_applies_when_nothing_else_does() -> None:
    assert get_job(enqueue("unregistered.job")).max_attempts == 9


def test_enqueue_inside_atomic_is_invisible_to_others_until_commit(
    other_connection: psycopg.Connection[Any],
) -> None:
    with transaction.atomic():
        Order.objects.create(reference="A-1")
        job_id = enqueue("test.record", {"order": "A-1"})
        assert count_seen_by(other_connection, job_id) == 0
    assert count_seen_by(other_connection, job_id) == 1


def test_rollback_leaves_no_job_and_no_order() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(reference="B-1")
        enqueue("test.record", {"order": "B-1"})
        raise RuntimeError("the view failed")
    assert Job.objects.count() == 0
    assert Order.objects.count() == 0


def test_workers_are_notified_at_commit_not_before(
    other_connection: psycopg.Connection[Any],
) -> None:
    other_connection.execute("LISTEN pgjobs")
    with transaction.atomic():
        enqueue("test.record", queue="mail")
        assert not list(other_connection.notifies(timeout=0.2))
    select.select([other_connection.fileno()], [], [], 5)
    assert [n.payload for n in other_connection.notifies(timeout=1, stop_after=1)] == ["mail"]


def test_rolled_back_enqueue_notifies_no_one(other_connection: psycopg.Connection[Any]) -> None:
    other_connection.execute("LISTEN pgjobs")
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("test.record")
        raise RuntimeError
    assert not list(other_connection.notifies(timeout=0.3))


def test_scheduled_for_accepts_aware_datetimes_and_delays() -> None:
    at = timezone.now() + timedelta(hours=2)
    assert get_job(enqueue("test.record", scheduled_for=at)).scheduled_for == at
    delayed = get_job(enqueue("test.record", scheduled_for=timedelta(minutes=5)))
    assert delayed.scheduled_for - delayed.created_at == pytest.approx(
        timedelta(minutes=5), abs=timedelta(seconds=1)
    )


class TestKeys:
    def test_same_key_returns_the_existing_job_and_writes_nothing(self) -> None:
        first = enqueue("test.record", {"v": 1}, key="report:2026-01-15")
        second = enqueue("test.record", {"v": 2}, key="report:2026-01-15")
        assert first == second
        assert Job.objects.count() == 1
        assert get_job(first).payload == {"v": 1}

    def test_replace_updates_a_pending_job_in_place_and_resets_it(self) -> None:
        first = enqueue("test.record", {"v": 1}, key="k", priority=1)
        Job.objects.filter(id=first).update(attempt=2, error="old failure")
        second = enqueue("test.record", {"v": 2}, key="k", priority=5, replace=True)
        assert first == second
        job = get_job(first)
        assert (job.payload, job.priority, job.attempt, job.error) == ({"v": 2}, 5, 0, None)

    def test_replace_when_running_moves_the_key_to_a_new_job(self) -> None:
        running = enqueue("test.record", {"v": 1}, key="k")
        Job.objects.filter(id=running).update(status="running")
        replacement = enqueue("test.record", {"v": 2}, key="k", replace=True)
        assert replacement != running
        assert get_job(running).key is None
        assert get_job(replacement).key == "k"

    def test_a_finished_job_frees_its_key(self) -> None:
        first = enqueue("test.record", key="k")
        Job.objects.filter(id=first).update(status="completed")
        assert enqueue("test.record", key="k") != first


def test_enqueue_on_commit_inserts_only_after_commit() -> None:
    with transaction.atomic():
        job_id = enqueue_on_commit("test.record", {"x": 1})
        assert not Job.objects.filter(id=job_id).exists()
    assert get_job(job_id).payload == {"x": 1}


def test_enqueue_on_commit_does_nothing_on_rollback() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit("test.record")
        raise RuntimeError
    assert Job.objects.count() == 0


def test_enqueue_on_commit_validates_at_the_call_site() -> None:
    with transaction.atomic():
        with pytest.raises(InvalidJobError):
            enqueue_on_commit("test.record", priority=500)
        Order.objects.create(reference="still usable")
    assert Order.objects.count() == 1 and Job.objects.count() == 0


def test_enqueue_many_is_one_statement_and_keeps_payload_order(
    django_assert_num_queries: Any,
) -> None:
    payloads = [{"n": n} for n in range(500)]
    with django_assert_num_queries(1):
        ids = enqueue_many("test.record", payloads, queue="bulk", priority=3)
    assert len(set(ids)) == 500
    stored = dict(Job.objects.filter(id__in=ids).values_list("id", "payload"))
    assert [stored[i] for i in ids] == payloads
    assert set(Job.objects.values_list("queue", "priority")) == {("bulk", 3)}


def test_enqueue_many_stores_every_kind_of_payload_as_given() -> None:
    """The payloads travel as one JSON array: quotes, commas, braces, backslashes, nulls and
    nesting must come back element for element."""
    payloads: list[Any] = [
        None, "a,b", '{"x"}', "back\\slash \\\"", [1, [2, {"k": None}]], 1.5, True, "é ✓ 😀",
        {"nested": {"list": [], "empty": {}}}, "", 0, -7,
    ]  # fmt: skip
    ids = enqueue_many("test.record", payloads)
    stored = dict(Job.objects.filter(id__in=ids).values_list("id", "payload"))
    assert [stored[i] for i in ids] == [{} if p is None else p for p in payloads]  # None: {}


def test_enqueue_many_with_one_bad_payload_writes_nothing() -> None:
    with pytest.raises(PayloadNotSerializable):
        enqueue_many("test.record", [{"ok": 1}, {"bad": object()}])
    assert Job.objects.count() == 0
    assert enqueue_many("test.record", []) == []


def test_handler_enqueue_shortcut() -> None:
    job = get_job(record.enqueue({"label": "via handler"}))
    assert job.job_name == "test.record"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"job_name": ""}, InvalidJobError, "must not be empty"),
        ({"job_name": "x" * 201}, InvalidJobError, "201 characters"),
        ({"job_name": 42}, InvalidJobError, "must be a str"),
        (
            {"payload": {"when": datetime(2026, 1, 1, tzinfo=UTC)}},
            PayloadNotSerializable,
            "datetime",
        ),
        ({"payload": {"amount": Decimal("1.10")}}, PayloadNotSerializable, "Decimal"),
        ({"payload": {"x": float("nan")}}, PayloadNotSerializable, "not JSON serialisable"),
        ({"payload": {"x": "nul\x00"}}, PayloadNotSerializable, "NUL"),
        ({"priority": 101}, InvalidJobError, "between -100 and 100"),
        ({"priority": -101}, InvalidJobError, "between -100 and 100"),
        ({"priority": 1.5}, InvalidJobError, "must be an int"),
        ({"max_attempts": 0}, InvalidJobError, "at least 1"),
        ({"scheduled_for": datetime(2030, 1, 1)}, InvalidJobError, "naive datetime"),
        ({"scheduled_for": "tomorrow"}, InvalidJobError, "datetime or a timedelta"),
        ({"queue": ""}, InvalidJobError, "queue name must not be empty"),
        ({"key": ""}, InvalidJobError, "key must be"),
    ],
)
def test_bad_input_raises_at_the_call_site_and_writes_nothing(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"job_name": "test.record", "payload": {}, **kwargs}
    with transaction.atomic():
        with pytest.raises(error, match=message):
            enqueue(arguments.pop("job_name"), arguments.pop("payload"), **arguments)
        # The caller's transaction is still usable: nothing reached the database.
        Order.objects.create(reference="after the error")
    assert Job.objects.count() == 0
    assert Order.objects.count() == 1


def test_raw_sql_insert_creates_a_runnable_job() -> None:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_job_queue (job_name, payload) VALUES ('test.record', '{}')")
    job = Job.objects.get()
    assert (job.status, job.queue, job.attempt, job.max_attempts) == ("pending", "default", 0, 3)


def test_sql_function_enqueues_and_deduplicates_by_key() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pgjobs_enqueue('test.record', '{\"a\": 1}', queue => 'sql', job_key => 'k')"
        )
        first = cur.fetchone()[0]
        cur.execute("SELECT pgjobs_enqueue('test.record', '{\"a\": 2}', job_key => 'k')")
        assert cur.fetchone()[0] == first
    job = get_job(first)
    assert (job.queue, job.payload) == ("sql", {"a": 1})


def test_sql_function_pins_search_path() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT proconfig FROM pg_proc "
            "WHERE proname IN ('pgjobs_enqueue', 'pgjobs_notify_new_jobs')"
        )
        assert [r[0] for r in cur.fetchall()] == [["search_path=pg_catalog, pg_temp"]] * 2


def test_a_payload_with_a_lone_surrogate_is_refused_before_the_database() -> None:
    with transaction.atomic():
        with pytest.raises(PayloadNotSerializable):
            enqueue("test.record", {"name": "caf\udce9"})
        assert Job.objects.count() == 0  # the transaction is still usable


def test_enqueue_on_commit_waits_for_the_named_database() -> None:
    with transaction.atomic(using="other"):
        job_id = enqueue_on_commit("test.record", commit_of="other")
        assert not Job.objects.filter(id=job_id).exists()
    assert Job.objects.filter(id=job_id).exists()

    with pytest.raises(RuntimeError), transaction.atomic(using="other"):
        rolled_back = enqueue_on_commit("test.record", commit_of="other")
        raise RuntimeError
    assert not Job.objects.filter(id=rolled_back).exists()


def test_replacing_a_pending_job_wakes_workers(other_connection: psycopg.Connection[Any]) -> None:
    enqueue("test.record", {"v": 1}, key="k", queue="reports")
    other_connection.execute("LISTEN pgjobs")
    enqueue("test.record", {"v": 2}, key="k", queue="reports", replace=True)
    assert [n.payload for n in other_connection.notifies(timeout=2, stop_after=1)] == ["reports"]


@pytest.fixture(autouse=True)
def _close_other_connections() -> Any:
    yield
    connections["other"].close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "k\x00"}, "key must be"),
        ({"queue": "q\x00"}, "NUL"),
        ({"replace": True}, "replace=True needs a key"),
    ],
)
def test_more_bad_input_is_refused_before_the_database(
    kwargs: dict[str, Any], message: str
) -> None:
    with transaction.atomic():
        with pytest.raises(InvalidJobError, match=message):
            enqueue("test.record", **kwargs)
        Order.objects.create(reference="still usable")
    assert Job.objects.count() == 0


def test_the_database_refuses_empty_job_names_from_sql() -> None:
    from django.db import IntegrityError

    with (
        pytest.raises(IntegrityError, match="pgjobs_job_names_not_empty"),
        connection.cursor() as cur,
    ):
        cur.execute("SELECT pgjobs_enqueue('')")


@pytest.mark.parametrize("poll_only", [False, True])
def test_enqueue_is_seen_by_django_instrumentation_either_way(poll_only: bool) -> None:
    """Server-side binding (the default) and Django's own cursor (POLL_ONLY, for PgBouncer)
    both go through execute_wrapper(), which query logging and APM agents hook."""
    seen: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with override_settings(PGJOBS={"POLL_ONLY": poll_only}), connection.execute_wrapper(spy):
        with transaction.atomic():
            job_id = enqueue("test.record", {"n": 1})
        enqueue_many("test.record", [{"n": 2}])
    assert sum("INSERT INTO pgjobs_job_queue" in sql for sql in seen) == 2
    assert Job.objects.get(id=job_id).payload == {"n": 1}
