from __future__ import annotations

from collections.abc import Callable
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
