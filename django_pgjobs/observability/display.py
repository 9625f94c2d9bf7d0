"""How pgjobs shows stored values to people: on a terminal (the commands) and in log lines.

Text: job names, queues, error lines, host names, schedule names and workflow ids come from the
database, and any producer (Python, SQL, another language) can write any character there. Printed
raw, a newline forges a log line, a carriage return or an ANSI escape rewrites what the operator
sees. :func:`printable` escapes them; every command's output and the worker's log records go
through it.

Commands a message suggests quote the stored text they carry (:func:`shell_word`), so pasting
one runs that command with that argument and nothing else.

Times: one rule everywhere, the project's ``TIME_ZONE`` with the UTC offset shown
(:func:`local_time`), so a line never leaves its reader guessing which zone it is in.
"""

from __future__ import annotations

import logging
import re
import shlex
from datetime import datetime, timedelta

from django.utils import timezone

# C0 and C1 controls, DEL, the Unicode line and paragraph separators (line breaks to some
# viewers), and the format characters (category Cf): invisible, so an id holding a zero-width
# space (U+200B) or a byte order mark (U+FEFF) passes for another, and among them the
# bidirectional overrides and isolates, which reorder what is shown. The Cf list is Unicode 15's,
# written out since deriving it from unicodedata takes 80 ms; a test checks it against the
# running Python's.
_FORMAT = (
    "\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_FORMAT}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Every logger the package logs to (a test checks the list against the code). Filters do not
# propagate to child loggers, so each gets its own.
LOGGERS = (
    "django_pgjobs",
    "django_pgjobs.worker",
    "django_pgjobs.jobs",
    "django_pgjobs.signals",
    "django_pgjobs.scheduler",
    "django_pgjobs.workflows",
    "django_pgjobs.tasks",
    "django_pgjobs.metrics",
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object) -> str:
    """``str(text)`` with every control and format character escaped as Python would write it
    (``\\n``, ``\\x1b``, ``\\u2028``, ``\\u200b``, ``\\U000e0041``): one line, shown as stored,
    that cannot move the cursor or hide a character."""
    value = str(text)
    return _UNSAFE.sub(_escape, value) if _UNSAFE.search(value) else value


def shell_word(text: object) -> str:
    """``text`` quoted as one word of a shell command a message suggests (``manage.py
    pgjobs_workflows resume ID``). Workflow ids and queue names are the application's, or any
    SQL's, and may hold any character: pasted unquoted, ``x$(touch f)`` would run ``touch f``
    and a space would split the id. Safe text is left as it is (``order-1``)."""
    return shlex.quote(str(text))


def local_time(moment: datetime) -> str:
    """An aware datetime in the project's ``TIME_ZONE``, offset shown: 2026-12-03 15:04:05+0100."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S%z}"


class EscapeStoredText(logging.Filter):
    """A logger filter: a record whose message would carry a control character is rewritten to
    its escaped form, so a job name or an error with a newline stays on its own log line. Other
    records are left as they are (message template and arguments intact for log aggregators)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _UNSAFE.search(message):
            record.msg, record.args = printable(message), None
        return True


def escape_stored_text_in_logs() -> None:
    """Add :class:`EscapeStoredText` to every pgjobs logger, once. The app does at start-up, so
    worker, scheduler and web processes all log stored text escaped, whatever ``LOGGING`` says."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, EscapeStoredText) for f in logger.filters):
            logger.addFilter(EscapeStoredText())


def counted(n: int, noun: str) -> str:
    """``1 job``, ``2 jobs``: a count with its noun in the right number, in log lines and
    explain's sentences (the nouns counted all take an s)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def in_number(text: str, n: int) -> str:
    """``text`` with each ``(s)`` made right for ``n`` things: ``in_number("job(s) cancelled",
    1)`` is ``job cancelled``, with 2 ``jobs cancelled``. For messages whose noun comes from
    their caller."""
    return text.replace("(s)", "" if n == 1 else "s")


def elapsed(seconds: float) -> str:
    """A duration as ``H:MM:SS`` (``2 days, 3:04:05`` past a day), to the second."""
    return str(timedelta(seconds=round(seconds)))


def byte_size(count: float) -> str:
    """Bytes as ``pg_size_pretty`` shows them, in binary units: 8,192 bytes, 97 MiB, 1,536 MiB."""
    unit = "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if count < 10 * 1024:
            break
        count, unit = count / 1024, larger
    return f"{count:,.0f} {unit}"
