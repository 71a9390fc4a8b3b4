"""When an EventBridge Scheduler expression fires next, for `crmsync status`.

Scheduler does not report a schedule's next invocation, so it is computed here from the expression the
sync was applied with. `cron(minutes hours day-of-month month day-of-week year)` is evaluated in the
schedule's time zone with numbers, `*`, `?`, ranges, lists, `/` increments and day names; `L`, `W` and
`#` (last day, nearest weekday, nth weekday) are not, and give no answer rather than a wrong one.
`rate(...)` schedules count from when the schedule was created, which the CLI does not know, so the next
run is the last run's start plus the rate.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN"), 1)} | {
    m: i for i, m in enumerate(("JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 7)
}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}  # cron: 1 = Sunday
_HORIZON_DAYS = 5 * 366


def rate_interval(expression: str) -> timedelta | None:
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    return timedelta(**{f"{unit}s": amount})


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """The values a cron field allows, or None for a construct this module does not evaluate."""
    allowed: set[int] = set()
    for part in field.upper().split(","):
        step = 1
        if "/" in part:
            part, increment = part.split("/", 1)
            if not increment.isdigit() or int(increment) == 0:
                return None
            step = int(increment)
        start: int | None
        end: int | None
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(part, names)
            end = high if step > 1 else start
        if start is None or end is None or not low <= start <= high or not low <= end <= high:
            return None
        allowed.update(range(start, end + 1, step))
    return allowed


def _number(text: str, names: dict[str, int] | None) -> int | None:
    if text.isdigit():
        return int(text)
    return (names or {}).get(text)


def next_run(expression: str, after: datetime, timezone: str = "UTC") -> datetime | None:
    """The first time after `after` that a `cron(...)` expression fires (aware, UTC); None for `rate(...)`
    and for constructs not evaluated here."""
    match = _CRON.match(expression.strip())
    if match is None:
        return None
    fields = match.group(1).split()
    if len(fields) != 6:
        return None
    minutes = _values(fields[0], 0, 59)
    hours = _values(fields[1], 0, 23)
    days = _values(fields[2], 1, 31)
    months = _values(fields[3], 1, 12, _MONTHS)
    weekdays = _values(fields[4], 1, 7, _DAYS)
    years = _values(fields[5], 1970, 2199)
    if minutes is None or hours is None or days is None or months is None or weekdays is None or years is None:
        return None
    any_day, any_weekday = fields[2] in ("*", "?"), fields[4] in ("*", "?")
    zone = ZoneInfo(timezone)
    local_after = after.astimezone(zone)
    day: date = local_after.date()
    for _ in range(_HORIZON_DAYS):
        cron_weekday = (day.isoweekday() % 7) + 1  # Monday=1 in ISO; cron counts Sunday=1
        day_ok = day.day in days if not any_day else True
        weekday_ok = cron_weekday in weekdays if not any_weekday else True
        if day.year in years and day.month in months and day_ok and weekday_ok:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    if moment > local_after:
                        return moment.astimezone(UTC)
        day += timedelta(days=1)
    return None
