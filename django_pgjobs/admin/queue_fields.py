"""The queue form's duration fields: typed and shown in seconds, as ``PGJOBS["QUEUES"]``, the
CLI and the fields' help text say, and nothing else.

Django's ``DurationField`` would also take "1:00" (a minute, read as MM:SS, where an operator
may mean an hour) and ISO 8601 "P1D", silently: a surprising limit is worse than a refusal.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django import forms

from django_pgjobs.observability.queues import SECONDS_TEXT
from django_pgjobs.queues.declarations import MAXIMUM


def seconds_typed(value: float | timedelta) -> str:
    """Seconds as an operator types them: 60, 0.5, 31622400 (every digit a timedelta has)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    return f"{seconds:.15g}"


class SecondsField(forms.DurationField):
    """A duration shown and typed in seconds (60, 0.5); surrounding spaces are ignored. A value
    past the option's largest is refused here, naming it, before a timedelta could overflow
    (1e400)."""

    option: ClassVar[str]
    default_error_messages = {  # noqa: RUF012
        "invalid": "Enter a number of seconds, e.g. 60 (not 1:00 nor P1D).",
        "too_large": "Too large: at most %(maximum)s.",
    }

    def prepare_value(self, value: Any) -> Any:
        return seconds_typed(value) if isinstance(value, timedelta) else value

    def to_python(self, value: Any) -> timedelta | None:
        if isinstance(value, timedelta):
            return value
        text = "" if value is None else str(value).strip()
        if text in self.empty_values:
            return None
        if not SECONDS_TEXT.fullmatch(text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        seconds = float(text)
        largest, said = MAXIMUM[self.option]
        if seconds > largest:
            raise forms.ValidationError(
                self.error_messages["too_large"], code="too_large", params={"maximum": said}
            )
        return timedelta(seconds=seconds)


class RatePeriodField(SecondsField):
    option = "rate_period"


class TimeoutField(SecondsField):
    option = "timeout"
