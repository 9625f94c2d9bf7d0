"""How Django's task tests are turned into tests of PgJobsBackend: every change, with its reason,
in one place. The rewritten copies are written beside the originals in the cache
(``.venv-test/django-contract/django-<version>/<framework>/``) for reading.

A rule that matches nothing is an error, and so is an exclusion naming a test that does not
exist: a newer Django's tests fail loudly here rather than run half rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The package the rewritten modules are imported as (their module paths appear in job names).
PACKAGE = "tests.contract.django_tests"


@dataclass(frozen=True)
class Rule:
    pattern: str  # a regular expression
    replacement: str
    why: str
    backport_only: bool = False  # only for the django_tasks backport (Django 5.2)


RULES = (
    Rule(
        r'"django\.tasks\.backends\.immediate\.ImmediateBackend"',
        '"tests.contract.backends.RunNowBackend"',
        "ImmediateBackend's scenarios run on PgJobsBackend, executed by a real worker.",
    ),
    Rule(
        r'"django\.tasks\.backends\.dummy\.DummyBackend"',
        '"tests.contract.backends.EnqueueOnlyBackend"',
        "DummyBackend's scenarios run on PgJobsBackend, with no worker.",
    ),
    Rule(
        r"from django\.tasks\.backends\.immediate import ImmediateBackend",
        "from tests.contract.backends import RunNowBackend as ImmediateBackend",
        "assertIsInstance(..., ImmediateBackend) then checks that our backend is the one used.",
    ),
    Rule(
        r"from django\.tasks\.backends\.dummy import DummyBackend",
        "from tests.contract.backends import EnqueueOnlyBackend as DummyBackend",
        "assertIsInstance(..., DummyBackend) then checks that our backend is the one used.",
    ),
    Rule(
        r"\bSimpleTestCase\b",
        "TransactionTestCase",
        "Tasks are rows in PostgreSQL, run by a worker on its own connection: the tests need "
        "the database, with commits (and the tables emptied after each test).",
    ),
    Rule(
        r"\n *available_apps = \[\]\n",
        "\n",
        "A TransactionTestCase empties only the tables of available_apps: the job tables are "
        "django_pgjobs's.",
    ),
    Rule(
        r'"tasks\.tasks\.',
        f'"{PACKAGE}.tasks.',
        "Django's runner imports tests/tasks as the package 'tasks'; here it is " + PACKAGE + ".",
    ),
    Rule(
        r'object\.__setattr__\(enqueued_result, "status", TaskResultStatus\.SUCCESSFUL\)',
        "run_due_tasks()",
        "DummyBackend's test_refresh_result fakes the task's completion by changing the stored "
        "result in memory; here a worker runs the task, and refresh() must then show it.",
    ),
    Rule(
        r"(\n *)from \. import tasks as test_tasks\n",
        r"\1from . import tasks as test_tasks\1from tests.contract.backends import run_due_tasks\n",
        "For the rule above.",
    ),
    Rule(
        r"self\.assertEqual\(result\.errors\[0\]\.exception_class, TypeError\)",
        "self.assertTrue(issubclass(result.errors[0].exception_class, TypeError))",
        "A return value JSON cannot hold fails the task with django_pgjobs's ResultNotStorable, "
        "a TypeError that says it is the return value that cannot be stored (and that the "
        "task is not retried); Django's ImmediateBackend records the TypeError of its JSON "
        "check.",
    ),
    Rule(
        r"\bdjango\.tasks\b",
        "django_tasks",
        "On Django 5.2 the framework is the django_tasks backport (modules and logger name).",
        backport_only=True,
    ),
    Rule(
        r"\bInvalidTaskBackend\b",
        "InvalidTaskBackendError",
        "The backport's name for InvalidTaskBackend.",
        backport_only=True,
    ),
    Rule(
        r"Backend does not support async Tasks\.",
        "Backend does not support async tasks.",
        "The backport's wording of this InvalidTaskError.",
        backport_only=True,
    ),
    Rule(
        r"\bInvalidTask\b",
        "InvalidTaskError",
        "The backport's name for InvalidTask.",
        backport_only=True,
    ),
)

# Django's tests that assert what is particular to Django's own ImmediateBackend, DummyBackend
# or test helpers rather than to a task backend, or a behaviour we chose differently. Each is
# skipped with its reason, so every run lists them.
EXCLUDED_FILES = {
    "test_custom_backend.py": (
        "Tests BaseTaskBackend through backends defined in that file (CustomBackend, ...); no "
        "PgJobsBackend code would run."
    ),
}
_NO_RESULTS = (
    "ImmediateBackend keeps no results (supports_get_result is False). PgJobsBackend reads any "
    "task's result by id: TaskTestCase's and DummyBackendTestCase's get_result and "
    "refresh_result tests run here on it."
)
EXCLUDED = {
    "test_immediate_backend.py::ImmediateBackendTestCase::test_cannot_get_result": _NO_RESULTS,
    "test_immediate_backend.py::ImmediateBackendTestCase::test_cannot_refresh_result": (
        _NO_RESULTS
    ),
    "test_immediate_backend.py::ImmediateBackendTestCase::test_cannot_pass_run_after": (
        "ImmediateBackend cannot defer a task (supports_defer is False); PgJobsBackend can: "
        "tests/tasks/test_backend.py::test_run_after_takes_an_aware_datetime_or_a_delay."
    ),
    "test_immediate_backend.py::ImmediateBackendTestCase::test_throws_keyboard_interrupt": (
        "ImmediateBackend runs the task in the caller's thread, so a KeyboardInterrupt the task "
        "raises interrupts the caller. A worker runs tasks in handler threads, where a "
        "KeyboardInterrupt or SystemExit raised by task code fails that task, not the worker "
        "(django_pgjobs.worker.attempt); test_catches_exception runs here for SystemExit."
    ),
    (
        "test_immediate_backend.py::ImmediateBackendTransactionTestCase::"
        "test_doesnt_wait_until_transaction_commit_by_default"
    ): (
        "ImmediateBackend runs the task inside the caller's transaction. PgJobsBackend's "
        "enqueue() joins that transaction: the task exists, and a worker can run it, only once "
        "it commits (tests/tasks/test_backend.py::test_a_rolled_back_enqueue_leaves_nothing). "
        "That enqueue() does not wait for the commit is DummyBackendTransactionTestCase's "
        "version of this test, which runs here."
    ),
}

# On Django 5.2, what Django 6.1's framework does and the backport (django-tasks 0.12) does not:
# not ours to change.
_PICKLE = (
    "Pickling a task (Task.__reduce__ and Task._reconstruct) is new in Django 6.1; the "
    "backport's Task pickles its function by name, which @task has replaced by the task."
)
EXCLUDED_ON_BACKPORT = {
    "test_tasks.py::TaskTestCase::test_pickle_task": _PICKLE,
    "test_tasks.py::TaskTestCase::test_pickle_task_result": _PICKLE,
    "test_tasks.py::TaskTestCase::test_unpickle_arbitrary_string": _PICKLE,
    "test_tasks.py::TaskTestCase::test_unpickle_non_task_object": _PICKLE,
    "test_tasks.py::TaskTestCase::test_run_after_in_decorator": (
        "Django 6.1's @task refuses run_after with its own message; the backport's passes it "
        "on to the task class, which refuses it with Python's TypeError."
    ),
}

# Async tests that call synchronous APIs (result.refresh(), get_result(), the backends' results)
# from the event loop, which Django allows only for code that touches no database: the loader
# runs them with DJANGO_ALLOW_ASYNC_UNSAFE set and closes the loop thread's connections after.
# The async APIs themselves (aenqueue, aget_result, arefresh) run as they do in production.


class SuiteChanged(Exception):
    """Django's tests no longer match a rule or an exclusion: the harness needs updating."""


def rewrite(sources: dict[str, str], *, backport: bool) -> dict[str, str]:
    """Django's test files (name -> text) as the harness runs them."""
    result = dict(sources)
    for rule in RULES:
        if rule.backport_only and not backport:
            continue
        matched = 0
        for name, text in result.items():
            result[name], count = re.subn(rule.pattern, rule.replacement, text)
            matched += count
        if not matched:
            raise SuiteChanged(f"The rewrite {rule.pattern!r} matched nothing: {rule.why}")
    return result
