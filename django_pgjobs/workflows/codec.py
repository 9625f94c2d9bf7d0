"""JSON in and out of the workflow tables, and errors as JSON.

Workflows store JSON, not pickle: rows stay readable by people, SQL and other languages, and a
deploy can never make a stored value unloadable. Values go through Django's encoder (dates,
decimals, UUIDs become strings), and a value is returned to the workflow as JSON gives it back,
the first time as on every replay, so the workflow sees the same thing either way.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from django_pgjobs.exceptions import RecordedError, WorkflowFailed, WorkflowSerializationError
from django_pgjobs.jobs.error_text import (
    MAX_ERROR_LENGTH,
    clean_text,
    describe_error,
    safe_str,
    shortened,
)


def encode(value: Any, what: str) -> str:
    """JSON text PostgreSQL will store, or :class:`WorkflowSerializationError` naming ``what``."""
    try:
        text = json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # lone surrogates
    except (TypeError, ValueError) as exc:
        raise WorkflowSerializationError(
            f"{what} must be JSON serialisable (dicts, lists, str, numbers, bool, None; dates, "
            f"decimals and UUIDs become strings): {exc}"
        ) from exc
    except RecursionError:
        raise WorkflowSerializationError(
            f"{what} is nested too deeply to serialise; pass a flatter structure."
        ) from None
    if "\\u0000" in text:
        raise WorkflowSerializationError(f"{what} contains a NUL character; jsonb cannot store it.")
    return text


def describe(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON: enough to raise it again, and its traceback for people."""
    cls = type(exc)
    # NUL and lone surrogates: jsonb could not store them. Each part is held to
    # MAX_ERROR_LENGTH, as the traceback is: a workflow's error is written with its job's
    # completion, beside its batch's others (worker.finished.BATCH_BYTES).
    message = shortened(clean_text(safe_str(exc)))
    args: Any = list(exc.args)
    try:
        if len(encode(args, "args")) > MAX_ERROR_LENGTH:
            args = [message]
    except WorkflowSerializationError:
        args = [message]
    attrs, room = {}, MAX_ERROR_LENGTH
    for name, value in vars(exc).items():
        try:
            size = len(encode(value, name))
        except WorkflowSerializationError:
            continue
        if size <= room:
            attrs[name], room = value, room - size
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": message,
        "args": args,
        "attrs": attrs,
        "traceback": describe_error(exc),
    }


def rebuild(error: dict[str, Any]) -> BaseException:
    """The recorded exception, as its own class (with its args and JSON-able attributes) when
    that class is loaded in this process; otherwise :class:`RecordedError`. Never imports a
    module: the type name comes from the database."""
    if not isinstance(error, dict):
        # Not what describe() records: written by SQL, or JSON Python cannot decode.
        return RecordedError("Exception", str(error))
    type_name = str(error.get("type", "Exception"))
    message = str(error.get("message", ""))
    traceback = error.get("traceback")
    cls = _loaded_class(type_name)
    exc: BaseException
    args = error.get("args", [message])
    if cls is None:
        exc = RecordedError(type_name, message, traceback)
    else:
        try:
            exc = cls(*args)
            # An __init__ that formats its message would format the recorded one again.
            exc.args = tuple(args)
        except Exception:
            # An __init__ with another signature: build the instance without it, so code that
            # catches this class on replay catches it as it did on the first run.
            exc = cls.__new__(cls, *args)
            exc.args = tuple(args)
        for name, value in (error.get("attrs") or {}).items():
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, name, value)
    if traceback and not isinstance(exc, RecordedError):
        exc.add_note(f"Recorded by django-pgjobs; the original traceback:\n{traceback}")
    return exc


def rebuild_for_caller(error: dict[str, Any]) -> Exception:
    """The recorded error as the caller of ``get_result()`` should see it: rebuilt, except a
    ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``), which
    a view or a job would not catch and which would stop whatever runs it: that becomes
    :class:`WorkflowFailed`, naming the original class. (A replayed step raises what it raised
    the first time, so the workflow's own code sees the same either way.)"""
    exc = rebuild(error)
    if isinstance(exc, Exception):
        return exc
    cls = type(exc)
    return WorkflowFailed(
        f"{cls.__module__}.{cls.__qualname__}",
        str(error.get("message", "")),
        error.get("traceback"),
    )


def _loaded_class(type_name: str) -> type[BaseException] | None:
    module_name, _, qualname = type_name.rpartition(".")
    # Nested classes: find the longest loaded module prefix.
    while module_name and module_name not in sys.modules:
        module_name, _, head = module_name.rpartition(".")
        qualname = f"{head}.{qualname}"
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None
