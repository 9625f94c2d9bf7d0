"""Helpers for the tests of projects that use django-pgjobs: run what is due in-process
(:func:`drain`), assert what is waiting in the queue (:func:`assert_enqueued`), run on-commit
enqueues in a ``TestCase`` (:func:`run_on_commit_callbacks`) and move the clock
(:func:`advance`). With pytest, the ``pgjobs`` fixture (:mod:`.pytest_plugin`) hands them out.

Names load on first use, as in the other packages: pytest loads the plugin before Django is set
up, and the helpers need the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

_EXPORTS = {
    "drain": "django_pgjobs.testing.in_process",
    "DrainResult": "django_pgjobs.testing.in_process",
    "run_on_commit_callbacks": "django_pgjobs.testing.in_process",
    "enqueued": "django_pgjobs.testing.assertions",
    "assert_enqueued": "django_pgjobs.testing.assertions",
    "assert_not_enqueued": "django_pgjobs.testing.assertions",
    "advance": "django_pgjobs.testing.clock",
    "Advanced": "django_pgjobs.testing.clock",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from django_pgjobs.testing.assertions import assert_enqueued as assert_enqueued
    from django_pgjobs.testing.assertions import assert_not_enqueued as assert_not_enqueued
    from django_pgjobs.testing.assertions import enqueued as enqueued
    from django_pgjobs.testing.clock import Advanced as Advanced
    from django_pgjobs.testing.clock import advance as advance
    from django_pgjobs.testing.in_process import DrainResult as DrainResult
    from django_pgjobs.testing.in_process import drain as drain
    from django_pgjobs.testing.in_process import run_on_commit_callbacks as run_on_commit_callbacks
