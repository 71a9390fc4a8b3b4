"""One batch of an export, CRM-neutral: route, map, write through the writer port, resolve uncertain
writes, and say what to write back and what to reject (SPEC E1-E6, R1).

Exactly once (SPEC E4): a write whose outcome is unknown is never simply repeated. Updates and upserts
are idempotent and are sent again; inserts are first looked up by their correlation value - the
profile id crmsync writes into the correlation field - and only those the CRM does not have are sent
again. A batch an earlier attempt left in flight gets the same treatment before anything is sent.

A call given up on is not cancelled: a request that timed out may still be running at the CRM and apply
its inserts after we gave up, so a look-up made at once could miss them and send them a second time.
Before looking an insert up, the batch waits as long as the uncertain call had run (the time the CRM
already had it; at most `MAX_SETTLE_SECONDS`): for a cut connection or a gateway error that is the
moment the answer failed, for a timeout the timeout again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..connectors.port import CrmWriter, RecordWrite, WriteJournal, WriteKind, WriteRequest, WriteResult
from ..domain.events import timeline_link
from ..domain.reconciliation import normalize_key
from ..domain.records import RecordRejected, Reject, RejectCode
from ..domain.routing import CrmMatch, Route, route_by_link, route_lead_or_contact
from ..errors import CrmOutcomeUnknown
from ..stores.profiles import ExportedProfile, ExportLink, link_name
from .export_plan import ExportPlan, ObjectTarget

logger = logging.getLogger(__name__)

RESOLUTION_ROUNDS = 3
MAX_SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class SnapshotRecord:
    """A profile as the run's snapshot holds it: its id, the attributes the plan reads, its links."""

    profile_id: str
    attributes: dict[str, Any]
    links: dict[str, str] = field(default_factory=dict)
    version: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "profileId": self.profile_id,
            "attrs": self.attributes,
            "links": self.links,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotRecord:
        return cls(
            str(data["profileId"]),
            dict(data.get("attrs") or {}),
            dict(data.get("links") or {}),
            data.get("version"),
        )


@dataclass
class BatchResult:
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    exported: list[ExportedProfile] = field(default_factory=list)
    owners_unmatched: int = 0

    @property
    def links(self) -> list[ExportLink]:
        return [e.link for e in self.exported if e.link is not None]

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = defaultdict(int)
        for outcome in self.outcomes:
            tally[outcome["status"]] += 1
        return {
            "selected": len(self.outcomes),
            "created": tally["created"],
            "updated": tally["updated"],
            "unchanged": tally["unchanged"],
            "rejected": tally["rejected"],
            "owners_unmatched": self.owners_unmatched,
        }


@dataclass
class _Pending:
    record: SnapshotRecord
    route: Route
    payload: dict[str, Any]


def matches_by_email(
    writer: CrmWriter, targets: Sequence[ObjectTarget], emails: Sequence[str]
) -> dict[str, list[CrmMatch]]:
    """The Leads and Contacts (`targets`) that have these e-mail addresses (normalized), one batched
    look-up per object; a converted Lead is not a match (SPEC E5). What `route_lead_or_contact` decides on,
    for the export and the two-way sync's `create.lead_or_contact`."""
    found: dict[str, list[CrmMatch]] = defaultdict(list)
    if not emails:
        return found
    for target in targets:
        assert target.email_field is not None
        columns = [target.id_field, target.email_field]
        if target.converted_field:
            columns.append(target.converted_field)
        for row in writer.find(target.object, target.email_field, list(emails), columns):
            if target.converted_field and row.get(target.converted_field) in (True, "true"):
                continue
            email = normalize_key(row.get(target.email_field), case_insensitive=True)
            if email is not None:
                found[email].append(CrmMatch(target.object, str(row[target.id_field])))
    return found


class BatchExporter:
    def __init__(
        self,
        plan: ExportPlan,
        writer: CrmWriter,
        journal: Callable[[str], WriteJournal],
        *,
        bulk: bool,
        interrupted: bool,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.writer = writer
        self.journal = journal
        self.bulk = bulk
        self.interrupted = interrupted
        self.clock = clock
        self.sleep = sleep

    def export(self, records: list[SnapshotRecord]) -> BatchResult:
        result = BatchResult()
        owners = self._owners(records, result)
        found = self._matches_by_email(records)
        groups: dict[tuple[str, WriteKind], list[_Pending]] = defaultdict(list)
        for record in records:
            try:
                route = self._route(record, found)
                target = self.plan.target(route.object)
                payload = self._payload(record, target, route, owners)
            except RecordRejected as refused:
                self._reject(
                    result, record, None, refused.code.value, refused.message, refused.fields, record.attributes
                )
                continue
            if route.kind == "update" and not payload:
                self._exported(result, record, route, "unchanged", route.crm_id)
                continue
            groups[(route.object, route.kind)].append(_Pending(record, route, payload))
        for (object_name, kind), pending in groups.items():
            self._write(object_name, kind, pending, result)
        return result

    # -- routing, mapping ------------------------------------------------------------------------------
    def _route(self, record: SnapshotRecord, found: Mapping[str, list[CrmMatch]]) -> Route:
        plan = self.plan
        if plan.contact is None:
            linked = record.links.get(link_name(plan.connection, plan.primary.object))
            return route_by_link(plan.write, plan.primary.object, linked)
        links = {
            t.object: record.links[link_name(plan.connection, t.object)]
            for t in plan.targets
            if link_name(plan.connection, t.object) in record.links
        }
        return route_lead_or_contact(
            links,
            self._email(record),
            found,
            lead=plan.primary.object,
            contact=plan.contact.object,
        )

    def _email(self, record: SnapshotRecord) -> str | None:
        if self.plan.match_attribute is None:
            return None
        return normalize_key(record.attributes.get(self.plan.match_attribute), case_insensitive=True)

    def _matches_by_email(self, records: list[SnapshotRecord]) -> dict[str, list[CrmMatch]]:
        """One batched lookup per object for the unlinked profiles' e-mail addresses (SPEC E5)."""
        plan = self.plan
        if plan.contact is None:
            return {}
        linked_names = {link_name(plan.connection, t.object) for t in plan.targets}
        emails = sorted(
            {email for r in records if not linked_names & set(r.links) and (email := self._email(r)) is not None}
        )
        return matches_by_email(self.writer, plan.targets, emails)

    def _owners(self, records: list[SnapshotRecord], result: BatchResult) -> dict[str, str]:
        """Owner values -> CRM user ids, looked up in one batch when owners are named by e-mail (SPEC E6)."""
        plan = self.plan
        if plan.owner_local is None:
            return {}
        values = {str(v).strip() for r in records if (v := r.attributes.get(plan.owner_local)) not in (None, "")}
        if plan.owner_by == "id":
            return {v: v for v in values}
        vocabulary = plan.vocabulary
        users: dict[str, str] = {}
        if values:
            for row in self.writer.find(
                vocabulary.user_object,
                vocabulary.user_email_field,
                sorted(values),
                [vocabulary.user_id_field, vocabulary.user_email_field, vocabulary.user_active_field],
            ):
                key = normalize_key(row.get(vocabulary.user_email_field), case_insensitive=True)
                if key and (key not in users or row.get(vocabulary.user_active_field) in (True, "true")):
                    users[key] = str(row[vocabulary.user_id_field])
        owners = {v: users[k] for v in values if (k := normalize_key(v, case_insensitive=True)) in users}
        unmatched = values - set(owners)
        if unmatched:
            result.owners_unmatched = sum(
                1 for r in records if str(r.attributes.get(plan.owner_local, "")).strip() in unmatched
            )
            logger.warning(
                "%d owner(s) not found among the CRM's users; their records keep their current owner",
                len(unmatched),
                extra={"owner_attribute": plan.owner_local},
            )
        return owners

    def _payload(
        self, record: SnapshotRecord, target: ObjectTarget, route: Route, owners: Mapping[str, str]
    ) -> dict[str, Any]:
        plan = self.plan
        payload = plan.mapper(target).map(record.attributes)
        if plan.owner_local is not None and target.owner:
            owner = owners.get(str(record.attributes.get(plan.owner_local, "")).strip())
            if owner is not None:
                payload[plan.vocabulary.owner_field] = owner
        if not payload and route.kind == "update":
            return payload
        if plan.correlation_field and target.correlation:
            payload[plan.correlation_field] = record.profile_id
        if plan.timeline_field and plan.timeline_url and target.timeline:
            payload[plan.timeline_field] = timeline_link(plan.timeline_url, record.profile_id)
        if route.kind == "update":
            payload[target.id_field] = route.crm_id
        elif route.kind == "upsert":
            assert plan.external_id_field is not None
            assert plan.external_id_local is not None
            key = (
                record.profile_id
                if plan.external_id_local == "profileId"
                else record.attributes.get(plan.external_id_local)
            )
            if key in (None, ""):
                raise RecordRejected(
                    RejectCode.MISSING_ID,
                    f"{plan.external_id_local} is empty; the upsert has no {plan.external_id_field} to match on",
                    (plan.external_id_field,),
                )
            payload[plan.external_id_field] = key
        return payload

    # -- writing ---------------------------------------------------------------------------------------
    def _write(self, object_name: str, kind: WriteKind, pending: list[_Pending], result: BatchResult) -> None:
        plan = self.plan
        target = plan.target(object_name)
        by_ref = {p.record.profile_id: p for p in pending}
        request = WriteRequest(
            object=object_name,
            kind=kind,
            records=tuple(RecordWrite(p.record.profile_id, p.payload) for p in pending),
            key_field=target.id_field
            if kind == "update"
            else plan.external_id_field
            if kind == "upsert"
            else None,
            match_field=plan.correlation_field if kind == "insert" else None,
            bulk=self.bulk,
        )
        results: list[WriteResult] = []
        if kind == "insert" and self.interrupted:
            found, request = self._already_created(request)
            results += found
        journal = self.journal(f"{object_name}:{kind}")
        for _ in range(RESOLUTION_ROUNDS):
            if not request.records:
                break
            sent_at = self.clock()
            try:
                results += self.writer.write(request, journal)
                request = replace(request, records=())
            except CrmOutcomeUnknown as unknown:
                ran = self.clock() - sent_at
                completed: list[WriteResult] = list(unknown.completed)
                results += completed
                done = {r.ref for r in completed}
                request = replace(request, records=tuple(r for r in request.records if r.ref not in done))
                logger.warning(
                    "%d %s %s(s) with an unknown outcome; resolving them before sending again",
                    len(request.records),
                    object_name,
                    kind,
                )
                if kind == "insert" and request.records:
                    self.sleep(min(ran, MAX_SETTLE_SECONDS))  # a late insert is found, not sent twice
                    found, request = self._already_created(request)
                    results += found
        if request.records:
            raise CrmOutcomeUnknown(
                f"{len(request.records)} {object_name} record(s) of this batch still have an unknown outcome"
            )
        for write in results:
            self._record(result, by_ref[write.ref], write)

    def _already_created(self, request: WriteRequest) -> tuple[list[WriteResult], WriteRequest]:
        """Inserts the CRM already has, found by correlation value; the rest still to send."""
        field_name = request.match_field
        if field_name is None or not request.records:
            return [], request
        target = self.plan.target(request.object)
        rows = self.writer.find(
            request.object, field_name, [r.ref for r in request.records], [target.id_field, field_name]
        )
        existing: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: str(r[target.id_field])):
            existing.setdefault(str(row[field_name]), str(row[target.id_field]))
        found = [
            WriteResult(ref=r.ref, crm_id=existing[r.ref], created=True)
            for r in request.records
            if r.ref in existing
        ]
        if found:
            logger.info(
                "%d %s insert(s) had reached the CRM before the uncertain call", len(found), request.object
            )
        rest = tuple(r for r in request.records if r.ref not in existing)
        return found, replace(request, records=rest)

    # -- results -----------------------------------------------------------------------------------------
    def _record(self, result: BatchResult, pending: _Pending, write: WriteResult) -> None:
        record, route = pending.record, pending.route
        if write.success:
            self._exported(result, record, route, "created" if write.created else "updated", write.crm_id)
            return
        error = write.errors[0]
        message = "; ".join(e.message for e in write.errors)
        fields = tuple(dict.fromkeys(f for e in write.errors for f in e.fields))
        self._reject(result, record, route, error.code, message, fields, pending.payload, write.crm_id)

    def _exported(
        self, result: BatchResult, record: SnapshotRecord, route: Route, status: str, crm_id: str | None
    ) -> None:
        """A record the CRM now holds: its outcome, and what to write back - the version exported, and
        the link when the CRM id is new to the profile."""
        link = None
        if crm_id and record.links.get(link_name(self.plan.connection, route.object)) != crm_id:
            link = ExportLink(record.profile_id, self.plan.connection, route.object, crm_id)
        if link is not None or record.version is not None:
            result.exported.append(ExportedProfile(record.profile_id, record.version, link))
        result.outcomes.append(self._outcome(record, route, status, crm_id))

    def _reject(
        self,
        result: BatchResult,
        record: SnapshotRecord,
        route: Route | None,
        code: str,
        message: str,
        fields: tuple[str, ...],
        shown: dict[str, Any],
        crm_id: str | None = None,
    ) -> None:
        crm_id = crm_id or (route.crm_id if route else None)
        result.rejects.append(
            Reject(code, message, dict(shown), crm_id=crm_id, fields=fields, profile_id=record.profile_id)
        )
        outcome = self._outcome(record, route, "rejected", crm_id)
        outcome["errorSymbol"] = code
        result.outcomes.append(outcome)

    @staticmethod
    def _outcome(record: SnapshotRecord, route: Route | None, status: str, crm_id: str | None) -> dict[str, Any]:
        return {
            "profileId": record.profile_id,
            "object": route.object if route else None,
            "operation": route.kind if route else None,
            "status": status,
            "crmId": crm_id,
        }
