"""The dashboard's charts: per-minute figures as server-side SVG (no CDN, no JavaScript)."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime


def bar_chart(title: str, values: list[int], minutes: list[datetime], colour: str) -> SafeString:
    """A per-minute bar chart as inline SVG."""
    width, height, pad = 600, 140, 24
    peak = max(values, default=0) or 1
    step = (width - pad) / max(len(values), 1)
    bars = "".join(
        f'<rect x="{pad + i * step:.1f}" y="{height - pad - v / peak * (height - 2 * pad):.1f}" '
        f'width="{max(step - 1, 1):.1f}" height="{v / peak * (height - 2 * pad):.1f}" '
        f'fill="{colour}"><title>{escape(f"{localtime(m):%H:%M}")}: {v}</title></rect>'
        for i, (v, m) in enumerate(zip(values, minutes, strict=True))
    )
    return _frame(title, width, height, pad, peak, bars, minutes)


def line_chart(title: str, values: list[int], minutes: list[datetime], colour: str) -> SafeString:
    width, height, pad = 600, 140, 24
    peak = max(values, default=0) or 1
    step = (width - pad) / max(len(values) - 1, 1)
    points = " ".join(
        f"{pad + i * step:.1f},{height - pad - v / peak * (height - 2 * pad):.1f}"
        for i, v in enumerate(values)
    )
    line = f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
    return _frame(title, width, height, pad, peak, line, minutes)


def _frame(
    title: str, width: int, height: int, pad: int, peak: int, body: str, minutes: list[datetime]
) -> SafeString:
    first = f"{localtime(minutes[0]):%H:%M}" if minutes else ""
    last = f"{localtime(minutes[-1]):%H:%M}" if minutes else ""
    svg = (
        f'<svg class="pgjobs-chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="none">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="0" y="{pad - 8}" font-size="11">{peak}</text>'
        f'<text x="{pad}" y="{height - 6}" font-size="11">{first}</text>'
        f'<text x="{width - 34}" y="{height - 6}" font-size="11">{last}</text>'
        f"{body}</svg>"
    )
    return format_html("<h3>{}</h3>{}", title, mark_safe(svg))  # noqa: S308 - built from numbers
