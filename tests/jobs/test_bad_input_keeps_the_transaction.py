"""Input PostgreSQL would refuse mid-statement (a lone surrogate, a nesting too deep, a number or
a time out of range, a key too long for its index) is refused before any SQL, so the caller's
``atomic()`` stays usable; and the payload size limit (``MAX_PAYLOAD_BYTES``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from django_pgjobs import enqueue, enqueue_many, enqueue_on_commit
from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable
from django_pgjobs.models import Job
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


BAD_INPUT = [
    pytest.param({"job_name": "caf\udce9"}, InvalidJobError, "not valid Unicode", id="name"),
    pytest.param({"queue": "q\ud800"}, InvalidJobError, "queue name is not valid", id="queue"),
    pytest.param({"key": "k\udfff"}, InvalidJobError, "key is not valid Unicode", id="key"),
    pytest.param({"key": "k" * 3000}, InvalidJobError, "the limit is 500", id="long-key"),
    pytest.param({"payload": nested(5000)}, PayloadNotSerializable, "nested", id="nesting"),
    pytest.param({"payload": {"n": 10**5000}}, PayloadNotSerializable, "not JSON", id="bigint"),
    pytest.param({"max_attempts": 2**31}, InvalidJobError, "between 1 and", id="attempts"),
    pytest.param({"priority": 2**15}, InvalidJobError, "between -100 and 100", id="priority"),
    pytest.param({"scheduled_for": timedelta(days=10**8)}, InvalidJobError, "delay of", id="delay"),
    pytest.param(
        {"scheduled_for": timedelta(days=-(10**6))}, InvalidJobError, "delay of", id="past-delay"
    ),
    pytest.param(
        {"scheduled_for": datetime(9999, 12, 31, 23, 59, tzinfo=UTC)},
        InvalidJobError,
        "outside the supported range",
        id="run-at",
    ),
    pytest.param(
        {"scheduled_for": datetime(1, 1, 1, tzinfo=UTC)},
        InvalidJobError,
        "outside the supported range",
        id="run-at-year-1",
    ),
]


@pytest.mark.parametrize("producer", [enqueue, enqueue_on_commit], ids=["enqueue", "on_commit"])
@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_INPUT)
def test_bad_input_is_refused_before_any_sql_and_the_transaction_stays_usable(
    producer: Callable[..., Any], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"job_name": "test.record", "payload": {}, **kwargs}
    with transaction.atomic():
        with pytest.raises(error, match=message):
            producer(arguments.pop("job_name"), arguments.pop("payload"), **arguments)
        Order.objects.create(reference="after the error")  # would raise if aborted
    assert Order.objects.count() == 1
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [p for p in BAD_INPUT if p.id not in ("key", "long-key", "nesting", "bigint")],
)
def test_enqueue_many_refuses_the_same_input_before_any_sql(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"job_name": "test.record", **kwargs}
    with transaction.atomic():
        with pytest.raises(error, match=message):
            enqueue_many(arguments.pop("job_name"), [{}, {}], **arguments)
        Order.objects.create(reference="after the error")
    assert Job.objects.count() == 0


def test_enqueue_many_names_the_index_of_the_bad_payload() -> None:
    with transaction.atomic():
        with pytest.raises(PayloadNotSerializable, match="The payload at index 2 is nested"):
            enqueue_many("test.record", [{}, {"ok": 1}, nested(5000)])
        with pytest.raises(PayloadNotSerializable, match=r"payload at index 1 .*Decimal|datetime"):
            enqueue_many("test.record", [{}, {"when": datetime.now(UTC)}])
        Order.objects.create(reference="after the error")
    assert Job.objects.count() == 0


def test_a_deep_but_serialisable_payload_is_still_accepted() -> None:
    job_id = enqueue("test.record", {"deep": nested(200)})
    assert Job.objects.get(id=job_id).payload == {"deep": nested(200)}


class TestPayloadSize:
    def test_a_payload_over_the_default_limit_is_refused_with_its_size_and_the_limit(
        self,
    ) -> None:
        big = {"blob": "x" * (1024 * 1024)}
        with transaction.atomic():
            with pytest.raises(PayloadNotSerializable) as raised:
                enqueue("test.record", big)
            Order.objects.create(reference="after the error")
        assert "1,048,587 bytes" in str(raised.value)
        assert "the limit is 1,048,576" in str(raised.value)
        assert "MAX_PAYLOAD_BYTES" in str(raised.value)
        assert Job.objects.count() == 0

    def test_the_limit_counts_bytes_of_utf8_not_characters(self) -> None:
        with override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": 20}):
            enqueue("test.record", {"s": "x" * 10})  # 18 bytes
            with pytest.raises(PayloadNotSerializable, match="28 bytes"):
                enqueue("test.record", {"s": "é" * 10})  # 18 characters, 28 bytes

    def test_each_payload_of_enqueue_many_is_held_to_the_limit(self) -> None:
        with (
            override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": 100}),
            pytest.raises(PayloadNotSerializable, match="payload at index 1 is 208 bytes"),
        ):
            enqueue_many("test.record", [{"a": 1}, {"s": "x" * 200}])
        assert Job.objects.count() == 0

    def test_none_turns_the_limit_off(self) -> None:
        with override_settings(PGJOBS={"MAX_PAYLOAD_BYTES": None}):
            job_id = enqueue("test.record", {"blob": "x" * (2 * 1024 * 1024)})
        assert len(Job.objects.get(id=job_id).payload["blob"]) == 2 * 1024 * 1024
