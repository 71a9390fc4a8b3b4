"""The emulator's clock: system timestamps, the `Date` header and change-tracking retention read it.

Tests need records stamped at chosen instants and retention windows that pass in microseconds, so the
clock can be set, frozen and advanced through the control API. Authentication (token lifetimes) and
service protection windows deliberately use the real clock: the real clients (msal, requests) measure
those with the machine's time, and an emulator clock moved by days must not log every client out.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def utc_iso(moment: datetime) -> str:
    """Dataverse's wire format for date-and-time values: whole seconds, UTC, `Z` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant (`Z` or an offset; a bare date means midnight UTC) as an aware UTC datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class EmulatorClock:
    """Real time shifted by an offset, optionally frozen at one instant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None

    def timestamp(self) -> float:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def set(self, moment: datetime, *, frozen: bool = False) -> None:
        target = moment.timestamp()
        with self._lock:
            self._offset = target - time.time()
            self._frozen_at = target if frozen else None

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
            if self._frozen_at is not None:
                self._frozen_at += seconds

    def freeze(self, frozen: bool) -> None:
        with self._lock:
            if frozen and self._frozen_at is None:
                self._frozen_at = time.time() + self._offset
            elif not frozen and self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_at is not None

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
            self._frozen_at = None

    def describe(self) -> dict[str, object]:
        return {"now": utc_iso(self.now()), "frozen": self.frozen}
