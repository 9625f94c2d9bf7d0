"""A timeout below what PostgreSQL keeps (it rounds intervals to the microsecond) is refused with
a message at every door, never stored as 0 and refused by a CHECK as an IntegrityError."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import checks
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import validation


@pytest.mark.parametrize("tiny", [1e-7, 0.0000004, timedelta(microseconds=1), 0.000999])
def test_enqueue_refuses_a_timeout_under_a_millisecond_and_the_transaction_goes_on(
    transactional_db: None, tiny: float | timedelta
) -> None:
    with pytest.raises(InvalidJobError, match=r"timeout must be .* from 0\.001 to 31622400"):
        enqueue("test.record", timeout=tiny)
    with connection.cursor() as cur:  # nothing aborted: the caller's connection still works
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_a_millisecond_is_accepted() -> None:
    assert validation.check_timeout(0.001) == 0.001
    assert validation.check_timeout(timedelta(milliseconds=1)) == 0.001


def test_the_timeout_setting_has_the_same_floor() -> None:
    with override_settings(PGJOBS={"TIMEOUT": 1e-7}):
        errors = [e for e in checks.run_checks() if e.id == "pgjobs.E008"]
    assert len(errors) == 1 and "from 0.001 to 31622400" in errors[0].msg
