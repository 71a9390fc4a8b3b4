"""The automatic index: watermark text and import windows (SPEC I7, I9).

A run reads `[start, end)` on the watermark field. `end` is the CRM's server time minus a lag, so
records whose transaction commits a little after their timestamp are not yet due; `start` is the
previous `end` minus an overlap, so a record committed later than the lag, or sharing the boundary
second, is read again by the next run. Re-reading is harmless: application is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .conversions import parse_crm_datetime

WATERMARK_FORMAT = "%Y/%m/%d %H:%M:%S"


def format_watermark(moment: datetime) -> str:
    """`yyyy/MM/dd hh:mm:ss` in UTC, the option's stored text."""
    if moment.tzinfo is None:
        raise ValueError("watermarks are time-zone aware")
    return moment.astimezone(UTC).strftime(WATERMARK_FORMAT)


def parse_watermark(text: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), WATERMARK_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not a watermark; expected yyyy/MM/dd hh:mm:ss (UTC)") from None


def parse_moment(text: str) -> datetime:
    """A time an operator types (`watermark set`, `run --from/--to`), in UTC: the watermark's own
    `yyyy/MM/dd hh:mm:ss`, a date `yyyy/MM/dd` (midnight), or ISO 8601 (without an offset: UTC)."""
    stripped = text.strip()
    for pattern in (WATERMARK_FORMAT, "%Y/%m/%d"):
        try:
            return datetime.strptime(stripped, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        return parse_crm_datetime(stripped).astimezone(UTC)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; expected ISO 8601 (2026-11-01T08:00:00Z) or yyyy/MM/dd hh:mm:ss (UTC)"
        ) from None


def floor_to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


@dataclass(frozen=True)
class ImportWindow:
    option: str
    start: datetime | None
    end: datetime
    previous: datetime | None

    @property
    def is_first_run(self) -> bool:
        return self.previous is None

    @property
    def is_empty(self) -> bool:
        return self.start is not None and self.start >= self.end

    def variables(self) -> dict[str, str | None]:
        """The run's exposed variables, named as the source documents name them."""
        return {
            "crmOptionName": self.option,
            "crmStartImport": format_watermark(self.start) if self.start else None,
            "crmEndDate": format_watermark(self.end),
        }


def compute_window(
    option: str, previous: datetime | None, server_time: datetime, *, overlap_seconds: int, lag_seconds: int
) -> ImportWindow:
    """The next window: from the last end minus the overlap (or the beginning), to server time minus lag."""
    end = floor_to_second(server_time.astimezone(UTC) - timedelta(seconds=lag_seconds))
    start = None if previous is None else previous - timedelta(seconds=overlap_seconds)
    return ImportWindow(option=option, start=start, end=end, previous=previous)
