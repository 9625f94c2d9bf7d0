"""A job's partition key: given at enqueue, or the handler's (``@job(partition_key=...)``, a
str or a callable over the payload), checked before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from django_pgjobs import enqueue, enqueue_many, enqueue_on_commit, job
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs.registry import JobHandler, registry
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)
Register = Callable[..., JobHandler]


def key_of(job_id: Any) -> str | None:
    return Job.objects.get(id=job_id).partition_key


def by_account(payload: Any) -> str | None:
    account = payload.get("account")
    return None if account is None else f"account:{account}"


def test_the_enqueue_key_wins_over_the_handlers(register_handler: Register) -> None:
    register_handler("ledger.fixed", lambda payload: None, partition_key="ledger")
    assert key_of(enqueue("ledger.fixed")) == "ledger"
    assert key_of(enqueue("ledger.fixed", partition_key="mine")) == "mine"
    assert key_of(enqueue("test.record")) is None  # a handler without one


def test_a_handlers_callable_is_asked_with_each_payload(register_handler: Register) -> None:
    register_handler("ledger.apply", lambda payload: None, partition_key=by_account)
    assert key_of(enqueue("ledger.apply", {"account": 42})) == "account:42"
    assert key_of(enqueue("ledger.apply", {})) is None  # None: no partition
    assert key_of(enqueue("ledger.apply", {"account": 1}, partition_key="x")) == "x"
    ids = enqueue_many("ledger.apply", [{"account": 1}, {}, {"account": 2}])
    assert [key_of(i) for i in ids] == ["account:1", None, "account:2"]
    ids = enqueue_many("ledger.apply", [{"account": 1}, {"account": 2}], partition_key="all")
    assert [key_of(i) for i in ids] == ["all", "all"]


def test_a_handlers_str_key_reaches_every_job_of_enqueue_many(register_handler: Register) -> None:
    register_handler("ledger.fixed", lambda payload: None, partition_key="ledger")
    ids = enqueue_many("ledger.fixed", [{}] * 3)
    assert {key_of(i) for i in ids} == {"ledger"}
    assert [key_of(i) for i in enqueue_many("test.record", [{}, {}])] == [None, None]


def test_a_callable_that_raises_names_the_job_and_writes_nothing(
    register_handler: Register,
) -> None:
    register_handler("ledger.apply", lambda p: None, partition_key=lambda p: f"a:{p['account']}")
    with pytest.raises(InvalidJobError, match=r"'ledger.apply'.*raised KeyError: 'account'"):
        enqueue("ledger.apply", {})
    with pytest.raises(InvalidJobError, match=r"'ledger\.apply'") as raised:
        enqueue_many("ledger.apply", [{"account": 1}, {"account": 2}, {}])
    assert isinstance(raised.value.__cause__, KeyError)  # the handler's own error, chained
    with pytest.raises(InvalidJobError, match=r"'ledger\.apply'"), transaction.atomic():
        enqueue_on_commit("ledger.apply", {})  # asked now, not at the commit
    assert not Job.objects.exists()


@pytest.mark.parametrize("answer", [42, b"bytes", "nul\x00", "k" * 501])
def test_a_callable_answering_no_usable_key_is_refused(
    register_handler: Register, answer: Any
) -> None:
    register_handler("ledger.apply", lambda payload: None, partition_key=lambda p: answer)
    with pytest.raises(InvalidJobError, match=r"Job 'ledger.apply': partition_key"):
        enqueue("ledger.apply", {})
    with pytest.raises(InvalidJobError, match=r"Job 'ledger.apply': partition_key"):
        enqueue_many("ledger.apply", [{}])
    assert not Job.objects.exists()


def test_a_bad_input_keeps_the_callers_transaction(register_handler: Register) -> None:
    register_handler("ledger.apply", lambda payload: None, partition_key=lambda p: p["account"])
    with transaction.atomic():
        kept = enqueue("test.record")
        with pytest.raises(InvalidJobError):
            enqueue("ledger.apply", {})
        also = enqueue("ledger.apply", {"account": "a"})
    assert {key_of(kept), key_of(also)} == {None, "a"}


@pytest.mark.parametrize("key", [42, "", "k" * 501, "nul\x00"])
def test_a_bad_handler_key_is_refused_at_registration(key: Any) -> None:
    # '' too: it would print as nothing, and read as "no key" when it is one.
    with pytest.raises(InvalidJobError, match=r"Job 'ledger\.bad': partition_key"):
        job("ledger.bad", partition_key=key)(lambda payload: None)
    assert registry.get("ledger.bad") is None


def test_replace_keeps_the_new_jobs_partition(register_handler: Register) -> None:
    register_handler("ledger.apply", lambda payload: None, partition_key=by_account)
    first = enqueue("ledger.apply", {"account": 1}, key="k")
    again = enqueue("ledger.apply", {"account": 2}, key="k", replace=True)
    assert again == first and key_of(first) == "account:2"


def test_enqueue_many_names_the_payload_whose_key_cannot_be_made(
    register_handler: Register,
) -> None:
    register_handler("ledger.strict", lambda payload: None, partition_key=lambda p: p["account"])
    with pytest.raises(InvalidJobError, match=r"payload at index 1: .*KeyError") as refused:
        enqueue_many("ledger.strict", [{"account": "a"}, {}])
    assert isinstance(refused.value.__cause__, KeyError)
    assert not Job.objects.exists()  # nothing written
