"""The two-way sync on the batched-run frame (`batched_runs.BatchedOperation`): start, one batch, finish of
the `two-way` state machine (SPEC O1-O3; the per-field-priority sync, B1-B2, extends the per-field decision).

The frame's window is the marketing side's, on our clock: the profiles the change index shows changed. The
CRM side has its own window on the CRM's clock (watermark `<option>_CRM`), so skew between the two clocks
never hides a change; both move when the run closes. The start step reads what changed on each side -
the CRM's records modified in its window, their field history or audit rows, the changed profiles - and
the other side of each changed record, then decides every field with the judge (`domain.two_way`). The
decisions are the run's snapshot: a run that stops half-way is resumed with the same decisions.

A batch writes the CRM side through the writer (sObject Collections, 200 records a call; Dataverse
`$batch`), then the profiles, then the write ledger and the consent ledger. A batch found interrupted reads
the CRM values and the profiles back and writes only what does not hold its decided value yet: nothing is
written twice, nothing is lost.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, cast

from pydantic import BaseModel, Field

from ..config import PROFILE_ID, TwoWayField, TwoWaySync
from ..connectors.port import (
    CrmConnector,
    CrmWriter,
    FieldHistoryConnector,
    ObjectDescription,
    RecordQuery,
    RecordWrite,
    WriteJournal,
    WriteKind,
    WriteRequest,
    WriteResult,
)
from ..connectors.rules import crm_rules
from ..domain.conversions import parse_crm_datetime_or_none
from ..domain.mapping import PayloadMapper, RecordMapper, ResolvedField
from ..domain.reconciliation import normalize_key
from ..domain.records import LocalRecord, RecordRejected, Reject
from ..domain.routing import Route, route_lead_or_contact
from ..domain.two_way import (
    Change,
    Direction,
    FieldChangeRow,
    FieldPolicy,
    LatestWins,
    Reason,
    SidePriority,
    TimeSource,
    crm_change,
    crm_value_on_tie,
    decide,
    marketing_change,
    most_restrictive_bool,
    same_value,
    value_hash,
)
from ..domain.types import DATE_LIKE, Conversion, CrmFieldType
from ..domain.windows import ImportWindow, format_watermark, parse_watermark
from ..errors import ConfigurationError
from ..stores.batches import BatchEntry
from ..stores.profile_items import ApplyResult
from ..stores.profiles import ExportedProfile, ExportLink, link_name
from ..stores.two_way import ConsentChange, LedgerEntry
from ..wiring import Container
from . import batched_runs as batched
from .enumerations import through_enumerations
from .export_batch import matches_by_email
from .export_plan import ObjectTarget, _resolve_fields, resolve_lead_or_contact
from .import_plan import unknown_field
from .runs import Counts, PopulationSource, close_run, next_window

logger = logging.getLogger(__name__)

OPERATION = "two_way"
PROFILE_CHUNK = 500


def as_flag(value: Any) -> bool:
    """An opt-out flag as both sides hold it: true, "true", "yes", "1", 1 - anything else is false."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return value is True or (isinstance(value, int | float) and not isinstance(value, bool) and value == 1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class PlanField:
    """One field the run decides: which way it moves, who wins a conflict, and its conversions - the
    import's going in (`into`), their reverse going out (`out`); opt-out flags have none (true/false)."""

    local: str
    remote: str
    direction: Direction
    priority: Literal["crm", "marketing", "latest"]
    update_blank_values: bool = False
    opt_out: bool = False
    into: ResolvedField | None = None
    out: ResolvedField | None = None


@dataclass(frozen=True)
class TwoWayPlan:
    """The sync checked against the CRM's describe: its fields, in the CRM's spelling."""

    fields: tuple[PlanField, ...]
    timezone: str = "UTC"
    key: str | None = None
    """The reconciliation key's local attribute (SPEC I10), for records created on one side."""
    contact: tuple[PlanField, ...] = ()
    """`create.lead_or_contact`: the fields a profile found as a Contact writes on it (to the CRM only)."""

    @property
    def remotes(self) -> tuple[str, ...]:
        return tuple(f.remote for f in self.fields)

    def field(self, local: str) -> PlanField:
        return next(f for f in self.fields if f.local == local)


class Values:
    """The plan's conversions: a CRM value as the marketing side holds it (the import's conversion and
    replacements), a local value as the CRM takes it (the export's reverse). Opt-out flags are true/false."""

    def __init__(self, plan: TwoWayPlan) -> None:
        self.plan = plan
        self._in = RecordMapper([f.into for f in plan.fields if f.into], "", "", plan.timezone)
        self._out = PayloadMapper([f.out for f in plan.fields if f.out], plan.timezone)

    def local(self, pf: PlanField, raw: Any) -> Any:
        """A CRM value as a local one; RecordRejected when it cannot be converted."""
        if pf.opt_out or pf.into is None:
            return as_flag(raw)
        return self._in.map_value(pf.into, raw)

    def crm(self, pf: PlanField, value: Any) -> Any:
        """A local value as the CRM takes it; RecordRejected when it cannot be converted."""
        if pf.opt_out or pf.out is None:
            return value
        return self._out.map_value(pf.out, value)

    @staticmethod
    def held(pf: PlanField, value: Any) -> Any:
        """A profile's attribute as the run compares it."""
        return as_flag(value) if pf.opt_out else value


# ------------------------------------------------------------------------------------- payloads
class TwoWayTotals(Counts):
    crm_records_written: int = 0
    crm_fields_written: int = 0
    profiles_written: int = 0
    marketing_fields_written: int = 0
    rejected: int = 0
    deferred: int = 0
    consent_rows: int = 0
    api_calls: int = 0
    batches: int = 0


class TwoWayRun(batched.ObjectRun):
    """The run context every step carries (`batched.ObjectRun`: the marketing window, and what a batch
    needs of the object), with the CRM's window and what the start step decided."""

    direction: str
    crm_option: str | None = None
    crm_window_start: str | None = None
    crm_window_end: str | None = None
    crm_previous: str | None = None
    tracking: dict[str, str] = Field(default_factory=dict)
    """CRM field -> where its change times come from (history, audit, record_timestamp)."""
    resource: str | None = None
    """The resource (table) a custom object's records are kept in on the marketing side; None: profiles."""
    create_in_marketing: bool = False
    create_in_crm: bool = False
    key_remote: str | None = None
    """The CRM field of the reconciliation key (inserts look records up by it first)."""
    upsert_field: str | None = None
    """`create.external_id`: the CRM external-id field new records are upserted by, instead of inserted."""
    upsert_local: str | None = None
    """The local attribute (or profileId) whose value goes in `upsert_field`."""
    routing: list[dict[str, Any]] = Field(default_factory=list)
    """`create.lead_or_contact`: the Lead and the Contact as the export's routing searches them
    (`ObjectTarget` states); empty: records are created in the sync's object only."""
    field_names: list[str] = Field(default_factory=list)
    """The marketing attributes the run decides, in the sync's order."""
    decided: dict[str, int] = Field(default_factory=dict)
    """What the start step found and decided: records read per side, changes, conflicts, reasons, echoes."""

    def crm_window(self) -> ImportWindow | None:
        if self.crm_option is None or self.crm_window_end is None:
            return None
        return ImportWindow(
            option=self.crm_option,
            start=parse_watermark(self.crm_window_start) if self.crm_window_start else None,
            end=parse_watermark(self.crm_window_end),
            previous=parse_watermark(self.crm_previous) if self.crm_previous else None,
        )


class StartTwoWayEvent(batched.StartEvent):
    """What starts a two-way run: the sync (a population is refused: a run reads what changed)."""


class TwoWayState(batched.BatchedState[TwoWayRun, TwoWayTotals]):
    totals: TwoWayTotals = Field(default_factory=TwoWayTotals)


class TwoWayBatchEvent(batched.BatchEvent[TwoWayRun]):
    pass


class FieldSummary(BaseModel):
    """One field's decisions in a run (SPEC B1): values taken from each side, conflicts decided by priority
    or by time, blanks filled, echoes (our own writes read back) skipped."""

    from_crm: int = 0
    from_marketing: int = 0
    by_priority: int = 0
    by_time: int = 0
    blanks_filled: int = 0
    echoes_skipped: int = 0


class SideSummary(BaseModel):
    records_read: int = 0
    records_written: int = 0
    fields_written: int = 0
    echoes_skipped: int = 0


class TwoWaySummary(batched.BatchedSummary):
    """The result of a two-way run, as `crmsync run --wait --json` prints it: per side what was read and
    written and the echoes skipped; the changes, the conflicts and how each decision was made."""

    direction: str
    crm_window: dict[str, str | None] | None = None
    crm: SideSummary
    marketing: SideSummary
    changes: int = 0
    conflicts: int = 0
    decided_by: dict[str, int] = Field(default_factory=dict)
    time_sources: dict[str, int] = Field(default_factory=dict)
    tracking: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, FieldSummary] = Field(default_factory=dict)
    """Per marketing attribute, every field of the sync (zeros included)."""
    consent_rows: int = 0
    created_in_crm: int = 0
    """Profiles linked to no record of the object, inserted in the CRM (`create.in_crm`)."""
    created_in_marketing: int = 0
    """New CRM records that became profiles (`create.in_marketing`)."""
    linked: int = 0
    """New CRM records linked to an unlinked profile with the same key (created on both sides)."""
    linked_to_contacts: int = 0
    """Profiles the CRM knows as a Contact (`create.lead_or_contact`): linked to it and the Contact updated,
    no Lead created."""
    deferred: int = 0
    rejected: int = 0
    unlinked: int = 0
    api_calls: int = 0
    batches: int = 0


# ------------------------------------------------------------------------------------- the marketing side
class ProfileSide:
    """The marketing side of a sync of people: the profiles linked to the object's records (`externalIds`)."""

    def __init__(self, container: Container, run: TwoWayRun) -> None:
        self.store, self.run = container.profiles, run
        self.apply_synced: Callable[..., bool] = self.store.apply_synced
        """(item id, values, their change times, the times the run saw, source) -> written."""

    def changed(self, since: str | None, until: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of the profiles the change index shows changed in [since, until)."""
        for ids in self.store.changed_profile_ids(since, until):
            for start in range(0, len(ids), PROFILE_CHUNK):
                yield self.store.get_many(ids[start : start + PROFILE_CHUNK])

    def by_crm_ids(self, crm_ids: list[str]) -> dict[str, dict[str, Any]]:
        return self.store.profiles_by_crm_ids(self.run.connection, self.run.object, crm_ids)

    def get_many(self, ids: list[str]) -> list[dict[str, Any]]:
        return self.store.get_many(ids)

    def create(self, records: list[LocalRecord], key: str | None) -> ApplyResult:
        """New CRM records, reconciled and written as an import writes them (SPEC I10)."""
        run = self.run
        return self.store.apply_import(
            records,
            connection=run.connection,
            object_name=run.object,
            key_attribute=key,
            case_insensitive=True,
            run_id=run.run_id,
        )


class ResourceSide:
    """The marketing side of a custom object (SPEC I11): the rows of its resource, keyed by CRM id. A row is
    shaped as a profile for the run (`profileId` = its CRM id, linked to itself)."""

    def __init__(self, container: Container, run: TwoWayRun) -> None:
        assert run.resource is not None
        self.store, self.run, self.resource = container.resources, run, run.resource
        self.link = link_name(run.connection, run.object)
        self.apply_synced: Callable[..., bool] = partial(self.store.apply_synced, run.resource)

    def _item(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "profileId": row["sk"], "externalIds": {self.link: row["sk"]}}

    def changed(self, since: str | None, until: str) -> Iterator[list[dict[str, Any]]]:
        yield [self._item(r) for r in self.store.changed_rows(self.resource, self.run.connection, since, until)]

    def by_crm_ids(self, crm_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {r["sk"]: self._item(r) for r in self.get_many(crm_ids)}

    def get_many(self, ids: list[str]) -> list[dict[str, Any]]:
        rows = self.store.get_many(self.resource, ids)
        return [self._item(r) for r in rows if r.get("connection") == self.run.connection]

    def create(self, records: list[LocalRecord], key: str | None) -> ApplyResult:
        run = self.run
        return self.store.apply_import(
            records, resource=self.resource, connection=run.connection, run_id=run.run_id
        )


def marketing_side(container: Container, run: TwoWayRun) -> ProfileSide | ResourceSide:
    return ResourceSide(container, run) if run.resource else ProfileSide(container, run)


# ------------------------------------------------------------------------------------- reading both sides
@dataclass
class Sides:
    """Both sides of every changed, linked record, and the evidence of who changed what when."""

    crm_changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """CRM records modified in the CRM window, by CRM id."""
    crm_current: dict[str, dict[str, Any]] = field(default_factory=dict)
    """CRM records of marketing-side changes (read by id)."""
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Linked profiles, by CRM id."""
    marketing_changed: set[str] = field(default_factory=set)
    """CRM ids whose profile the change index shows changed in the marketing window."""
    rows: dict[tuple[str, str], list[FieldChangeRow]] = field(default_factory=dict)
    """(CRM id, CRM field) -> its history / audit rows in the CRM window."""
    integration_user: str | None = None
    unlinked_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Changed profiles linked to no record of the object, by profile id (`create.in_crm` only)."""
    fresh: set[str] = field(default_factory=set)
    """CRM ids linked in this run: their values count at the record's time (they have no history yet)."""
    counts: dict[str, int] = field(default_factory=dict)


def _read(
    container: Container,
    connector: FieldHistoryConnector,
    run: TwoWayRun,
    columns: tuple[str, ...],
    watermark_field: str,
    tracked: list[str],
    crm_window: ImportWindow,
    marketing_window: ImportWindow,
    plan: TwoWayPlan,
) -> Sides:
    sides = Sides()
    if run.direction != "marketing_to_crm":
        query = RecordQuery(
            object=run.object,
            fields=columns,
            window_field=watermark_field,
            window_start=crm_window.start,
            window_end=crm_window.end,
            page_size=crm_rules(run.crm_kind).max_page_size,  # the CRM's largest page: Dataverse 5,000
        )
        for record in _pages(connector, query):
            sides.crm_changed[_crm_id(connector, run, record)] = record
    marketing = marketing_side(container, run)
    if run.direction != "crm_to_marketing":
        link = link_name(run.connection, run.object)
        since = _iso(marketing_window.start) if marketing_window.start else None
        for items in marketing.changed(since, _iso(marketing_window.end)):
            for item in items:
                crm_id = (item.get("externalIds") or {}).get(link)
                if crm_id and not item.get("deletedInCrm"):
                    sides.profiles[str(crm_id)] = item
                    sides.marketing_changed.add(str(crm_id))
                elif not crm_id and run.create_in_crm and not _linked_in_another_form(run, item):
                    sides.unlinked_profiles[item["profileId"]] = item
    # The other side of each changed record: profiles of CRM changes, CRM values of marketing changes.
    missing = [crm_id for crm_id in sides.crm_changed if crm_id not in sides.profiles]
    for start in range(0, len(missing), PROFILE_CHUNK):
        sides.profiles.update(marketing.by_crm_ids(missing[start : start + PROFILE_CHUNK]))
    if run.create_in_marketing:
        new = {c: r for c, r in sides.crm_changed.items() if c not in sides.profiles}
        if new:
            _create_profiles(container, run, plan, new, sides, watermark_field)
    unread = [crm_id for crm_id in sides.profiles if crm_id not in sides.crm_changed]
    if unread:
        query = RecordQuery(object=run.object, fields=columns, ids=tuple(unread))
        sides.crm_current = {_crm_id(connector, run, r): r for r in connector.read_by_ids(query)}
    changed = [crm_id for crm_id in sides.crm_changed if crm_id in sides.profiles]
    # A first run reads every record: its values count at the record's time, without per-record reads.
    if tracked and changed and crm_window.start is not None:
        values, by_remote = Values(plan), {f.remote: f for f in plan.fields}
        for change in connector.field_changes(run.object, tracked, changed, crm_window.start, crm_window.end):
            sides.rows.setdefault((change.record_id, change.field), []).append(
                FieldChangeRow(_row_value(values, by_remote, change.field, change.value), change.at, change.author)
            )
        sides.integration_user = connector.integration_user()
    return sides


def _linked_in_another_form(run: TwoWayRun, profile: dict[str, Any]) -> bool:
    """`create.lead_or_contact`: the profile is linked to the Contact the export's routing sends it to (a
    Contact wins over a Lead: a converted lead lives on as its contact). It is that Contact's now, not a
    record of this sync's Lead to create: a two-way sync of Contact keeps it in step both ways."""
    if not run.routing:
        return False
    lead, contact = (str(target["object"]) for target in run.routing)
    held = profile.get("externalIds") or {}
    links = {
        name: str(held[link]) for name in (lead, contact) if (link := link_name(run.connection, name)) in held
    }
    return route_lead_or_contact(links, None, {}, lead=lead, contact=contact).kind == "update"


def _create_profiles(
    container: Container,
    run: TwoWayRun,
    plan: TwoWayPlan,
    new: dict[str, dict[str, Any]],
    sides: Sides,
    watermark_field: str,
) -> None:
    """CRM records no profile is linked to (SPEC B2), reconciled as an import reconciles them (SPEC I10): a
    profile with the same key is linked (its values are then decided field by field, like any change on
    both sides); any other record becomes a new profile with its values. Idempotent, as the import is."""
    values, marketing, key = Values(plan), marketing_side(container, run), plan.key
    records: dict[str, LocalRecord] = {}
    for crm_id, record in new.items():
        attributes: dict[str, Any] = {}
        for pf in plan.fields:
            if pf.direction in ("marketing_to_crm", "disabled"):
                continue
            try:
                attributes[pf.local] = values.local(pf, record.get(pf.remote))
            except RecordRejected:
                continue  # left empty; the field is refused again (and logged) when decided
        modified = parse_crm_datetime_or_none(record.get(watermark_field)) or datetime.now(UTC)
        records[crm_id] = LocalRecord(crm_id=crm_id, modified_at=modified, attributes=attributes, source=record)
    matched = (
        container.profiles.profile_ids_by_key(key, [r.attributes.get(key) for r in records.values()])
        if key
        else {}
    )
    keyed = (
        {c: normalize_key(r.attributes.get(key), case_insensitive=True) for c, r in records.items()} if key else {}
    )
    linking = {c for c, k in keyed.items() if k is not None and k in matched}
    batch = [
        LocalRecord(r.crm_id, r.modified_at, {key: r.attributes[key]}, r.source) if c in linking and key else r
        for c, r in records.items()
    ]
    result = marketing.create(batch, key)
    sides.counts["created_in_marketing"] = result.created
    sides.counts["linked"] = len(linking)
    sides.counts["rejected_at_start"] = len(result.rejects)
    for refused_record, refused in result.rejects:
        logger.warning(
            "two-way record not reconciled",
            extra={"sync_id": run.sync_id, "crm_id": refused_record.crm_id, "code": refused.code},
        )
    found = marketing.by_crm_ids(list(records))
    sides.profiles.update(found)
    sides.fresh.update(found)
    for crm_id in linking & set(found):
        profile_id = found[crm_id]["profileId"]
        if sides.unlinked_profiles.pop(profile_id, None) is not None:
            sides.marketing_changed.add(crm_id)  # created on both sides: both sides' values are changes


def _row_value(values: Values, by_remote: dict[str, PlanField], remote: str, raw: Any) -> Any:
    """A history / audit row's value as the marketing side holds it (its text when it cannot be converted:
    then it differs from any value held, and the change counts)."""
    pf = by_remote.get(remote)
    if pf is None:
        return raw
    try:
        return values.local(pf, raw)
    except RecordRejected:
        return raw


def _crm_id(connector: CrmConnector, run: TwoWayRun, record: dict[str, Any]) -> str:
    return connector.normalize_id(str(record[run.id_field]))


def _pages(connector: CrmConnector, query: RecordQuery) -> Iterator[dict[str, Any]]:
    page = connector.read_first_page(query)
    yield from page.records
    while page.next_cursor:
        page = connector.read_next_page(page.next_cursor)
        yield from page.records


# ------------------------------------------------------------------------------------- deciding
def policy_for(sync: TwoWaySync, attribute: str) -> FieldPolicy:
    """The judge of one field's conflicts: for opt-outs the latest change, ties opting out (SPEC O3); for
    any other field its `priority` - one side always, or the latest change, ties keeping the CRM's value
    (SPEC B1)."""
    mapping = next((f for f in sync.fields if f.local == attribute), None)
    if mapping is None:
        return LatestWins(tolerance_seconds=sync.tolerance_seconds, restrictive=most_restrictive_bool)
    if mapping.winner == "latest":
        return LatestWins(tolerance_seconds=sync.tolerance_seconds, restrictive=crm_value_on_tie)
    return SidePriority(mapping.winner)


@dataclass
class Decisions:
    rows: list[dict[str, Any]] = field(default_factory=list)
    """One snapshot row per record with something to write."""
    converged: list[LedgerEntry] = field(default_factory=list)
    """Fields both sides already hold after a change: remembered as synced, nothing written."""
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount


def _decide(
    run: TwoWayRun,
    sync: TwoWaySync,
    sides: Sides,
    plan: TwoWayPlan,
    source_of: dict[str, TimeSource],
    ledger: dict[tuple[str, str], LedgerEntry],
    crm_window: ImportWindow,
    marketing_since: datetime | None,
    watermark_field: str,
) -> Decisions:
    """Each field of each changed, linked record: the changes each side made, then the judge."""
    decisions = Decisions()
    decisions.count("crm_records_read", len(sides.crm_changed))
    decisions.count("profiles_read", len(sides.marketing_changed))
    decisions.count("unlinked", sum(1 for crm_id in sides.crm_changed if crm_id not in sides.profiles))
    values = Values(plan)
    now = _iso(datetime.now(UTC))
    first_run = crm_window.start is None
    for crm_id, profile in sides.profiles.items():
        record = sides.crm_changed.get(crm_id) or sides.crm_current.get(crm_id)
        if record is None:
            continue  # linked to a record the CRM no longer has: the deletion import's business
        attrs, stamps = profile.get("attrs") or {}, profile.get("attrChangedAt") or {}
        record_at = parse_crm_datetime_or_none(record.get(watermark_field))
        row: dict[str, Any] = {
            "crmId": crm_id,
            "profileId": profile["profileId"],
            "crm": {},
            "marketing": {},
            "changedAt": {},
            "seen": {},
            "ledger": {},
            "crmSeen": {},
            "consent": [],
        }
        for pf in plan.fields:
            local, remote = pf.local, pf.remote
            entry = ledger.get((crm_id, local))
            synced = entry.hash if entry else None
            try:
                crm_value = values.local(pf, record.get(remote))
            except RecordRejected as refused:
                _unconverted(decisions, run, crm_id, pf, refused)
                continue
            marketing_value = values.held(pf, attrs.get(local))
            crm_side: Change | None = None
            if crm_id in sides.crm_changed and pf.direction not in ("marketing_to_crm", "disabled"):
                field_rows = sides.rows.get((crm_id, remote), []) if source_of[remote].certain else None
                if field_rows == [] and (first_run or crm_id in sides.fresh):
                    field_rows = None  # a first run: values set before tracking began count at the record's time
                crm_side, echoes = crm_change(
                    field=remote,
                    current=crm_value,
                    rows=field_rows,
                    record_changed_at=record_at,
                    ledger_hash=synced,
                    integration_user=sides.integration_user,
                    source=source_of[remote],
                    record=crm_id,
                    seen_until=parse_crm_datetime_or_none(entry.crm_seen) if entry else None,
                )
                decisions.count("crm_echoes_skipped", echoes)
                decisions.count(f"field:{local}:echoes_skipped", echoes)
            marketing_side: Change | None = None
            if crm_id in sides.marketing_changed:
                marketing_side, echoes = marketing_change(
                    current=marketing_value,
                    changed_at=parse_crm_datetime_or_none(stamps.get(local)),
                    since=marketing_since,
                    ledger_hash=synced,
                    author=(profile.get("attrSource") or {}).get(local),
                    record=profile["profileId"],
                )
                decisions.count("marketing_echoes_skipped", echoes)
                decisions.count(f"field:{local}:echoes_skipped", echoes)
            held: tuple[Change, Change] | None = None
            if pf.update_blank_values:
                held = (
                    Change("crm", crm_value, record_at or datetime.now(UTC), TimeSource.RECORD, None, crm_id),
                    Change(
                        "marketing",
                        marketing_value,
                        parse_crm_datetime_or_none(stamps.get(local) or profile.get("updatedAt"))
                        or datetime.now(UTC),
                        TimeSource.PROFILE,
                        (profile.get("attrSource") or {}).get(local),
                        profile["profileId"],
                    ),
                )
            elif crm_side is None and marketing_side is None:
                continue
            decision = decide(
                local,
                crm_side,
                marketing_side,
                direction=pf.direction,
                policy=policy_for(sync, local),
                current_crm=crm_value,
                current_marketing=marketing_value,
                update_blank_values=pf.update_blank_values,
                held=held,
            )
            winner = decision.winner
            seen = _iso(crm_side.at) if crm_side is not None and crm_side.source.certain else None
            if winner is None:
                if not first_run and same_value(crm_value, marketing_value) and value_hash(crm_value) != synced:
                    decisions.converged.append(
                        LedgerEntry(
                            sync.id, crm_id, local, value_hash(crm_value), "both", now, run.ledger_run, seen
                        )
                    )
                continue
            assert decision.reason is not None
            if not same_value(winner.value, crm_value):
                try:
                    row["crm"][remote] = values.crm(pf, winner.value)
                except RecordRejected as refused:
                    _unconverted(decisions, run, crm_id, pf, refused)
                    continue
            _count(decisions, local, decision.reason, winner, decision.conflict)
            row["ledger"][local] = value_hash(winner.value)
            if seen is not None:
                row["crmSeen"][local] = seen
            if not same_value(winner.value, marketing_value):
                row["marketing"][local] = winner.value
                row["changedAt"][local] = _iso(winner.at)
                row["seen"][local] = stamps.get(local)
            if pf.opt_out:
                row["consent"].append(
                    {
                        "channel": local,
                        "crmField": remote,
                        "value": winner.value,
                        "side": winner.side,
                        "record": winner.record or (crm_id if winner.side == "crm" else profile["profileId"]),
                        "at": _iso(winner.at),
                        "author": winner.author,
                        "source": winner.source.value,
                    }
                )
        if row["crm"] or row["marketing"]:
            decisions.rows.append(row)
    return decisions


def _inserts(run: TwoWayRun, plan: TwoWayPlan, sides: Sides, decisions: Decisions) -> list[dict[str, Any]]:
    """A row per changed profile linked to no record of the object (`create.in_crm`): its fields that move
    to the CRM, as the CRM takes them. The batch looks the key up in the CRM first, then inserts."""
    values, rows = Values(plan), list[dict[str, Any]]()
    contact_values = Values(dataclasses.replace(plan, fields=plan.contact)) if run.routing else None
    for profile_id, profile in sides.unlinked_profiles.items():
        attrs = profile.get("attrs") or {}
        payload, ledger = _outgoing(values, plan.fields, attrs, decisions)
        key = attrs.get(plan.key) if plan.key else None
        if run.upsert_field is not None:
            upsert_key = profile_id if run.upsert_local == PROFILE_ID else attrs.get(str(run.upsert_local))
            if upsert_key is None:
                decisions.count("not_created")
                continue
            payload[run.upsert_field] = upsert_key
        if not payload or normalize_key(key, case_insensitive=True) is None:
            decisions.count("not_created")  # nothing to create a record from, or no key to find it again by
            continue
        decisions.count("to_create_in_crm")
        for local in ledger:
            decisions.count(f"field:{local}:from_marketing")
        rows.append(
            {
                "crmId": None,
                "profileId": profile_id,
                "insert": payload,
                **(
                    {"contact": _outgoing(contact_values, plan.contact, attrs, decisions)[0]}
                    if contact_values is not None
                    else {}
                ),
                "key": str(key),
                "crm": {},
                "marketing": {},
                "changedAt": {},
                "seen": {},
                "ledger": ledger,
                "crmSeen": {},
                "consent": [],
            }
        )
    return rows


def _outgoing(
    values: Values, fields: tuple[PlanField, ...], attrs: dict[str, Any], decisions: Decisions
) -> tuple[dict[str, Any], dict[str, str]]:
    """A profile's values of the fields that move to the CRM, as the CRM takes them (CRM field -> value),
    and their fingerprints for the write ledger (local -> hash); a value the conversion refuses is left
    out and counted."""
    payload: dict[str, Any] = {}
    ledger: dict[str, str] = {}
    for pf in fields:
        if pf.direction in ("crm_to_marketing", "disabled") or attrs.get(pf.local) is None:
            continue
        try:
            value = values.crm(pf, values.held(pf, attrs.get(pf.local)))
        except RecordRejected:
            decisions.count(f"field:{pf.local}:unconverted")
            continue
        if value is not None:
            payload[pf.remote] = value
            ledger[pf.local] = value_hash(values.held(pf, attrs.get(pf.local)))
    return payload, ledger


def _unconverted(
    decisions: Decisions, run: TwoWayRun, crm_id: str, pf: PlanField, refused: RecordRejected
) -> None:
    """A value the field's conversion refuses: the field is left as it is on both sides, and logged (its
    code and name, never the value)."""
    logger.warning(
        "two-way field not converted",
        extra={"sync_id": run.sync_id, "crm_id": crm_id, "field": pf.remote, "code": refused.code},
    )
    decisions.count(f"field:{pf.local}:unconverted")


def _count(decisions: Decisions, local: str, reason: Reason, winner: Change, conflict: bool) -> None:
    """A decision in the run's counts: overall (changes, conflicts, reasons, time sources) and per field."""
    side = winner.side
    decisions.count("changes")
    decisions.count(f"decided_by:{reason.value}")
    decisions.count(f"source:{winner.source.value}")
    decisions.count("conflicts", 1 if conflict and reason is not Reason.BLANK_FILLED else 0)
    decisions.count(f"field:{local}:from_{side}")
    if reason is Reason.PRIORITY:
        decisions.count(f"field:{local}:by_priority")
    elif reason.by_time:
        decisions.count(f"field:{local}:by_time")
    elif reason is Reason.BLANK_FILLED:
        decisions.count(f"field:{local}:blanks_filled")


def _resolve_plan(sync: TwoWaySync, description: ObjectDescription, crm_kind: str) -> TwoWayPlan:
    """The sync's fields in the CRM's spelling, each checked against the object's describe before anything is
    read: an opt-out must be a boolean (rule O2); any other field is resolved as an import resolves it, and
    one that moves to the CRM must be writable there as an export writes it (rule S3)."""
    problems: list[str] = []
    fields: list[PlanField] = []
    if sync.opt_outs is not None:
        for local, remote in sync.opt_outs.fields.items():
            described_field = description.fields.get(remote.lower())
            if described_field is None:
                problems.append(f"opt_outs.fields.{local}: {sync.object} has no field {remote!r}")
            elif described_field.crm_type is not CrmFieldType.BOOLEAN:
                kind = described_field.raw_type or described_field.crm_type
                problems.append(
                    f"opt_outs.fields.{local}: {remote!r} is a {kind} field; only boolean fields may be mapped "
                    "(rule O2)"
                )
            else:
                direction: Direction = sync.opt_outs.direction
                fields.append(PlanField(local, described_field.name, direction, "latest", opt_out=True))
    where = f"sync {sync.id}"
    for index, mapping in enumerate(sync.fields):
        found = description.field(mapping.remote)
        if found is None:
            problems.append(unknown_field(f"fields[{index}].remote", mapping.remote, description))
            continue
        if mapping.conversion in (Conversion.DATE_ONLY, Conversion.NO_OFFSET) and found.crm_type not in DATE_LIKE:
            problems.append(
                f"fields[{index}].conversion: {mapping.conversion.value} applies to date and date-time fields; "
                f"{found.name} is {found.crm_type.value}"
            )
            continue
        out = _out_field(sync, mapping, index, description, crm_kind, problems)
        if mapping.direction != "crm_to_marketing" and out is None:
            continue
        into = ResolvedField.resolve(mapping, found.name, found.crm_type)
        fields.append(
            PlanField(
                mapping.local,
                found.name,
                mapping.direction,
                mapping.winner,
                mapping.update_blank_values,
                into=into,
                out=(out or into).reversed(),
            )
        )
    if problems:
        raise ConfigurationError([p if p.startswith(where) else f"{where}: {p}" for p in problems])
    return TwoWayPlan(tuple(fields), sync.target.timezone, sync.reconciliation.key)


def _upsert_field(sync: TwoWaySync, description: ObjectDescription) -> str | None:
    """`create.external_id.remote` as the CRM spells it; refused unless it is an external-id field."""
    key = sync.create.external_id
    if key is None:
        return None
    found = description.field(key.remote)
    if found is None:
        raise ConfigurationError(
            f"sync {sync.id}: " + unknown_field("create.external_id.remote", key.remote, description)
        )
    if not found.external_id:
        raise ConfigurationError(
            f"sync {sync.id}: create.external_id.remote: {description.name}.{found.name} is not an external-id field"
        )
    return found.name


def _routing(
    sync: TwoWaySync, lead: ObjectDescription, connector: CrmConnector, crm_kind: str
) -> tuple[tuple[PlanField, ...], list[dict[str, Any]]]:
    """`create.lead_or_contact`, checked as the export checks its `lead_or_contact` (one place:
    `resolve_lead_or_contact`): the fields a profile found as a Contact writes there - `contact_fields`,
    else the sync's fields that move to the CRM, their replacements turned round as the sync's own - and
    the Lead and the Contact as the batch searches them by e-mail (`ObjectTarget` states)."""
    routing = sync.create.lead_or_contact
    if routing is None:
        return (), []
    problems: list[str] = []
    resolved = resolve_lead_or_contact(
        f"sync {sync.id}",
        "create.lead_or_contact",
        routing,
        [f for f in sync.fields if f.direction != "crm_to_marketing"],
        lead,
        connector.describe,
        crm_rules(crm_kind),
        problems,
    )
    if problems:
        raise ConfigurationError(problems)
    contact = tuple(
        PlanField(f.local, f.remote, "marketing_to_crm", "latest", out=f.reversed())
        for f in resolved.contact_fields
    )
    targets = (
        ObjectTarget(
            lead.name,
            lead.id_field,
            (),
            correlation=False,
            owner=False,
            email_field=resolved.email_field,
            converted_field=resolved.converted_field,
        ),
        ObjectTarget(
            resolved.contact.name,
            resolved.contact.id_field,
            (),
            correlation=False,
            owner=False,
            email_field=resolved.email_field,
        ),
    )
    return contact, [target.to_state() for target in targets]


def _out_field(
    sync: TwoWaySync,
    mapping: TwoWayField,
    index: int,
    description: ObjectDescription,
    crm_kind: str,
    problems: list[str],
) -> ResolvedField | None:
    """A field that moves to the CRM, checked as an export checks it: updateable and of a compatible type."""
    if mapping.direction == "crm_to_marketing":
        return None
    found: list[str] = []
    resolved = _resolve_fields(
        f"sync {sync.id}",
        f"fields[{index}]",
        [mapping],
        description,
        inserts=False,
        updates=True,
        problems=found,
        rules=crm_rules(crm_kind),
    )
    problems += [p.replace(f"fields[{index}][0]", f"fields[{index}]") for p in found]
    return resolved[0] if resolved and not found else None


# ------------------------------------------------------------------------------------- the operation
class TwoWay(
    batched.BatchedOperation[
        TwoWaySync, TwoWayPlan, TwoWayRun, TwoWayTotals, TwoWayState, TwoWayBatchEvent, TwoWaySummary
    ]
):
    operation = OPERATION
    noun = "two-way"
    direction = "two-way"
    machine = "two-way"
    runs = "two-way syncs"
    identity_field = "profileId"  # one row per profile: a linked one, or one to insert (no CRM id yet)
    sync_model = TwoWaySync
    run_model = TwoWayRun
    totals_model = TwoWayTotals
    state_model = TwoWayState
    summary_model = TwoWaySummary

    def prepare(
        self, sync: TwoWaySync, connection: batched.Connection, connector: CrmConnector
    ) -> tuple[TwoWayPlan, batched.RunSettings]:
        if not isinstance(connector, FieldHistoryConnector):
            raise ConfigurationError(f"a {connection.kind} connection cannot tell who changed a field")
        description = connector.describe(sync.object)
        plan = _resolve_plan(sync, description, connection.kind)
        contact, routing = _routing(sync, description, connector, connection.kind)
        plan = dataclasses.replace(plan, contact=contact)
        return plan, batched.RunSettings.of_object(
            sync,
            connection,
            description,
            direction=sync.direction,
            resource=sync.target.resource if sync.target.kind == "resource" else None,
            create_in_marketing=sync.create.in_marketing,
            create_in_crm=sync.create.in_crm,
            key_remote=next((f.remote for f in plan.fields if f.local == plan.key), None),
            upsert_field=_upsert_field(sync, description),
            upsert_local=sync.create.external_id.local if sync.create.external_id else None,
            routing=routing,
        )

    def resolved(self, plan: TwoWayPlan, container: Container) -> TwoWayPlan:
        """Fields converted through an enumeration (SPEC S2) get its values: labels going in, values out."""
        into = through_enumerations(tuple(f.into for f in plan.fields if f.into), container, "import")
        out = through_enumerations(tuple(f.out for f in plan.fields if f.out), container, "export")
        contact_out = through_enumerations(tuple(f.out for f in plan.contact if f.out), container, "export")
        if (
            into == tuple(f.into for f in plan.fields if f.into)
            and out == tuple(f.out for f in plan.fields if f.out)
            and contact_out == tuple(f.out for f in plan.contact if f.out)
        ):
            return plan
        by_local_in, by_local_out = {f.local: f for f in into}, {f.local: f for f in out}
        fields = tuple(
            dataclasses.replace(f, into=by_local_in.get(f.local, f.into), out=by_local_out.get(f.local, f.out))
            for f in plan.fields
        )
        by_contact_out = {f.local: f for f in contact_out}
        contact = tuple(dataclasses.replace(f, out=by_contact_out.get(f.local, f.out)) for f in plan.contact)
        return dataclasses.replace(plan, fields=fields, contact=contact)

    def mode(self, population: PopulationSource | None) -> str:
        return "changes"

    def given(
        self,
        container: Container,
        run: TwoWayRun,
        plan: TwoWayPlan,
        population: PopulationSource,
        rejects: list[Reject],
    ) -> Iterator[dict[str, Any]]:
        raise ConfigurationError(f"sync {run.sync_id!r} is two-way: it reads what changed on each side, not ids")

    def api(
        self, sync: TwoWaySync, plan: TwoWayPlan, run: TwoWayRun
    ) -> tuple[Literal["collections", "bulk"], int]:
        return "collections", 1

    def changed(
        self,
        container: Container,
        run: TwoWayRun,
        sync: TwoWaySync,
        plan: TwoWayPlan,
        window: ImportWindow,
        until: datetime,
    ) -> list[dict[str, Any]]:
        """Read both sides' changes and decide every field: the snapshot rows are the decisions."""
        if run.direction == "disabled":
            return []
        connector = container.connector(container.definitions.connection(run.connection))
        assert isinstance(connector, FieldHistoryConnector)
        lag = sync.watermark.lag_seconds
        crm_window, _ = next_window(
            container,
            f"{window.option}_CRM",
            connector.server_time(),
            overlap_seconds=sync.watermark.overlap_seconds,
            lag_seconds=lag,
        )
        run.crm_option = crm_window.option
        run.crm_window_start = format_watermark(crm_window.start) if crm_window.start else None
        run.crm_window_end = format_watermark(crm_window.end)
        run.crm_previous = format_watermark(crm_window.previous) if crm_window.previous else None
        tracking = connector.field_tracking(run.object, plan.remotes)
        evidence = TimeSource.HISTORY if tracking.source == "history" else TimeSource.AUDIT
        source_of = {r: evidence if tracking.tracked.get(r) else TimeSource.RECORD for r in plan.remotes}
        run.tracking = {remote: source.value for remote, source in source_of.items()}
        run.field_names = [f.local for f in plan.fields]
        watermark_field = sync.watermark.field or crm_rules(run.crm_kind).watermark_field
        columns = tuple(dict.fromkeys([run.id_field, watermark_field, *plan.remotes]))
        tracked = [remote for remote, source in source_of.items() if source.certain]
        sides = _read(container, connector, run, columns, watermark_field, tracked, crm_window, window, plan)
        ledger = container.write_ledger.get_many(
            sync.id, [(c, f.local) for c in sides.profiles for f in plan.fields]
        )
        decisions = _decide(run, sync, sides, plan, source_of, ledger, crm_window, window.start, watermark_field)
        for name, amount in sides.counts.items():
            decisions.count(name, amount)
        decisions.rows += _inserts(run, plan, sides, decisions)
        if decisions.converged:
            container.write_ledger.record(decisions.converged)
        run.decided = decisions.counts
        return decisions.rows

    def send(
        self,
        container: Container,
        event: TwoWayBatchEvent,
        claim: BatchEntry,
        rows: list[dict[str, Any]],
        writer: CrmWriter,
        journal: Callable[[str], WriteJournal],
    ) -> batched.BatchResult:
        """The CRM side once, then the profiles, then the write and consent ledgers; then the profiles to
        create in the CRM."""
        run = event.run
        inserts = [row for row in rows if row.get("insert")]
        rows = [row for row in rows if not row.get("insert")]
        crm_writes = {row["crmId"]: dict(row["crm"]) for row in rows if row["crm"]}
        profile_writes = {row["profileId"]: dict(row["marketing"]) for row in rows if row["marketing"]}
        if claim.interrupted:
            connector = container.connector(container.definitions.connection(run.connection))
            _drop_applied(run, container, connector, rows, crm_writes, profile_writes)
        counts = dict.fromkeys(
            (
                "crm_records_written",
                "crm_fields_written",
                "profiles_written",
                "marketing_fields_written",
                "deferred",
            ),
            0,
        )
        written, rejects = _write_crm(run, writer, journal("update"), crm_writes, counts)
        failed = {r.crm_id for r in rejects}
        now = _iso(datetime.now(UTC))
        container.write_ledger.record(
            LedgerEntry(
                run.sync_id,
                row["crmId"],
                local,
                digest,
                "crm",
                now,
                run.ledger_run,
                row.get("crmSeen", {}).get(local),
            )
            for row in rows
            if row["crmId"] in written
            for local, digest in row["ledger"].items()
        )
        profiles_done = _write_profiles(container, run, rows, profile_writes, failed, counts)
        entries: list[LedgerEntry] = []
        consent: list[ConsentChange] = []
        for row in rows:
            if row["crmId"] in failed or (
                row["profileId"] in profile_writes and row["profileId"] not in profiles_done
            ):
                continue
            entries += [
                LedgerEntry(
                    run.sync_id,
                    row["crmId"],
                    local,
                    digest,
                    "both",
                    now,
                    run.ledger_run,
                    row.get("crmSeen", {}).get(local),
                )
                for local, digest in row["ledger"].items()
            ]
            consent += [_consent(run, row, item) for item in row["consent"]]
        container.write_ledger.record(entries)
        counts["consent_rows"] = container.consent.append(consent)
        counts["rejected"] = len(rejects)
        outcomes = [
            {
                "crmId": row["crmId"],
                "profileId": row["profileId"],
                "status": "rejected" if row["crmId"] in failed else "done",
            }
            for row in rows
        ]
        if inserts:
            connector = container.connector(container.definitions.connection(run.connection))
            created, insert_rejects = _create_in_crm(
                container, run, writer, journal("insert"), inserts, counts, connector.normalize_id
            )
            rejects += insert_rejects
            counts["rejected"] += len(insert_rejects)
            outcomes += [
                {
                    "crmId": created.get(row["profileId"]),
                    "profileId": row["profileId"],
                    "status": "done" if row["profileId"] in created else "rejected",
                }
                for row in inserts
            ]
        return batched.BatchResult(outcomes, counts, rejects, run.route_rejects)

    def finish(self, state: TwoWayState, container: Container) -> TwoWaySummary:
        """Add the ledger up; move both watermarks (a disabled sync's stay), forget the unfinished run,
        close this one - in one transaction."""
        run = state.run
        counts, undone = batched.ledger_counts(container, run.sync_id, run.ledger_run)
        if undone:
            raise ConfigurationError(
                f"batches {undone[:10]} of run {run.ledger_run} are not done; the run stays resumable"
            )
        decided = run.decided
        window = run.window() if run.direction != "disabled" else None
        crm_window = run.crm_window()
        summary = TwoWaySummary(
            sync_id=run.sync_id,
            run_id=run.run_id,
            operation=OPERATION,
            direction=run.direction,
            resumed_from=run.resumed_from,
            window=run.window_summary() if window else None,
            crm_window={"option": run.crm_option, "start": run.crm_window_start, "end": run.crm_window_end}
            if crm_window
            else None,
            crm=SideSummary(
                records_read=decided.get("crm_records_read", 0),
                records_written=counts.get("crm_records_written", 0),
                fields_written=counts.get("crm_fields_written", 0),
                echoes_skipped=decided.get("crm_echoes_skipped", 0),
            ),
            marketing=SideSummary(
                records_read=decided.get("profiles_read", 0),
                records_written=counts.get("profiles_written", 0),
                fields_written=counts.get("marketing_fields_written", 0),
                echoes_skipped=decided.get("marketing_echoes_skipped", 0),
            ),
            changes=decided.get("changes", 0),
            conflicts=decided.get("conflicts", 0),
            decided_by={k.split(":", 1)[1]: v for k, v in decided.items() if k.startswith("decided_by:")},
            time_sources={k.split(":", 1)[1]: v for k, v in decided.items() if k.startswith("source:")},
            tracking=run.tracking,
            fields=_field_summaries(run, decided),
            consent_rows=counts.get("consent_rows", 0),
            created_in_crm=counts.get("created_in_crm", 0),
            linked_to_contacts=counts.get("linked_to_contacts", 0),
            created_in_marketing=decided.get("created_in_marketing", 0),
            linked=decided.get("linked", 0),
            deferred=counts.get("deferred", 0),
            rejected=counts.get("rejected", 0) + decided.get("rejected_at_start", 0),
            unlinked=decided.get("unlinked", 0)
            - decided.get("created_in_marketing", 0)
            - decided.get("linked", 0),
            api_calls=state.totals.api_calls + counts.get("api_calls", 0),
            batches=run.batches,
        )
        also: list[dict[str, Any]] = [container.batches.finished_action(run.sync_id, OPERATION)]
        if crm_window is not None and (crm_window.previous is None or crm_window.end > crm_window.previous):
            also.append(container.watermarks.advance_action(crm_window.option, crm_window.end, run.run_id))
        close_run(container, run.key, summary, operation=OPERATION, window=window, also=tuple(also))
        return summary


def _field_summaries(run: TwoWayRun, decided: dict[str, int]) -> dict[str, FieldSummary]:
    summaries = {local: FieldSummary() for local in run.field_names}
    for key, amount in decided.items():
        if key.startswith("field:"):
            _, local, name = key.split(":", 2)
            if name in FieldSummary.model_fields:
                summary = summaries.setdefault(local, FieldSummary())
                setattr(summary, name, getattr(summary, name) + amount)
    return summaries


def _refused(
    result: WriteResult, record: dict[str, Any], fields: dict[str, Any], crm_id: str | None = None
) -> Reject:
    """A write the CRM refused, as a reject: its first error's code, every message, the record's names and
    the names of the fields sent (never their values)."""
    return Reject(
        result.errors[0].code,
        "; ".join(e.message for e in result.errors),
        {**record, "fields": sorted(fields)},
        crm_id=crm_id,
        fields=result.errors[0].fields,
    )


def _write_crm(
    run: TwoWayRun,
    writer: CrmWriter,
    journal: WriteJournal,
    crm_writes: dict[str, dict[str, Any]],
    counts: dict[str, int],
) -> tuple[set[str], list[Reject]]:
    """Update the CRM records (one call per 200 on Salesforce, per 1,000 on Dataverse); the ids written
    and the refusals."""
    written: set[str] = set()
    rejects: list[Reject] = []
    if not crm_writes:
        return written, rejects
    request = WriteRequest(
        object=run.object,
        kind="update",
        records=tuple(RecordWrite(ref=c, fields={run.id_field: c, **values}) for c, values in crm_writes.items()),
        key_field=run.id_field,
    )
    for result in writer.write(request, journal):
        if result.success:
            written.add(result.ref)
            counts["crm_records_written"] += 1
            counts["crm_fields_written"] += len(crm_writes[result.ref])
            continue
        rejects.append(_refused(result, {"crmId": result.ref}, crm_writes[result.ref], crm_id=result.ref))
    return written, rejects


def _create_in_crm(
    container: Container,
    run: TwoWayRun,
    writer: CrmWriter,
    journal: WriteJournal,
    rows: list[dict[str, Any]],
    counts: dict[str, int],
    normalize: Callable[[str], str],
) -> tuple[dict[str, str], list[Reject]]:
    """Profiles linked to no record of the object (SPEC B2), routed (`_routes`): a record the CRM already
    has (created there meanwhile, or by an earlier attempt of this batch) is updated and linked; any other
    profile is inserted and linked, as an export links what it creates. Answers profile id -> CRM id, and
    the refusals."""
    routes, rejects = _routes(run, writer, rows, normalize)
    by_profile = {row["profileId"]: row for row in rows}
    id_fields = {run.object: run.id_field, **{str(t["object"]): str(t["id_field"]) for t in run.routing}}

    def payload(route: Route, row: dict[str, Any]) -> dict[str, Any]:
        return dict(row["insert"] if route.object == run.object else row.get("contact") or {})

    groups: dict[tuple[str, str], list[RecordWrite]] = {}
    created: dict[str, str] = {}
    for profile_id, route in routes.items():
        fields = payload(route, by_profile[profile_id])
        if route.kind == "update":
            assert route.crm_id is not None
            if not fields:  # a Contact the routing found, with nothing to write on it: linked only
                created[profile_id] = route.crm_id
                continue
            fields = {id_fields[route.object]: route.crm_id, **fields}
        groups.setdefault((route.object, route.kind), []).append(RecordWrite(ref=profile_id, fields=fields))
    made: set[str] = set()
    written: set[str] = set()
    for (object_name, kind), records in groups.items():
        request = WriteRequest(
            object=object_name,
            kind=cast(WriteKind, kind),
            records=tuple(records),
            key_field=id_fields[object_name] if kind == "update" else run.upsert_field,
            match_field=run.key_remote if kind == "insert" else None,
        )
        for result in writer.write(request, journal):
            route = routes[result.ref]
            if result.success:
                crm_id = route.crm_id or result.crm_id
                assert crm_id is not None
                created[result.ref] = normalize(crm_id)
                written.add(result.ref)
                if kind == "insert" or (kind == "upsert" and result.created):
                    made.add(result.ref)
                continue
            rejects.append(_refused(result, {"profileId": result.ref}, payload(route, by_profile[result.ref])))
    linked = container.profiles.record_exported(
        run.sync_id,
        [
            ExportedProfile(pid, link=ExportLink(pid, run.connection, routes[pid].object, crm_id))
            for pid, crm_id in created.items()
        ],
    )
    counts["created_in_crm"] = len(made)
    counts["linked_to_contacts"] = sum(1 for pid in created if routes[pid].object != run.object)
    counts["crm_records_written"] += len(written)
    counts["crm_fields_written"] += sum(len(payload(routes[pid], by_profile[pid])) for pid in written)
    now = _iso(datetime.now(UTC))
    container.write_ledger.record(
        LedgerEntry(run.sync_id, crm_id, local, digest, "both", now, run.ledger_run)
        for row in rows
        if (crm_id := created.get(row["profileId"])) is not None
        and row["profileId"] not in linked.missing
        and routes[row["profileId"]].object == run.object  # a Contact is not a record of this sync
        for local, digest in row["ledger"].items()
    )
    return created, rejects


def _routes(
    run: TwoWayRun, writer: CrmWriter, rows: list[dict[str, Any]], normalize: Callable[[str], str]
) -> tuple[dict[str, Route], list[Reject]]:
    """Where each profile to create goes, decided in one batched look-up. With `create.lead_or_contact`,
    the export's routing (SPEC E5: `matches_by_email`, then `route_lead_or_contact`): the Contact or the
    Lead the CRM has with the profile's e-mail address (a Contact first; two of a kind are refused as
    ambiguous), else a new Lead. Without it, the record of the object with the profile's
    reconciliation.key, else a new one (inserted, or upserted by `create.external_id`)."""
    routes: dict[str, Route] = {}
    rejects: list[Reject] = []
    if run.routing:
        lead, contact = (ObjectTarget.from_state(target) for target in run.routing)
        emails = {row["profileId"]: normalize_key(row["key"], case_insensitive=True) for row in rows}
        found = matches_by_email(writer, (lead, contact), sorted({e for e in emails.values() if e}))
        for row in rows:
            profile_id = row["profileId"]
            try:
                route = route_lead_or_contact(
                    {}, emails[profile_id], found, lead=lead.object, contact=contact.object
                )
            except RecordRejected as refused:
                rejects.append(
                    Reject(
                        refused.code.value,
                        refused.message,
                        {"profileId": profile_id, "fields": sorted(row["insert"])},
                        fields=refused.fields,
                        profile_id=profile_id,
                    )
                )
                continue
            crm_id = normalize(route.crm_id) if route.crm_id else None
            routes[profile_id] = dataclasses.replace(route, crm_id=crm_id)
        return routes, rejects
    assert run.key_remote is not None
    by_key = {normalize_key(row["key"], case_insensitive=True): row for row in rows}
    existing: dict[str, str] = {}
    for record in writer.find(
        run.object, run.key_remote, [row["key"] for row in rows], [run.id_field, run.key_remote]
    ):
        held = normalize_key(record.get(run.key_remote), case_insensitive=True)
        if held in by_key:
            existing.setdefault(by_key[held]["profileId"], normalize(str(record[run.id_field])))
    for row in rows:
        profile_id = row["profileId"]
        if profile_id in existing:
            routes[profile_id] = Route(run.object, "update", existing[profile_id])
        else:
            routes[profile_id] = Route(run.object, "upsert" if run.upsert_field else "insert")
    return routes, rejects


def _write_profiles(
    container: Container,
    run: TwoWayRun,
    rows: list[dict[str, Any]],
    profile_writes: dict[str, dict[str, Any]],
    failed: set[str | None],
    counts: dict[str, int],
) -> set[str]:
    """Each profile's decided attributes, stamped with the winning change's time; a profile whose
    attribute changed since start is left to the next run (`deferred`)."""
    done: set[str] = set()
    source = f"crm:{run.connection}"
    for row in rows:
        values = profile_writes.get(row["profileId"])
        if not values or row["crmId"] in failed:
            continue
        applied = marketing_side(container, run).apply_synced(
            row["profileId"],
            values,
            {name: row["changedAt"][name] for name in values},
            {name: row["seen"].get(name) for name in values},
            source,
        )
        if applied:
            done.add(row["profileId"])
            counts["profiles_written"] += 1
            counts["marketing_fields_written"] += len(values)
        else:
            counts["deferred"] += 1
    return done


def _consent(run: TwoWayRun, row: dict[str, Any], item: dict[str, Any]) -> ConsentChange:
    return ConsentChange(
        profile_id=row["profileId"],
        channel=item["channel"],
        value=item["value"],
        source_side=item["side"],
        source_record=item["record"],
        changed_at=item["at"],
        author=item["author"],
        time_source=item["source"],
        run_id=run.ledger_run,
        sync_id=run.sync_id,
        crm_field=item["crmField"],
    )


def _holds(held: Any, value: Any) -> bool:
    """A side already holds the decided value (a flag in any of the forms `as_flag` reads)."""
    return as_flag(held) == value if isinstance(value, bool) else held == value


def _drop_applied(
    run: TwoWayRun,
    container: Container,
    connector: CrmConnector,
    rows: list[dict[str, Any]],
    crm_writes: dict[str, dict[str, Any]],
    profile_writes: dict[str, dict[str, Any]],
) -> None:
    """An earlier attempt of this batch stopped half-way: leave out every value already where it goes
    (read back from the CRM and the profile store), so none is written twice."""
    if crm_writes:
        names = sorted({name for values in crm_writes.values() for name in values})
        query = RecordQuery(object=run.object, fields=(run.id_field, *names), ids=tuple(crm_writes))
        for record in connector.read_by_ids(query):
            values = crm_writes.get(_crm_id(connector, run, record), {})
            for name in [n for n, v in values.items() if _holds(record.get(n), v)]:
                del values[name]
    if profile_writes:
        stamps = {row["profileId"]: row["changedAt"] for row in rows}
        for item in marketing_side(container, run).get_many(list(profile_writes)):
            values, attrs = profile_writes[item["profileId"]], item.get("attrs") or {}
            changed = item.get("attrChangedAt") or {}
            held = [
                n
                for n, v in values.items()
                if _holds(attrs.get(n), v) and changed.get(n) == stamps[item["profileId"]].get(n)
            ]
            for name in held:
                del values[name]
    for writes in (crm_writes, profile_writes):
        for key in [k for k, v in writes.items() if not v]:
            del writes[key]


TWO_WAY = TwoWay()
start_two_way = TWO_WAY.start
two_way_batch = TWO_WAY.batch
finish_two_way = TWO_WAY.finish


__all__ = [
    "TWO_WAY",
    "StartTwoWayEvent",
    "TwoWay",
    "TwoWayBatchEvent",
    "TwoWayRun",
    "TwoWayState",
    "TwoWaySummary",
    "TwoWayTotals",
    "as_flag",
    "finish_two_way",
    "policy_for",
    "start_two_way",
    "two_way_batch",
]
