"""The ``pgjobs`` pytest fixture: django-pgjobs' testing helpers, one argument away.

Installed with the package and loaded by pytest through the ``pytest11`` entry point, so it must
cost nothing where it is not used: it imports pytest alone, and Django and the helpers only when
a test asks for the fixture (pytest loads plugins before Django is set up, and projects that do
not use pytest-django load it too). Disable it with ``-p no:django_pgjobs``.

The fixture does not ask for database access: mark the test ``@pytest.mark.django_db`` (either
kind) as for any database test.
"""

from __future__ import annotations

import pytest


class PgJobsHelpers:
    """What the ``pgjobs`` fixture gives: the functions of :mod:`django_pgjobs.testing`."""

    def __init__(self) -> None:
        # Here, not at the top: see the module docstring.
        from django_pgjobs.testing import assertions, clock, in_process

        self.drain = in_process.drain
        self.run_on_commit_callbacks = in_process.run_on_commit_callbacks
        self.enqueued = assertions.enqueued
        self.assert_enqueued = assertions.assert_enqueued
        self.assert_not_enqueued = assertions.assert_not_enqueued
        self.advance = clock.advance


@pytest.fixture
def pgjobs() -> PgJobsHelpers:
    """``pgjobs.drain()``, ``pgjobs.enqueued()``, ``pgjobs.assert_enqueued()``,
    ``pgjobs.assert_not_enqueued()``, ``pgjobs.advance()`` and
    ``pgjobs.run_on_commit_callbacks()``; see :mod:`django_pgjobs.testing`."""
    return PgJobsHelpers()
