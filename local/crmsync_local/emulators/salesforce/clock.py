"""The emulated clock and the date/time formats Salesforce reads and writes.

Every system timestamp (CreatedDate, LastModifiedDate, SystemModstamp, deletedDate) and the `Date`
response header come from one `EmulatorClock`, so tests can pin, move or fast-forward "server time".
"""

from __future__ import annotations

import functools
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime as _rfc2822

_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def truncate_ms(moment: datetime) -> datetime:
    """Salesforce stores datetimes with millisecond precision."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def truncate_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@functools.lru_cache(maxsize=65_536)
def format_datetime(moment: datetime) -> str:
    """REST/JSON rendering: `2024-07-01T10:00:00.000+0000`; cached, as many rows share their timestamps."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "+0000"


def format_datetime_csv(moment: datetime) -> str:
    """Bulk API CSV rendering: `2024-07-01T10:00:00.000Z`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def format_date(day: date) -> str:
    return day.isoformat()


def http_date(moment: datetime) -> str:
    return _rfc2822(moment.astimezone(UTC), usegmt=True)


def parse_datetime(text: str, *, allow_date_only: bool = True, naive_is_utc: bool = True) -> datetime | None:
    """Parse the ISO 8601 shapes clients send (`Z`, `+hh:mm`, `+hhmm`, fractions); None if not one."""
    match = _DATETIME_RE.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if hour is None and not allow_date_only:
        return None
    if zone is None and not naive_is_utc:
        return None
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return truncate_ms(moment)


def parse_date(text: str) -> date | None:
    match = _DATE_RE.match(text.strip())
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


class EmulatorClock:
    """Follows real UTC time unless pinned (`set`) or shifted (`advance`).

    A pinned clock is frozen by default so assertions on timestamps are exact; `set(..., frozen=False)`
    lets it tick on from the given instant.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen_at: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return truncate_ms(datetime.fromtimestamp(time.time(), UTC) + self._offset)

    def set(self, moment: datetime, *, frozen: bool = True) -> None:
        moment = truncate_ms(moment.astimezone(UTC))
        with self._lock:
            if frozen:
                self._frozen_at = moment
            else:
                self._frozen_at = None
                self._offset = moment - datetime.fromtimestamp(time.time(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = truncate_ms(self._frozen_at + timedelta(seconds=seconds))
            else:
                self._offset += timedelta(seconds=seconds)

    def use_real_time(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
            self._frozen_at = None

    def describe(self) -> dict[str, object]:
        now = self.now()
        with self._lock:
            frozen = self._frozen_at is not None
            real = not frozen and self._offset == timedelta(0)
        return {"now": format_datetime(now), "frozen": frozen, "real_time": real}
