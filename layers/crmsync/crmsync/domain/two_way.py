"""The two-way sync's judge: per record and field, which side's change wins (SPEC O1, O3; B1 extends it).

A run sees, for one field of one linked record, at most one change per side since its last run - each
with the value, the moment it was made and how that moment is known:

- *certain* (per field): Salesforce field history, Dataverse auditing, the profile's per-attribute time;
- *possible* (per record): `SystemModstamp` / `modifiedon` - the field changed at that moment or before
  (another field's edit also moves it), so it is an upper bound, not the field's time.

`LatestWins` follows Mautic's `SyncJudge` ("best evidence"): a certain time that is not earlier than the
other side's possible time wins (the field surely changed later); two certain or two possible times
are compared, at whole seconds, and within `tolerance_seconds` (default 2) they are a tie. A tie - or a
certain time earlier than a possible one, whose order is unknown - resolves to the more restrictive value
(for opt-outs: opted out). The policy is chosen per field, so per-field priority (`crm`, `marketing`)
plugs in beside it.

What counts as a change at all is decided before the judge, by `crm_change` and `marketing_change`:
a CRM change is skipped only when its per-field author is the integration user *and* its value is the
one the write ledger says was last synced; a record-level `LastModifiedById` never hides a change. A
value equal to the last synced one, without per-field evidence, is not a change (a workflow re-saving
the same value, our own write read back).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

Side = Literal["crm", "marketing"]
Direction = Literal["both", "crm_to_marketing", "marketing_to_crm", "disabled"]


class TimeSource(StrEnum):
    """How a change's time was known (kept in the consent ledger and the run summary)."""

    HISTORY = "history"  # Salesforce ContactHistory / LeadHistory
    AUDIT = "audit"  # Dataverse auditing
    RECORD = "record_timestamp"  # SystemModstamp / modifiedon: possible, not certain
    PROFILE = "profile_attribute"  # the profile's per-attribute change time

    @property
    def certain(self) -> bool:
        return self is not TimeSource.RECORD


class Reason(StrEnum):
    """Why a field was decided as it was."""

    ONLY_CRM = "only_crm_changed"
    ONLY_MARKETING = "only_marketing_changed"
    LATER = "later_change"
    CERTAIN_OVER_POSSIBLE = "certain_beats_possible"
    TIE = "tie_restrictive"
    UNKNOWN_ORDER = "unknown_order_restrictive"
    SAME_VALUE = "same_value"
    DIRECTION = "direction"


@dataclass(frozen=True)
class Change:
    """One side's change of one field since the last run."""

    side: Side
    value: Any
    at: datetime
    source: TimeSource
    author: str | None = None
    record: str | None = None
    """The record the change was read from (a CRM id, a profile id), for the consent ledger."""

    @property
    def second(self) -> datetime:
        return self.at.replace(microsecond=0)


@dataclass(frozen=True)
class Decision:
    """The outcome for one field: the value both sides should hold and the change it came from.

    `winner` is None when nothing is to be written (no change, or the change may not move that way)."""

    field: str
    winner: Change | None
    reason: Reason | None
    loser: Change | None = None

    @property
    def conflict(self) -> bool:
        """Both sides changed, to different values."""
        return self.winner is not None and self.loser is not None

    @property
    def value(self) -> Any:
        return None if self.winner is None else self.winner.value


class FieldPolicy(Protocol):
    """Decides one field when both sides changed it to different values."""

    def resolve(self, crm: Change, marketing: Change) -> tuple[Change, Reason]: ...


def most_restrictive_bool(a: Any, b: Any) -> Any:
    """Opt-out flags: true (opted out, do not contact) is the restrictive value."""
    return a is True or b is True


@dataclass(frozen=True)
class LatestWins:
    """The most recent change wins; certain per-field times beat possible per-record ones."""

    tolerance_seconds: int = 2
    restrictive: Callable[[Any, Any], Any] = most_restrictive_bool

    def resolve(self, crm: Change, marketing: Change) -> tuple[Change, Reason]:
        tolerance = timedelta(seconds=self.tolerance_seconds)
        if crm.source.certain != marketing.source.certain:
            certain, possible = (crm, marketing) if crm.source.certain else (marketing, crm)
            if certain.second >= possible.second:
                return certain, Reason.CERTAIN_OVER_POSSIBLE
            return self._restrictive(crm, marketing), Reason.UNKNOWN_ORDER
        if abs(crm.second - marketing.second) <= tolerance:
            return self._restrictive(crm, marketing), Reason.TIE
        return (crm if crm.second > marketing.second else marketing), Reason.LATER

    def _restrictive(self, crm: Change, marketing: Change) -> Change:
        value = self.restrictive(crm.value, marketing.value)
        return crm if crm.value == value else marketing


def decide(
    field: str,
    crm: Change | None,
    marketing: Change | None,
    *,
    direction: Direction,
    policy: FieldPolicy,
    current_crm: Any,
    current_marketing: Any,
) -> Decision:
    """One field's decision. Only changes the direction lets through count; a change whose value both
    sides already hold is no write."""
    if direction in ("disabled", "marketing_to_crm"):
        crm = None
    if direction in ("disabled", "crm_to_marketing"):
        marketing = None
    if crm is None and marketing is None:
        return Decision(field, None, None)
    if crm is not None and marketing is not None:
        if crm.value == marketing.value:
            winner, reason, loser = crm, Reason.SAME_VALUE, None
        else:
            winner, reason = policy.resolve(crm, marketing)
            loser = marketing if winner is crm else crm
    elif crm is not None:
        winner, reason, loser = crm, Reason.ONLY_CRM, None
    else:
        assert marketing is not None
        winner, reason, loser = marketing, Reason.ONLY_MARKETING, None
    if winner.value == current_crm and winner.value == current_marketing:
        return Decision(field, None, Reason.SAME_VALUE)
    return Decision(field, winner, reason, loser)


# ------------------------------------------------------------------------------------- what is a change
def value_hash(value: Any) -> str:
    """The write ledger's fingerprint of a value (never the value itself: ledgers outlive records)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class FieldChangeRow:
    """One per-field change the CRM recorded (a history row, an audit detail)."""

    value: Any
    at: datetime
    author: str | None


def crm_change(
    *,
    field: str,
    current: Any,
    rows: Sequence[FieldChangeRow] | None,
    record_changed_at: datetime | None,
    ledger_hash: str | None,
    integration_user: str | None,
    source: TimeSource,
    record: str,
) -> tuple[Change | None, int]:
    """The CRM side's change of one field, or None, and how many of its rows were echoes skipped.

    `rows` are the field's history/audit rows in the run's window (None when the field has no
    per-field evidence: history or auditing off). With rows, the latest one that is not our own write
    read back is the change. Without, a record modified in the window whose value differs from the last
    synced value changed it, at the record's (possible) time."""
    if rows is not None:
        echoes = 0
        for row in sorted(rows, key=lambda r: r.at, reverse=True):
            if row.author is not None and row.author == integration_user and value_hash(row.value) == ledger_hash:
                echoes += 1  # our own write, read back
                continue
            return Change("crm", row.value, row.at, source, row.author, record), echoes
        return None, echoes
    if record_changed_at is None:
        return None, 0
    if value_hash(current) == ledger_hash:
        return None, 1
    return Change("crm", current, record_changed_at, TimeSource.RECORD, None, record), 0


def marketing_change(
    *,
    current: Any,
    changed_at: datetime | None,
    since: datetime | None,
    ledger_hash: str | None,
    author: str | None,
    record: str,
) -> tuple[Change | None, int]:
    """The marketing side's change of one attribute since `since` (every value on a first run), or None
    when its value is the one last synced (our own write, or a re-save of the same value: an echo, 1)."""
    if changed_at is None or (since is not None and changed_at < since):
        return None, 0
    if value_hash(current) == ledger_hash:
        return None, 1
    return Change("marketing", current, changed_at, TimeSource.PROFILE, author, record), 0


__all__ = [
    "Change",
    "Decision",
    "Direction",
    "FieldChangeRow",
    "FieldPolicy",
    "LatestWins",
    "Reason",
    "Side",
    "TimeSource",
    "crm_change",
    "decide",
    "marketing_change",
    "most_restrictive_bool",
    "value_hash",
]
