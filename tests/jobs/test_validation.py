"""Bad input is refused at the call site, before the database: the caller's transaction stays
usable."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from django_pgjobs import enqueue, enqueue_on_commit
from django_pgjobs.exceptions import InvalidJobError, PayloadNotSerializable
from django_pgjobs.models import Job
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


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
        ({"max_attempts": 0}, InvalidJobError, "between 1 and"),
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


def test_a_payload_with_a_lone_surrogate_is_refused_before_the_database() -> None:
    with transaction.atomic():
        with pytest.raises(PayloadNotSerializable):
            enqueue("test.record", {"name": "caf\udce9"})
        assert Job.objects.count() == 0  # the transaction is still usable


def test_enqueue_on_commit_validates_at_the_call_site() -> None:
    with transaction.atomic():
        with pytest.raises(InvalidJobError):
            enqueue_on_commit("test.record", priority=500)
        Order.objects.create(reference="still usable")
    assert Order.objects.count() == 1 and Job.objects.count() == 0
