"""The queue change form: an operator's limits over the settings', checked as ``PGJOBS["QUEUES"]``
and the CLI check them, each field saying what the settings declare beside it."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms

from django_pgjobs.admin.queue_fields import (
    RateField,
    RatePeriodField,
    TimeoutField,
    WholeField,
    seconds_typed,
)
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import validation
from django_pgjobs.jobs.validation import MAX_INT
from django_pgjobs.models import LIMIT_FIELDS, Queue
from django_pgjobs.queues.declarations import (
    COUNTS,
    LEFT_OUT,
    RATE_PERIOD_ALONE,
    TAKES,
    limit_problems,
    rate_period_alone,
    too_large,
    too_large_said,
)

_DURATIONS = ("rate_period", "timeout")


def no_limits() -> dict[str, Any]:
    """A new row's limits: none, a rate window of 1 s, no turns."""
    blank = Queue()
    return {name: getattr(blank, name) for name in LIMIT_FIELDS}


def form_limits(cleaned: dict[str, Any]) -> dict[str, Any]:
    return {name: cleaned.get(name) for name in LIMIT_FIELDS}


def declared_value(declared: dict[str, Any], name: str) -> str:
    """A limit of ``PGJOBS["QUEUES"]`` as the field beside it shows it: in seconds, and one left
    out as what it means ("the default (1 second)" for the rate period the field then holds)."""
    value = declared.get(name)
    if name == "fair":
        return "yes" if value else "no"
    if value is None:
        return LEFT_OUT[name]
    return f"{seconds_typed(value)} s" if name in _DURATIONS else str(value)


class QueueForm(forms.ModelForm):  # type: ignore[type-arg]
    """The limits, checked by the same function as ``PGJOBS["QUEUES"]`` and the CLI."""

    class Meta:
        model = Queue
        fields = ("name", "paused", *LIMIT_FIELDS)
        field_classes: ClassVar[dict[str, type[forms.Field]]] = {
            **dict.fromkeys(COUNTS, WholeField),
            **dict.fromkeys(("rate_limit", "partition_rate_limit"), RateField),
            "rate_period": RatePeriodField,
            "timeout": TimeoutField,
        }
        help_texts: ClassVar[dict[str, str]] = {
            "rate_period": "Seconds, e.g. 60: the sliding window of the rate limits. Empty: "
            "the default, 1 second.",
            "timeout": "Seconds, e.g. 60: a job running longer fails with a timeout (unless the "
            "job or its handler says otherwise). Empty: no timeout.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in COUNTS:
            if name in self.fields:  # "none", "1.5": say what to type, not just "a number"
                self.fields[name].error_messages.update(
                    invalid=f"Enter a positive whole number (1 to {MAX_INT}), or leave it empty "
                    f"for {LEFT_OUT[name]}."
                )
        if "rate_period" in self.fields:  # blank: the default window, as the CLI's "none"
            self.fields["rate_period"].required = False

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if "rate_period" in cleaned and cleaned["rate_period"] is None:
            cleaned["rate_period"] = Queue._meta.get_field("rate_period").get_default()
        if "name" in self.fields and cleaned.get("name") is not None:
            try:
                validation.check_name(cleaned["name"], "queue name")
            except InvalidJobError as exc:
                self.add_error("name", str(exc))
        # A field the form already refused (not a number, say) is not checked again.
        limits = {
            name: value
            for name, value in form_limits(cleaned).items()
            if name in self.fields and name not in self.errors
        }
        for name, message in limit_problems(limits, self._says).items():
            self.add_error(name, message)
        rated = ("rate_period", "rate_limit", "partition_rate_limit")
        if all(name in limits for name in rated) and rate_period_alone(limits):
            self.add_error("rate_period", RATE_PERIOD_ALONE)
        # A new row that neither pauses nor limits changes nothing, and would override the
        # settings' limits with none.
        if (
            self.instance._state.adding
            and not cleaned.get("paused")
            and not self.errors
            and {n: limits.get(n) for n in LIMIT_FIELDS} == no_limits()
        ):
            raise forms.ValidationError(
                "Pause the queue or set a limit: a queue without either needs no row."
            )
        return cleaned

    def _says(self, option: str, value: Any) -> str:
        """What a field takes, as the form says it: by the field's label ("Rate period", not
        rate_period), and empty for no limit. (The field still shows what was typed.)"""
        label = self.fields[option].label
        if too_large(option, value):
            said = too_large_said(label or option, option)
            return f"{said}; leave it empty for {LEFT_OUT[option]}."
        return f"{label} must be {TAKES[option]}; leave it empty for {LEFT_OUT[option]}."
