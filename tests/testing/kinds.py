"""The two kinds of database test a project writes: a TestCase (one transaction per test, rows
never committed) and a TransactionTestCase (everything commits). The helpers must serve both."""

from __future__ import annotations

import pytest

# Parametrise a test with this to run it as both kinds (it takes a ``kind`` argument).
BOTH_KINDS = pytest.mark.parametrize(
    "kind",
    [
        pytest.param("testcase", marks=pytest.mark.django_db),
        pytest.param("transaction", marks=pytest.mark.django_db(transaction=True)),
    ],
)
