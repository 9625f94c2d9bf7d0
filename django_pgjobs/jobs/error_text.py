"""How a failure is written down: the text stored on a job (and in a workflow's error), and the
worker's own log lines about failures. None of it ever raises: an exception that cannot be
described must still fail its attempt, not the thread describing it."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback

# Tracebacks from deep recursion can be megabytes; the row needs the cause, not all of it.
MAX_ERROR_LENGTH = 32_000

# The last resort, when not even the exception's class could be read.
UNDESCRIBED_ERROR = "UndescribableError: the attempt failed, and describing its error failed too."


def clean_text(text: str) -> str:
    """Text PostgreSQL will store: NUL bytes and lone surrogates (from undecodable file names,
    say) made visible instead of rejected, so no message can make its outcome unwritable."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder when its ``__str__`` raises (as ``traceback`` does)."""
    try:
        return str(obj)
    except Exception:
        return f"<{type(obj).__name__} str() failed>"


def describe_error(exc: BaseException) -> str:
    """The error text stored on the job: the exception line first, then the traceback.

    Never raises. When the traceback cannot be formatted (a ``__notes__`` or ``__cause__``
    property that raises, a ``MemoryError`` while formatting) the text says what was readable:
    the class, the message if ``str()`` works, and why the rest is missing.
    """
    try:
        summary = "".join(traceback.format_exception_only(exc)).strip()
        full = "".join(traceback.format_exception(exc)).strip()
        text = f"{summary}\n\n{full}"
    except Exception as failure:
        text = _fallback_description(exc, failure)
    try:
        return shortened(clean_text(shortened(text)))
    except Exception:
        return UNDESCRIBED_ERROR


def _fallback_description(exc: BaseException, failure: Exception) -> str:
    try:
        cls = type(exc)
        line = f"{cls.__module__}.{cls.__qualname__}: {safe_str(exc)}"
        if cls.__module__ == "builtins":
            line = line.removeprefix("builtins.")
        why = f"{type(failure).__name__}: {safe_str(failure)}"
        return f"{line}\n\n(Its traceback could not be formatted: {why})"
    except Exception:
        return UNDESCRIBED_ERROR


def shortened(text: str) -> str:
    """``text`` cut to MAX_ERROR_LENGTH characters, its head and its tail kept."""
    if len(text) > MAX_ERROR_LENGTH:
        return text[: MAX_ERROR_LENGTH // 2] + "\n...\n" + text[-MAX_ERROR_LENGTH // 2 :]
    return text


def log_exception(logger: logging.Logger, message: str, *args: object) -> None:
    """``logger.exception(message, *args)`` for the exception being handled, which never raises.

    Logging formats the traceback itself, and an exception whose traceback cannot be formatted
    makes ``logger.exception`` raise (from the handler's error report); that must not kill the
    thread that was reporting it. The fallback logs the description of :func:`describe_error`.
    """
    exc = sys.exception()
    try:
        logger.exception(message, *args)
    except Exception:
        with contextlib.suppress(Exception):
            described = UNDESCRIBED_ERROR if exc is None else describe_error(exc)
            logger.error(message + "\n%s", *args, described)
