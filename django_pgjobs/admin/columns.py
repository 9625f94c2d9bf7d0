"""How the admin shows times, durations and progress: to the second, in words, as a bar."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html


def format_time(value: Any) -> str:
    """A timestamp to the second, in the current time zone (``TIME_ZONE`` unless activated)."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    # Date and time wrap onto two lines where a list is narrow, never inside either.
    return format_html(
        '<span class="pgjobs-time"><span>{}</span> <span>{}</span></span>',
        f"{local:%Y-%m-%d}",
        f"{local:%H:%M:%S}",
    )


def timestamp(field: str, description: str) -> Callable[[Any, Any], str]:
    """A column or detail field that shows ``field`` to the second (Django's default format
    stops at the minute), sortable by the column."""

    @admin.display(description=description, ordering=field)
    def show(modeladmin: Any, obj: Any) -> str:
        return format_time(getattr(obj, field))

    show.__name__ = f"{field}_to_the_second"
    return show


def humanise(delta: timedelta) -> str:
    """``350 ms``, ``2.5 s``, ``4 min 12 s``, ``1 h 30 min``, ``3 d 4 h``."""
    seconds = delta.total_seconds()
    if seconds < 0:
        return "-" + humanise(-delta)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def progress_bar(progress: int | None, message: str | None, *, excerpt: str = "") -> str:
    """A bar whose label sits over the whole bar (readable at 3%) in the admin's own text
    colour (readable in dark mode); the styles are in admin/pgjobs/styles.html."""
    if progress is None:
        return "—"
    return format_html(
        '<div class="pgjobs-progress" title="{}"><div class="pgjobs-progress-fill" '
        'style="width: {}%"></div><span class="pgjobs-progress-label">{}%</span></div>'
        "<small>{}</small>",
        message or "",
        progress,
        progress,
        excerpt,
    )
