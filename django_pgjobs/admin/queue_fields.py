"""The queue form's limit fields: durations typed and shown in seconds, counts as whole
numbers, as ``PGJOBS["QUEUES"]``, the CLI and the fields' help text say, and nothing else.

Django's ``DurationField`` would also take "1:00" (a minute, read as MM:SS, where an operator
may mean an hour) and ISO 8601 "P1D", silently: a surprising limit is worse than a refusal.
Its ``IntegerField`` takes "5.0" and "٦٠", which the CLI refuses: both read what the CLI reads.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django import forms

from django_pgjobs.observability.queues import (
    ASCII_SPACES,
    SECONDS_TEXT,
    WHOLE_TEXT,
    whole_number,
)
from django_pgjobs.queues.declarations import LEFT_OUT, MAXIMUM, rate_in_text, too_large_said


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
    }

    def prepare_value(self, value: Any) -> Any:
        return seconds_typed(value) if isinstance(value, timedelta) else value

    def to_python(self, value: Any) -> timedelta | None:
        if isinstance(value, timedelta):
            return value
        text = "" if value is None else str(value).strip(ASCII_SPACES)
        if text in self.empty_values:
            return None
        if not SECONDS_TEXT.fullmatch(text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        seconds = float(text)
        if seconds > MAXIMUM[self.option][0]:
            # Worded as the form words a count too large (QueueForm._says).
            named = self.label or self.option
            said = f"{too_large_said(named, self.option)}; leave it empty for "
            raise forms.ValidationError(said + LEFT_OUT[self.option] + ".", code="too_large")
        return timedelta(seconds=seconds)


class RatePeriodField(SecondsField):
    option = "rate_period"


class TimeoutField(SecondsField):
    option = "timeout"


class WholeField(forms.Field):
    """A count typed as the CLI takes it: ASCII digits, with a sign at most. A number too long
    to be any count comes back as a float, which the form's check calls too large (rather than
    "not a whole number")."""

    widget = forms.NumberInput
    default_error_messages = {"invalid": "Enter a whole number."}  # noqa: RUF012

    def to_python(self, value: Any) -> int | float | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = "" if value is None else str(value).strip(ASCII_SPACES)
        if text in self.empty_values:
            return None
        if not WHOLE_TEXT.fullmatch(text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return whole_number(text)


class RateField(WholeField):
    """A rate limit: a text such as "10/m" (as other queues write a rate) is refused with what
    to type in its two fields."""

    def to_python(self, value: Any) -> int | float | None:
        try:
            return super().to_python(value)
        except forms.ValidationError:
            read = rate_in_text("rate_limit", value)
            if read is None:
                raise
            typed = str(value).strip(ASCII_SPACES)
            raise forms.ValidationError(
                f"Enter a whole number: for {typed}, {read[0]} here and {read[1]} in Rate period.",
                code="invalid",
            ) from None
