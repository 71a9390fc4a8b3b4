"""Change tracking: delta tokens and the changes since one ("Use change tracking to synchronize data").

A delta token is `<version>!<MM/dd/yyyy HH:mm:ss>` — the org-wide row version at the time it was issued
and that time (Dataverse's own tokens look like `919042!08/22/2017 08:10:44`). The changes since a token
are the rows whose `versionnumber` is newer, oldest change first, followed by the deletions logged since;
a delta page is bounded by the version current when the delta was first requested, so rows written while
a client pages are reported by the next delta link, never lost. Tokens older than the retention period
(Organization.ExpireChangeTrackingInDays, 7 days by default per the documentation) or issued before an
"expire all" from the control API answer ExpiredVersionStamp (0x80044352).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import errors
from .metadata import EntityDef
from .store import RecordStore, Row

DEFAULT_RETENTION_DAYS = 7.0
_TIME_FORMAT = "%m/%d/%Y %H:%M:%S"


@dataclass(frozen=True)
class DeltaToken:
    version: int
    issued: datetime

    def encode(self) -> str:
        return f"{self.version}!{self.issued.strftime(_TIME_FORMAT)}"

    @classmethod
    def decode(cls, text: str) -> DeltaToken:
        version, separator, stamp = text.partition("!")
        try:
            if not separator:
                raise ValueError(text)
            return cls(int(version), datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=UTC))
        except ValueError as exc:
            raise errors.bad_request(f"The delta token '{text}' is not valid.") from exc


@dataclass
class Change:
    row: Row | None  # None for a deletion
    record_id: str
    version: int


class ChangeTracker:
    def __init__(self, store: RecordStore, retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.store = store
        self.retention_days = retention_days

    def issue(self, now: datetime, version: int | None = None) -> DeltaToken:
        return DeltaToken(self.store.version if version is None else version, now.replace(microsecond=0))

    @staticmethod
    def require_enabled(entity: EntityDef) -> None:
        if not entity.change_tracking:
            raise errors.change_tracking_not_enabled(entity.logical_name)

    def check(self, token: DeltaToken, now: datetime) -> None:
        expired = (
            token.issued < now - timedelta(days=self.retention_days)
            or token.version < self.store.min_valid_version
            or token.version > self.store.version
        )
        if expired:
            raise errors.expired_version_stamp()

    def expire_all(self) -> None:
        """Every token issued so far expires; the next one (a client's full sync) is valid again."""
        self.store.min_valid_version = self.store.next_version()

    def changes(self, entity: EntityDef, since: int, until: int) -> list[Change]:
        """New/updated rows (by version) then deletions, in (since, until]."""
        table = self.store.table(entity)
        updated = sorted(
            (
                Change(row, row[entity.primary_id], row["versionnumber"])
                for row in table.rows.values()
                if since < row["versionnumber"] <= until
            ),
            key=lambda change: change.version,
        )
        deleted = [
            Change(None, deletion.record_id, deletion.version)
            for deletion in table.deletions
            if since < deletion.version <= until and deletion.record_id not in table.rows
        ]
        return updated + deleted
