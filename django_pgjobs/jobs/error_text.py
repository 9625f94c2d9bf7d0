"""How a failure is written down: the text stored on a job (and in a workflow's error)."""

from __future__ import annotations

import traceback

# Tracebacks from deep recursion can be megabytes; the row needs the cause, not all of it.
MAX_ERROR_LENGTH = 32_000


def clean_text(text: str) -> str:
    """Text PostgreSQL will store: NUL bytes and lone surrogates (from undecodable file names,
    say) made visible instead of rejected, so no message can make its outcome unwritable."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_error(exc: BaseException) -> str:
    """The error text stored on the job: the exception line first, then the traceback."""
    summary = "".join(traceback.format_exception_only(exc)).strip()
    full = "".join(traceback.format_exception(exc)).strip()
    text = clean_text(f"{summary}\n\n{full}")
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH // 2] + "\n...\n" + text[-MAX_ERROR_LENGTH // 2 :]
    return text
