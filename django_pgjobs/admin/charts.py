"""The dashboard's charts: per-minute figures as server-side SVG (no CDN, no JavaScript).

The SVG draws only shapes and stretches to its box; the labels (peak, zero, first and last
minute) are HTML beside it, so they keep the admin's font size at any width. Colours are CSS
variables set in the dashboard template (``--pgjobs-chart-*`` with dark-theme values, and the
admin's own ``--body-quiet-color`` for labels and axis), so the charts follow Django's light
and dark themes.
"""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime

WIDTH, HEIGHT = 600, 120
# A bar of 1 next to a peak of 5,000 would be a fraction of a pixel: non-zero bars are at least
# this tall (viewBox units; the template draws the SVG HEIGHT px tall), so a single job shows.
MIN_BAR = 2.5


def bar_chart(title: str, values: list[int], minutes: list[datetime], *, tone: str) -> SafeString:
    """A per-minute bar chart; ``tone`` names the colour variable (``--pgjobs-chart-<tone>``)."""
    peak = max(values, default=0)
    step = WIDTH / max(len(values), 1)
    bars = []
    for i, (value, minute) in enumerate(zip(values, minutes, strict=True)):
        height = max(value / peak * HEIGHT, MIN_BAR) if value else 0.0
        bars.append(
            f'<rect x="{i * step:.1f}" y="{HEIGHT - height:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{height:.1f}"><title>{localtime(minute):%H:%M}: {value}</title></rect>'
        )
    return _frame(title, tone, peak, "".join(bars), minutes)


def line_chart(title: str, values: list[int], minutes: list[datetime], *, tone: str) -> SafeString:
    """A per-minute line (queue depth at the end of each minute)."""
    peak = max(values, default=0)
    step = WIDTH / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - (value / peak * HEIGHT if peak else 0):.1f}"
        for i, value in enumerate(values)
    )
    line = f'<polyline points="{points}" vector-effect="non-scaling-stroke"/>'
    return _frame(title, tone, peak, line, minutes)


def _frame(title: str, tone: str, peak: int, body: str, minutes: list[datetime]) -> SafeString:
    first = f"{localtime(minutes[0]):%H:%M}" if minutes else ""
    last = f"{localtime(minutes[-1]):%H:%M}" if minutes else ""
    # Built from numbers, times and a tone name the code chooses; the title is escaped below.
    svg = mark_safe(  # noqa: S308
        f'<svg class="pgjobs-chart pgjobs-chart-{tone}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'preserveAspectRatio="none" aria-hidden="true">'
        f'<line class="pgjobs-chart-axis" x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" '
        f'vector-effect="non-scaling-stroke"/>{body}</svg>'
    )
    return format_html(
        '<figure class="pgjobs-figure" role="img" aria-label="{}, peak {}">'
        "<h3>{}</h3>"
        '<div class="pgjobs-plot"><div class="pgjobs-y"><span class="pgjobs-peak">{}</span>'
        "<span>0</span></div>{}</div>"
        '<div class="pgjobs-x"><span>{}</span><span>{}</span></div></figure>',
        title, f"{peak:,}", title, f"{peak:,}", svg, first, last,
    )  # fmt: skip
