from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from django_pgjobs import job
from django_pgjobs.exceptions import HandlerAlreadyRegistered, InvalidJobError
from django_pgjobs.jobs import JobHandler
from django_pgjobs.jobs.registry import registry


def test_job_decorator_registers_with_options() -> None:
    @job("test.decorated", max_attempts=5, retry_delay=2, queue="mail", priority=10)
    def handler(payload: Any) -> str:
        return "ran"

    try:
        assert isinstance(handler, JobHandler)
        assert registry.get("test.decorated") is handler
        assert (handler.max_attempts, handler.retry_delay, handler.queue, handler.priority) == (
            5,
            2.0,
            "mail",
            10,
        )
        assert handler({}) == "ran"  # still callable directly
        assert not handler.wants_progress
    finally:
        registry.remove("test.decorated")


def test_bare_decorator_names_the_job_after_the_function() -> None:
    @job
    def nightly(payload: Any) -> None: ...

    try:
        assert (
            nightly.name
            == f"{__name__}.test_bare_decorator_names_the_job_after_the_function.<locals>.nightly"
        )
    finally:
        registry.remove(nightly.name)


def test_second_parameter_means_progress_reporter(register_handler: Callable[..., Any]) -> None:
    assert register_handler("t.two", lambda payload, report: None).wants_progress
    assert register_handler("t.varargs", lambda *args: None).wants_progress
    assert not register_handler("t.one", lambda payload: None).wants_progress


def test_a_different_function_under_a_taken_name_is_refused(
    register_handler: Callable[..., Any],
) -> None:
    def first(payload: Any) -> None: ...

    def second(payload: Any) -> None: ...

    register_handler("t.taken", first)
    register_handler("t.taken", first)  # registering the same function again is harmless
    with pytest.raises(HandlerAlreadyRegistered, match="already registered"):
        register_handler("t.taken", second)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "between 1 and"),
        ({"priority": 1000}, "between -100 and 100"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"retry_delay": float("nan")}, "finite number"),
        ({"retry_delay": float("inf")}, "finite number"),
        ({"queue": ""}, "queue name"),
    ],
)
def test_bad_options_fail_at_registration(
    register_handler: Callable[..., Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        register_handler("t.bad", lambda payload: None, **options)


def test_a_handler_must_take_the_payload(register_handler: Callable[..., Any]) -> None:
    with pytest.raises(InvalidJobError, match="must accept the payload"):
        register_handler("t.no-args", lambda: None)


@pytest.mark.parametrize("option", ["max_attempts", "priority", "retry_delay", "queue"])
def test_an_option_error_names_the_job(register_handler: Callable[..., Any], option: str) -> None:
    bad = {"max_attempts": 0, "priority": 1000, "retry_delay": -1, "queue": ""}[option]
    with pytest.raises(InvalidJobError, match=r"^Job 't\.named': "):
        register_handler("t.named", lambda payload: None, **{option: bad})


def test_the_job_decorator_names_the_job_in_an_option_error() -> None:
    with pytest.raises(InvalidJobError, match=r"Job 't\.decorated-bad': max_attempts must be"):

        @job("t.decorated-bad", max_attempts=0)
        def handler(payload: Any) -> None: ...

    assert registry.get("t.decorated-bad") is None


def needs_three(payload: Any, report: Any, extra: Any) -> None: ...


def needs_a_keyword(payload: Any, *, user: Any) -> None: ...


@pytest.mark.parametrize(
    ("func", "shown"),
    [(needs_three, "(payload, report, extra)"), (needs_a_keyword, "(payload, *, user)")],
)
def test_a_handler_needing_more_than_the_worker_passes_is_refused(
    register_handler: Callable[..., Any], func: Callable[..., Any], shown: str
) -> None:
    with pytest.raises(InvalidJobError) as raised:
        register_handler("t.greedy", func)
    assert f"The handler of 't.greedy' needs {shown}" in str(raised.value)
    assert "give the other parameters defaults" in str(raised.value)
    assert registry.get("t.greedy") is None


def test_parameters_with_defaults_are_fine(register_handler: Callable[..., Any]) -> None:
    def handler(payload: Any, report: Any = None, extra: int = 1, *, user: Any = None) -> None: ...

    assert register_handler("t.defaults", handler).wants_progress


@pytest.mark.parametrize("name", ["pgjobs.workflow:abc", "pgjobs.cleanup", "pgjobs."])
def test_names_in_the_reserved_prefix_are_refused(
    register_handler: Callable[..., Any], name: str
) -> None:
    with pytest.raises(InvalidJobError, match="reserved for django-pgjobs's own jobs"):
        register_handler(name, lambda payload: None)
    with pytest.raises(InvalidJobError, match="reserved"):
        job(name)(lambda payload: None)
    assert registry.get(name) is None


def test_lambdas_and_a_factorys_functions_are_told_apart(
    register_handler: Callable[..., Any],
) -> None:
    """Two lambdas share the path ``...<lambda>``, a factory's functions ``make.<locals>.h``: the
    second replaced the first without a word."""
    register_handler("t.lambda", lambda payload: 1)
    with pytest.raises(HandlerAlreadyRegistered, match="already registered"):
        register_handler("t.lambda", lambda payload: 2)

    def make(value: int) -> Callable[[Any], int]:
        def handler(payload: Any) -> int:
            return value

        return handler

    made = make(1)
    register_handler("t.made", made)
    register_handler("t.made", made)  # the very same object: harmless
    with pytest.raises(HandlerAlreadyRegistered, match="already registered"):
        register_handler("t.made", make(2))
    assert registry.get("t.made").func(None) == 1  # type: ignore[union-attr]


def test_a_module_imported_again_registers_its_handlers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reimported_jobs.py").write_text(
        "from django_pgjobs import job\n\n"
        "@job('t.reimported')\ndef handler(payload):\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("reimported_jobs")
        first = registry.get("t.reimported")
        importlib.reload(module)  # a new function object, at the same dotted path
        assert registry.get("t.reimported") is not first
    finally:
        registry.remove("t.reimported")
        sys.modules.pop("reimported_jobs", None)
