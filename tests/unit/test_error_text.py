"""Describing a failure never fails, whatever the exception (no database)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from django_pgjobs.jobs.error_text import (
    MAX_ERROR_LENGTH,
    describe_error,
    log_exception,
    safe_str,
)


class NotesRaise(Exception):
    @property
    def __notes__(self) -> Any:  # type: ignore[override]
        raise RuntimeError("notes unreadable")


class CauseRaises(Exception):
    @property
    def __cause__(self) -> Any:  # type: ignore[override]
        raise RuntimeError("cause unreadable")


class OutOfMemoryWhileFormatting(Exception):
    @property
    def __notes__(self) -> Any:  # type: ignore[override]
        raise MemoryError


class StrRaisesToo(NotesRaise):
    def __str__(self) -> str:
        raise MemoryError


class Huge(NotesRaise):
    def __str__(self) -> str:
        return "x" * (10 * MAX_ERROR_LENGTH)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_an_ordinary_error_is_its_line_then_its_traceback() -> None:
    text = describe_error(raised(ValueError("smtp down")))
    assert text.startswith("ValueError: smtp down\n\nTraceback (most recent call last):")


@pytest.mark.parametrize("cls", [NotesRaise, CauseRaises, OutOfMemoryWhileFormatting])
def test_an_error_whose_traceback_cannot_be_formatted_is_described_by_what_is_readable(
    cls: type[Exception],
) -> None:
    text = describe_error(raised(cls("card declined")))
    assert text.startswith(f"{__name__}.{cls.__qualname__}: card declined\n\n")
    assert "(Its traceback could not be formatted: " in text


def test_an_error_whose_message_cannot_be_read_either_still_names_its_class() -> None:
    text = describe_error(raised(StrRaisesToo()))
    assert text.startswith(f"{__name__}.StrRaisesToo: <StrRaisesToo str() failed>")


def test_a_huge_fallback_description_is_cut_like_any_other() -> None:
    text = describe_error(raised(Huge()))
    assert len(text) <= MAX_ERROR_LENGTH + 5 and "\n...\n" in text


def test_safe_str_never_raises() -> None:
    assert safe_str(StrRaisesToo()) == "<StrRaisesToo str() failed>"
    assert safe_str(42) == "42"


def test_logging_an_error_whose_traceback_cannot_be_formatted_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.error_text")
    with caplog.at_level(logging.ERROR, logger="tests.error_text"):
        try:
            raise NotesRaise("unloggable")
        except NotesRaise:
            log_exception(logger, "Job %s failed inside the worker", "j1")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Job j1 failed inside the worker") for m in messages), messages
    assert any(f"{__name__}.NotesRaise: unloggable" in m for m in messages), messages
