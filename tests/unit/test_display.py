"""What a terminal or a log line shows of stored text, and in which time zone (no database)."""

from __future__ import annotations

import ast
import logging
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import override_settings

import django_pgjobs
from django_pgjobs.observability.display import LOGGERS, EscapeStoredText, local_time, printable
from django_pgjobs.worker.process import LogFormatter


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("plain name", "plain name"),
        ("x\n2026-12-03 INFO forged", "x\\n2026-12-03 INFO forged"),
        ("\x1b[2J\rwiped", "\\x1b[2J\\rwiped"),
        ("tab\tbell\x07del\x7fc1\x9b", "tab\\tbell\\x07del\\x7fc1\\x9b"),
        ("line\u2028sep\u202eevil", "line\\u2028sep\\u202eevil"),
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),
        # Format characters (Cf) are invisible: an id holding one would pass for another.
        ("order-\u200b1\u200f", "order-\\u200b1\\u200f"),
        ("\ufeffbom\u2060\u2064", "\\ufeffbom\\u2060\\u2064"),
        ("soft\xadhyphen", "soft\\xadhyphen"),
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_printable_escapes_control_characters_and_keeps_the_rest(stored: str, shown: str) -> None:
    assert printable(stored) == shown


def test_printable_escapes_every_format_character_of_this_pythons_unicode() -> None:
    """The list is written out (deriving it costs 80 ms at import): it must cover every Cf
    character this Python knows, and hold nothing else but controls and separators, or
    characters a later Unicode assigned (unassigned here)."""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        category = unicodedata.category(char)
        escaped = printable(char) != char
        assert escaped == (category in ("Cc", "Cf", "Zl", "Zp")) or (
            escaped and category == "Cn"
        ), (hex(code), category)


def test_a_log_record_carrying_a_newline_is_rewritten_one_without_is_left_alone() -> None:
    forged = logging.LogRecord("django_pgjobs.worker", 20, "f", 1, "Completed %s", ("x\ny",), None)
    assert EscapeStoredText().filter(forged)
    assert (forged.getMessage(), forged.args) == ("Completed x\\ny", None)
    plain = logging.LogRecord("django_pgjobs.worker", 20, "f", 1, "Completed %s", ("x",), None)
    EscapeStoredText().filter(plain)
    assert (plain.msg, plain.args) == ("Completed %s", ("x",))


@override_settings(TIME_ZONE="Europe/Paris")
def test_times_are_shown_in_time_zone_with_the_offset_in_commands_and_log_lines() -> None:
    moment = datetime(2026, 12, 3, 14, 4, 5, tzinfo=UTC)
    assert local_time(moment) == "2026-12-03 15:04:05+0100"
    record = logging.LogRecord("django_pgjobs", 20, "f", 1, "hi", None, None)
    record.created = moment.timestamp()
    assert LogFormatter().format(record) == "2026-12-03 15:04:05+0100 INFO django_pgjobs: hi"


def test_every_logger_the_package_uses_gets_the_escaping_filter() -> None:
    root = Path(django_pgjobs.__file__).parent
    used = {
        node.args[0].value
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) == "logging.getLogger"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert used <= set(LOGGERS)
    for name in LOGGERS:  # added when the app started
        assert any(isinstance(f, EscapeStoredText) for f in logging.getLogger(name).filters)


def test_the_worker_format_keeps_a_traceback_s_line_breaks_and_escapes_the_rest() -> None:
    try:
        raise ValueError("boom\x1b[2J\rwiped")
    except ValueError:
        record = logging.LogRecord("django_pgjobs", 40, "f", 1, "Job x\ny", None, sys.exc_info())
    lines = LogFormatter().format(record).splitlines()
    assert lines[0].endswith("ERROR django_pgjobs: Job x\\ny")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom\\x1b[2J\\rwiped"
