"""When a schedule fires: cron expressions and plain intervals, in a named timezone. Pure.

Cron fields are matched against local wall-clock time, then mapped to real instants:

- a wall time skipped by a spring-forward change (02:30 on the night clocks jump from 02:00 to
  03:00) fires shifted by the gap (03:30), so a nightly job still runs that night;
- in the hour repeated by a fall-back change, a schedule with a fixed hour (``30 1 * * *``) fires
  once, on the first pass, while one whose hour field is a wildcard or step (``*/15 * * * *``,
  ``0 * * * *``) keeps firing through both passes, as real time goes on. This is what Vixie cron
  does.

Intervals (``every 5 minutes``) are real elapsed time, aligned to the schedule's start (or the
Unix epoch), and ignore the timezone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs.validation import LATEST_TIME

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Offsets change by at most a few hours at a transition; candidates are searched this far around.
_DST_MARGIN = timedelta(hours=3)
_ONE_MICROSECOND = timedelta(microseconds=1)
_EVERY = re.compile(
    r"^every\s+(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)$", re.IGNORECASE
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Spelled out, so "@daily" is a fixed-hour schedule like "0 0 * * *" (it runs once when
# midnight repeats), not a wildcard one.
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


class InvalidScheduleError(InvalidJobError):
    """A schedule's expression, timezone or window cannot work."""


def get_timezone(name: str) -> ZoneInfo:
    try:
        if not isinstance(name, str):
            raise TypeError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # OSError: a name tzdata has as a directory ('Europe') or cannot read.
        raise InvalidScheduleError(
            f"Unknown timezone {name!r} (use an IANA name such as 'Europe/Paris')."
        ) from None


@dataclass(frozen=True)
class CronSpec:
    """A 5-field cron expression, or 6 fields with seconds first, or an @alias."""

    expression: str
    tz: ZoneInfo
    with_seconds: bool
    # Wildcard or step in the hour field: keeps firing through a repeated (fall-back) hour.
    hourly_or_faster: bool

    def _iter(self, start: datetime, *, backwards: bool = False) -> croniter:
        return croniter(
            self.expression, start, is_prev=backwards, second_at_beginning=self.with_seconds
        )

    def _instants(self, wall: datetime) -> list[datetime]:
        """The real instants (UTC) at which local wall time ``wall`` occurs, as we fire them."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if first < second:  # repeated by a fall-back change
            return [first, second] if self.hourly_or_faster else [first]
        return [first]  # normal, or skipped by a spring-forward change (then shifted by the gap)

    def _swing(self, instant: datetime) -> timedelta:
        """How far the zone's UTC offset moves within a few hours of ``instant``: zero except
        near a DST change, where wall clock and real time disagree by that much."""
        offsets = {
            (instant + delta).astimezone(self.tz).utcoffset()
            for delta in (-_DST_MARGIN, timedelta(0), _DST_MARGIN)
        }
        known = [o for o in offsets if o is not None]
        return max(known) - min(known) if known else timedelta(0)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz).replace(tzinfo=None)

    def next_after(self, after: datetime) -> datetime:
        after = after.astimezone(UTC)
        swing = self._swing(after)
        # Near a DST change an earlier wall time can be a later instant (the repeated hour):
        # start that much earlier and keep looking that much past the first hit.
        candidates = self._iter(self._wall(after) - swing)
        best: datetime | None = None
        while True:
            candidate = candidates.get_next(datetime)
            later = [i for i in self._instants(candidate) if i > after]
            if later and (best is None or later[0] < best):
                best = later[0]
            if best is not None and candidate > self._wall(best) + swing:
                return best

    def latest_at_or_before(self, at: datetime) -> datetime:
        at = at.astimezone(UTC)
        swing = self._swing(at)
        # croniter looks strictly before its start; a microsecond later includes ``at`` itself.
        candidates = self._iter(self._wall(at) + swing + _ONE_MICROSECOND, backwards=True)
        best: datetime | None = None
        while True:
            candidate = candidates.get_prev(datetime)
            earlier = [i for i in self._instants(candidate) if i <= at]
            if earlier and (best is None or earlier[-1] > best):
                best = earlier[-1]
            if best is not None and candidate < self._wall(best) - swing:
                return best


@dataclass(frozen=True)
class IntervalSpec:
    seconds: float
    anchor: datetime

    def next_after(self, after: datetime) -> datetime:
        # Real elapsed time: do the arithmetic on UTC instants, whatever zone they came in.
        after = after.astimezone(UTC)
        elapsed = (after - self.anchor).total_seconds()
        periods = int(elapsed // self.seconds) + 1 if elapsed >= 0 else 0
        return self.anchor + timedelta(seconds=periods * self.seconds)

    def latest_at_or_before(self, at: datetime) -> datetime:
        periods = (at.astimezone(UTC) - self.anchor).total_seconds() // self.seconds
        return self.anchor + timedelta(seconds=periods * self.seconds)


Spec = CronSpec | IntervalSpec


def parse(expression: str, *, timezone: str = "UTC", start: datetime | None = None) -> Spec:
    """Parse and check an expression so that a bad one fails here, never inside a scheduler."""
    # Checked for intervals too, which ignore it: every view of the schedule shows its times in it.
    tz = get_timezone(timezone)
    text = " ".join(str(expression).split())
    every = _EVERY.match(text)
    if every:
        count, unit = int(every.group(1)), every.group(2)[0].lower()
        if count < 1:
            raise InvalidScheduleError(f"{expression!r}: the interval must be at least 1.")
        interval = IntervalSpec(
            seconds=count * _UNIT_SECONDS[unit], anchor=(start or _EPOCH).astimezone(UTC)
        )
        try:
            interval.next_after(interval.anchor)
        except OverflowError:
            raise InvalidScheduleError(f"{expression!r}: the interval is too long.") from None
        return interval
    text = _ALIASES.get(text.lower(), text)
    fields = text.split(" ")
    if not (text.startswith("@") or len(fields) in (5, 6)):
        raise InvalidScheduleError(
            f"{expression!r} is not a cron expression: use 5 fields (minute hour day month "
            "weekday), 6 with seconds first, an alias like @daily, or 'every N minutes'."
        )
    with_seconds = len(fields) == 6
    hour_field = "" if text.startswith("@") else fields[2 if with_seconds else 1]
    spec = CronSpec(
        expression=text,
        tz=tz,
        with_seconds=with_seconds,
        hourly_or_faster="*" in hour_field or "/" in hour_field,
    )
    try:
        # Catches bad fields and expressions that can never fire (30 February).
        spec.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise InvalidScheduleError(f"Invalid cron expression {expression!r}: {exc}") from None
    return spec


def next_tick(spec: Spec, after: datetime, *, end: datetime | None = None) -> datetime | None:
    """The fire time after ``after``, or None when the schedule is over: past the window's
    ``end``, or at or after ``LATEST_TIME`` (no table can store it: migration 0014's CHECKs),
    which ends every schedule as an end would."""
    try:
        moment = spec.next_after(after)
    except (OverflowError, CroniterBadDateError):  # past year 9999
        return None
    if moment >= LATEST_TIME or (end is not None and moment > end):
        return None
    return moment


def upcoming(
    spec: Spec, after: datetime, count: int, *, end: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (fewer if the schedule ends before)."""
    times: list[datetime] = []
    moment = after
    while len(times) < count:
        following = next_tick(spec, moment, end=end)
        if following is None:
            break
        times.append(following)
        moment = following
    return times
