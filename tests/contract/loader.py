"""Django's task tests, fetched (:mod:`.source`), rewritten (:mod:`.rewrite`) and imported as the
package ``tests.contract.django_tests``, with the exclusions applied."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import types
import unittest
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

from django.db import connections

from django_pgjobs.tasks import framework
from tests.contract import rewrite as rewriting
from tests.contract.source import CACHE, FILES, fetch_suite, suite_version


def load_test_cases() -> dict[str, type[unittest.TestCase]]:
    """The TestCase classes of Django's task tests, by name, as the harness runs them."""
    version = suite_version()
    originals = fetch_suite(version)
    sources = {name: (originals / name).read_text(encoding="utf-8") for name in FILES}
    backport = framework.NAME == "django_tasks"
    rewritten = rewriting.rewrite(sources, backport=backport)
    directory = CACHE / f"django-{version}" / framework.NAME
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {"__init__.py": "", **rewritten}.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")

    package = sys.modules.get(rewriting.PACKAGE)
    if package is None:
        package = types.ModuleType(rewriting.PACKAGE)
        package.__path__ = [str(directory)]
        sys.modules[rewriting.PACKAGE] = package
    cases: dict[str, type[unittest.TestCase]] = {}
    for name in FILES:
        if not name.startswith("test_"):
            continue
        module = importlib.import_module(f"{rewriting.PACKAGE}.{name.removesuffix('.py')}")
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, unittest.TestCase)
                and value.__module__ == module.__name__
            ):
                if attr in cases:
                    raise rewriting.SuiteChanged(f"Two test classes are named {attr}.")
                cases[attr] = value
    _exclude(cases, rewriting.EXCLUDED)
    if backport:
        _exclude(cases, rewriting.EXCLUDED_ON_BACKPORT)
    for case in cases.values():
        for attr, value in vars(case).items():
            if attr.startswith("test") and inspect.iscoroutinefunction(value):
                setattr(case, attr, _allowing_sync_calls(value))
    return cases


def _allowing_sync_calls(test: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """See the note at the end of :mod:`.rewrite`."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        with mock.patch.dict(os.environ, {"DJANGO_ALLOW_ASYNC_UNSAFE": "true"}):
            try:
                return await test(*args, **kwargs)
            finally:
                connections.close_all()  # the event loop thread's, not the test's

    return run


def _exclude(cases: dict[str, type[unittest.TestCase]], excluded: dict[str, str]) -> None:
    for key, reason in excluded.items():
        file, class_name, method = key.split("::")
        case = cases.get(class_name)
        test = getattr(case, method, None)
        if case is None or test is None or case.__module__.rpartition(".")[2] + ".py" != file:
            raise rewriting.SuiteChanged(f"The excluded test {key} does not exist.")
        setattr(case, method, unittest.skip(f"Excluded from Django's contract: {reason}")(test))
