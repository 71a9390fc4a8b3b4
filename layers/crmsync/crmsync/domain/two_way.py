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
(for opt-outs: opted out; for any other field: the CRM's value). The policy is chosen per field:
`SidePriority` lets one side (`crm`, `marketing`) win every conflict (SPEC B1).

*Update blank values* (SPEC B1): when the value a decision leaves on the winning side - the priority side,
or under `latest` the side whose change won - is empty (null, empty text, empty list) and the other side
holds a value, the other side's value fills it (`blank_filled`). Under `latest` with no change on either
side, a field empty on one side only is filled from the other.

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
    PRIORITY = "priority"
    BLANK_FILLED = "blank_filled"

    @property
    def by_time(self) -> bool:
        """A conflict decided by the changes' times (ties included)."""
        return self in (Reason.LATER, Reason.CERTAIN_OVER_POSSIBLE, Reason.TIE, Reason.UNKNOWN_ORDER)


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


def crm_value_on_tie(crm: Any, marketing: Any) -> Any:
    """Any other field: two changes at the same moment keep the CRM's value (the record of reference)."""
    return crm


def is_blank(value: Any) -> bool:
    """Empty, for *update blank values*: null, an empty (or all-space) text, an empty list."""
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def same_value(a: Any, b: Any) -> bool:
    """Two sides hold the same value: equal, or both empty (a CRM's null and a profile's empty text)."""
    return bool(a == b) or (is_blank(a) and is_blank(b))


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


@dataclass(frozen=True)
class SidePriority:
    """One side wins every conflict of the field, whatever the times (SPEC B1 `priority: crm|marketing`)."""

    side: Side

    def resolve(self, crm: Change, marketing: Change) -> tuple[Change, Reason]:
        return (crm if self.side == "crm" else marketing), Reason.PRIORITY


def decide(
    field: str,
    crm: Change | None,
    marketing: Change | None,
    *,
    direction: Direction,
    policy: FieldPolicy,
    current_crm: Any,
    current_marketing: Any,
    update_blank_values: bool = False,
    held: tuple[Change, Change] | None = None,
) -> Decision:
    """One field's decision. Only changes the direction lets through count; a change whose value both
    sides already hold is no write. With `update_blank_values` (direction both), `held` - each side's
    current value as a change: (crm, marketing) - fills a winning side left empty."""
    if direction in ("disabled", "marketing_to_crm"):
        crm = None
    if direction in ("disabled", "crm_to_marketing"):
        marketing = None
    winner: Change | None = None
    reason: Reason | None = None
    loser: Change | None = None
    if crm is not None and marketing is not None:
        if same_value(crm.value, marketing.value):
            winner, reason = crm, Reason.SAME_VALUE
        else:
            winner, reason = policy.resolve(crm, marketing)
            loser = marketing if winner is crm else crm
    elif crm is not None:
        winner, reason = crm, Reason.ONLY_CRM
    elif marketing is not None:
        winner, reason = marketing, Reason.ONLY_MARKETING
    if update_blank_values and direction == "both" and held is not None:
        filler = _blank_filler(policy, winner, held, current_crm, current_marketing)
        if filler is not None:
            winner, reason, loser = filler, Reason.BLANK_FILLED, winner
    if winner is None:
        return Decision(field, None, None)
    if same_value(winner.value, current_crm) and same_value(winner.value, current_marketing):
        return Decision(field, None, Reason.SAME_VALUE)
    return Decision(field, winner, reason, loser)


def _blank_filler(
    policy: FieldPolicy,
    winner: Change | None,
    held: tuple[Change, Change],
    current_crm: Any,
    current_marketing: Any,
) -> Change | None:
    """The other side's held value, when the winning side would be left empty and the other side is not."""
    after = {
        "crm": winner.value if winner is not None else current_crm,
        "marketing": winner.value if winner is not None else current_marketing,
    }
    now = {"crm": current_crm, "marketing": current_marketing}
    held_by = {"crm": held[0], "marketing": held[1]}
    first: Side | None = policy.side if isinstance(policy, SidePriority) else None
    if first is None and winner is not None:
        first = winner.side
    if first is not None:
        other: Side = "marketing" if first == "crm" else "crm"
        if is_blank(after[first]) and not is_blank(now[other]):
            return held_by[other]
        return None
    # `latest` and nothing changed: a value empty on one side only is filled from the other.
    if is_blank(current_crm) and not is_blank(current_marketing):
        return held_by["marketing"]
    if is_blank(current_marketing) and not is_blank(current_crm):
        return held_by["crm"]
    return None


# ------------------------------------------------------------------------------------- what is a change
def value_hash(value: Any) -> str:
    """The write ledger's fingerprint of a value (never the value itself: ledgers outlive records). Every
    empty value (null, empty text, empty list) has one fingerprint, as `same_value` holds them equal."""
    if is_blank(value):
        value = None
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
    seen_until: datetime | None = None,
) -> tuple[Change | None, int]:
    """The CRM side's change of one field, or None, and how many of its rows were echoes skipped.

    `rows` are the field's history/audit rows in the run's window (None when the field has no
    per-field evidence: history or auditing off). With rows, the latest one that is not our own write
    read back is the change - several changes between two runs are decided once, on the last value; rows
    up to `seen_until` (the latest row an earlier decision saw, from the write ledger) were decided
    already, which an overlapping window reads again. Without, a record modified in the window whose value differs from the last
    synced value changed it, at the record's (possible) time."""
    if rows is not None:
        echoes = 0
        fresh = [row for row in rows if seen_until is None or row.at > seen_until]
        for row in sorted(fresh, key=lambda r: r.at, reverse=True):
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
    "SidePriority",
    "TimeSource",
    "crm_change",
    "crm_value_on_tie",
    "decide",
    "is_blank",
    "marketing_change",
    "most_restrictive_bool",
    "same_value",
    "value_hash",
]
