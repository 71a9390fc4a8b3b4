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

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..config import TwoWaySync
from ..connectors.port import (
    CrmConnector,
    CrmWriter,
    FieldHistoryConnector,
    RecordQuery,
    RecordWrite,
    WriteJournal,
    WriteRequest,
)
from ..connectors.rules import crm_rules
from ..domain.conversions import parse_crm_datetime_or_none
from ..domain.records import Reject
from ..domain.two_way import (
    Change,
    FieldChangeRow,
    FieldPolicy,
    LatestWins,
    TimeSource,
    crm_change,
    decide,
    marketing_change,
    value_hash,
)
from ..domain.types import CrmFieldType
from ..domain.windows import ImportWindow, format_watermark, parse_watermark
from ..errors import ConfigurationError
from ..stores.batches import BatchEntry
from ..stores.profiles import link_name
from ..stores.two_way import ConsentChange, LedgerEntry
from ..wiring import Container
from . import batched_runs as batched
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
    consent_rows: int = 0
    deferred: int = 0
    rejected: int = 0
    unlinked: int = 0
    api_calls: int = 0
    batches: int = 0


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


def _read(
    container: Container,
    connector: FieldHistoryConnector,
    run: TwoWayRun,
    columns: tuple[str, ...],
    watermark_field: str,
    tracked: list[str],
    crm_window: ImportWindow,
    marketing_window: ImportWindow,
) -> Sides:
    sides = Sides()
    if run.direction != "marketing_to_crm":
        query = RecordQuery(
            object=run.object,
            fields=columns,
            window_field=watermark_field,
            window_start=crm_window.start,
            window_end=crm_window.end,
            page_size=2000,
        )
        for record in _pages(connector, query):
            sides.crm_changed[_crm_id(connector, run, record)] = record
    profiles = container.profiles
    if run.direction != "crm_to_marketing":
        link = link_name(run.connection, run.object)
        since = _iso(marketing_window.start) if marketing_window.start else None
        for ids in profiles.changed_profile_ids(since, _iso(marketing_window.end)):
            for start in range(0, len(ids), PROFILE_CHUNK):
                for item in profiles.get_many(ids[start : start + PROFILE_CHUNK]):
                    crm_id = (item.get("externalIds") or {}).get(link)
                    if crm_id and not item.get("deletedInCrm"):
                        sides.profiles[str(crm_id)] = item
                        sides.marketing_changed.add(str(crm_id))
    # The other side of each changed record: profiles of CRM changes, CRM values of marketing changes.
    missing = [crm_id for crm_id in sides.crm_changed if crm_id not in sides.profiles]
    for start in range(0, len(missing), PROFILE_CHUNK):
        sides.profiles.update(
            profiles.profiles_by_crm_ids(run.connection, run.object, missing[start : start + PROFILE_CHUNK])
        )
    unread = [crm_id for crm_id in sides.profiles if crm_id not in sides.crm_changed]
    if unread:
        query = RecordQuery(object=run.object, fields=columns, ids=tuple(unread))
        sides.crm_current = {_crm_id(connector, run, r): r for r in connector.read_by_ids(query)}
    changed = [crm_id for crm_id in sides.crm_changed if crm_id in sides.profiles]
    # A first run reads every record: its values count at the record's time, without per-record reads.
    if tracked and changed and crm_window.start is not None:
        for change in connector.field_changes(run.object, tracked, changed, crm_window.start, crm_window.end):
            sides.rows.setdefault((change.record_id, change.field), []).append(
                FieldChangeRow(as_flag(change.value), change.at, change.author)
            )
        sides.integration_user = connector.integration_user()
    return sides


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
    """The judge of one field: for opt-outs the latest change, ties opting out. (Per-field priority -
    `crm`, `marketing`, `latest` - plugs in here.)"""
    return LatestWins(tolerance_seconds=sync.tolerance_seconds)


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
    fields: dict[str, str],
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
    now = _iso(datetime.now(UTC))
    for crm_id, profile in sides.profiles.items():
        record = sides.crm_changed.get(crm_id) or sides.crm_current.get(crm_id)
        if record is None:
            continue  # linked to a record the CRM no longer has: the deletion import's business
        attrs, stamps = profile.get("attrs") or {}, profile.get("attrChangedAt") or {}
        row: dict[str, Any] = {
            "crmId": crm_id,
            "profileId": profile["profileId"],
            "crm": {},
            "marketing": {},
            "changedAt": {},
            "seen": {},
            "ledger": {},
            "consent": [],
        }
        for local, remote in fields.items():
            entry = ledger.get((crm_id, local))
            synced = entry.hash if entry else None
            crm_value, marketing_value = as_flag(record.get(remote)), as_flag(attrs.get(local))
            crm_side: Change | None = None
            if crm_id in sides.crm_changed and run.direction != "marketing_to_crm":
                field_rows = sides.rows.get((crm_id, remote), []) if source_of[remote].certain else None
                if field_rows == [] and crm_window.start is None:
                    field_rows = None  # a first run: values set before tracking began count at the record's time
                crm_side, echoes = crm_change(
                    field=remote,
                    current=crm_value,
                    rows=field_rows,
                    record_changed_at=parse_crm_datetime_or_none(record.get(watermark_field)),
                    ledger_hash=synced,
                    integration_user=sides.integration_user,
                    source=source_of[remote],
                    record=crm_id,
                )
                decisions.count("crm_echoes_skipped", echoes)
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
            if crm_side is None and marketing_side is None:
                continue
            decision = decide(
                local,
                crm_side,
                marketing_side,
                direction=run.direction,  # type: ignore[arg-type]
                policy=policy_for(sync, local),
                current_crm=crm_value,
                current_marketing=marketing_value,
            )
            winner = decision.winner
            if winner is None:
                first_run = crm_window.start is None
                if not first_run and crm_value == marketing_value and value_hash(crm_value) != synced:
                    decisions.converged.append(
                        LedgerEntry(sync.id, crm_id, local, value_hash(crm_value), "both", now, run.ledger_run)
                    )
                continue
            assert decision.reason is not None
            decisions.count("changes")
            decisions.count(f"decided_by:{decision.reason.value}")
            decisions.count(f"source:{winner.source.value}")
            decisions.count("conflicts", 1 if decision.conflict else 0)
            row["ledger"][local] = value_hash(winner.value)
            if winner.value != crm_value:
                row["crm"][remote] = winner.value
            if winner.value != marketing_value:
                row["marketing"][local] = winner.value
                row["changedAt"][local] = _iso(winner.at)
                row["seen"][local] = stamps.get(local)
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


def _checked_fields(sync: TwoWaySync, described: dict[str, Any]) -> dict[str, str]:
    """Local attribute -> the CRM's spelling of its field; a field the object lacks, or one that is not
    a boolean, is refused before anything is read (rule O2)."""
    fields: dict[str, str] = {}
    problems = []
    for local, remote in sync.opt_outs.fields.items():
        described_field = described.get(remote.lower())
        if described_field is None:
            problems.append(f"opt_outs.fields.{local}: {sync.object} has no field {remote!r}")
        elif described_field.crm_type is not CrmFieldType.BOOLEAN:
            kind = described_field.raw_type or described_field.crm_type
            problems.append(
                f"opt_outs.fields.{local}: {remote!r} is a {kind} field; only boolean fields may be mapped (rule O2)"
            )
        else:
            fields[local] = described_field.name
    if problems:
        raise ConfigurationError(problems)
    return fields


# ------------------------------------------------------------------------------------- the operation
class TwoWay(
    batched.BatchedOperation[
        TwoWaySync, dict[str, str], TwoWayRun, TwoWayTotals, TwoWayState, TwoWayBatchEvent, TwoWaySummary
    ]
):
    operation = OPERATION
    noun = "two-way"
    direction = "two-way"
    machine = "two-way"
    runs = "two-way syncs"
    identity_field = "crmId"
    sync_model = TwoWaySync
    run_model = TwoWayRun
    totals_model = TwoWayTotals
    state_model = TwoWayState
    summary_model = TwoWaySummary

    def prepare(
        self, sync: TwoWaySync, connection: batched.Connection, connector: CrmConnector
    ) -> tuple[dict[str, str], batched.RunSettings]:
        if not isinstance(connector, FieldHistoryConnector):
            raise ConfigurationError(f"a {connection.kind} connection cannot tell who changed a field")
        description = connector.describe(sync.object)
        fields = _checked_fields(sync, description.fields)
        return fields, batched.RunSettings.of_object(
            sync, connection, description, direction=sync.opt_outs.direction
        )

    def mode(self, population: PopulationSource | None) -> str:
        return "changes"

    def given(
        self,
        container: Container,
        run: TwoWayRun,
        plan: dict[str, str],
        population: PopulationSource,
        rejects: list[Reject],
    ) -> Iterator[dict[str, Any]]:
        raise ConfigurationError(f"sync {run.sync_id!r} is two-way: it reads what changed on each side, not ids")

    def api(
        self, sync: TwoWaySync, plan: dict[str, str], run: TwoWayRun
    ) -> tuple[Literal["collections", "bulk"], int]:
        return "collections", 1

    def changed(
        self,
        container: Container,
        run: TwoWayRun,
        sync: TwoWaySync,
        plan: dict[str, str],
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
        tracking = connector.field_tracking(run.object, plan.values())
        evidence = TimeSource.HISTORY if tracking.source == "history" else TimeSource.AUDIT
        source_of = {r: evidence if tracking.tracked.get(r) else TimeSource.RECORD for r in plan.values()}
        run.tracking = {remote: source.value for remote, source in source_of.items()}
        watermark_field = sync.watermark.field or crm_rules(run.crm_kind).watermark_field
        columns = tuple(dict.fromkeys([run.id_field, watermark_field, *plan.values()]))
        tracked = [remote for remote, source in source_of.items() if source.certain]
        sides = _read(container, connector, run, columns, watermark_field, tracked, crm_window, window)
        ledger = container.write_ledger.get_many(sync.id, [(c, local) for c in sides.profiles for local in plan])
        decisions = _decide(run, sync, sides, plan, source_of, ledger, crm_window, window.start, watermark_field)
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
        """The CRM side once, then the profiles, then the write and consent ledgers."""
        run = event.run
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
            LedgerEntry(run.sync_id, row["crmId"], local, digest, "crm", now, run.ledger_run)
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
                LedgerEntry(run.sync_id, row["crmId"], local, digest, "both", now, run.ledger_run)
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
            consent_rows=counts.get("consent_rows", 0),
            deferred=counts.get("deferred", 0),
            rejected=counts.get("rejected", 0),
            unlinked=decided.get("unlinked", 0),
            api_calls=state.totals.api_calls + counts.get("api_calls", 0),
            batches=run.batches,
        )
        also: list[dict[str, Any]] = [container.batches.finished_action(run.sync_id, OPERATION)]
        if crm_window is not None and (crm_window.previous is None or crm_window.end > crm_window.previous):
            also.append(container.watermarks.advance_action(crm_window.option, crm_window.end, run.run_id))
        close_run(container, run.key, summary, operation=OPERATION, window=window, also=tuple(also))
        return summary


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
        error = result.errors[0]
        rejects.append(
            Reject(
                error.code,
                "; ".join(e.message for e in result.errors),
                {"crmId": result.ref, "fields": sorted(crm_writes[result.ref])},
                crm_id=result.ref,
                fields=error.fields,
            )
        )
    return written, rejects


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
        applied = container.profiles.apply_synced(
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
            for name in [n for n, v in values.items() if as_flag(record.get(n)) == v]:
                del values[name]
    if profile_writes:
        stamps = {row["profileId"]: row["changedAt"] for row in rows}
        for item in container.profiles.get_many(list(profile_writes)):
            values, attrs = profile_writes[item["profileId"]], item.get("attrs") or {}
            changed = item.get("attrChangedAt") or {}
            held = [
                n
                for n, v in values.items()
                if as_flag(attrs.get(n)) == v and changed.get(n) == stamps[item["profileId"]].get(n)
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
