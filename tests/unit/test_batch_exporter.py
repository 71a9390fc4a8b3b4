"""One export batch against an in-memory CRM behind the writer port: routing, exactly-once resolution of
uncertain writes, partial refusals, write-back links, batched look-ups (SPEC E1, E4-E6, R1)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from crmsync.config import parse_config
from crmsync.connectors.port import FieldDescription, ObjectDescription, WriteError, WriteResult
from crmsync.domain.types import CrmFieldType
from crmsync.errors import ConfigurationError, CrmOutcomeUnknown
from crmsync.services.export_batch import BatchExporter, SnapshotRecord
from crmsync.services.export_plan import resolve_export_plan

TEXT = CrmFieldType.STRING


def description(name, *fields, id_field="Id"):
    described = {id_field.lower(): FieldDescription(id_field, CrmFieldType.ID, createable=False, updateable=False)}
    for spec in fields:
        field_name, crm_type, *flags = spec
        described[field_name.lower()] = FieldDescription(
            field_name,
            crm_type,
            createable="readonly" not in flags,
            updateable="readonly" not in flags,
            external_id="external" in flags,
        )
    return ObjectDescription(name=name, id_field=id_field, fields=described)


SCHEMA = {
    "Lead": description(
        "Lead",
        ("Email", TEXT),
        ("LastName", TEXT),
        ("Company", TEXT),
        ("OwnerId", CrmFieldType.REFERENCE),
        ("IsConverted", CrmFieldType.BOOLEAN, "readonly"),
        ("Profile__c", TEXT),
    ),
    "Contact": description(
        "Contact", ("Email", TEXT), ("LastName", TEXT), ("OwnerId", CrmFieldType.REFERENCE), ("Profile__c", TEXT)
    ),
    "User": description("User", ("Email", TEXT)),
}


def plan_for(**overrides):
    sync = {
        "id": "export",
        "operation": "export",
        "connection": "sf",
        "object": "Lead",
        "correlation_field": "Profile__c",
        "fields": [
            {"remote": "Email", "local": "email"},
            {"remote": "LastName", "local": "lastName"},
            {"remote": "Company", "local": "company"},
        ],
        **overrides,
    }
    config = parse_config(
        {
            "version": 1,
            "connections": [
                {"name": "sf", "kind": "salesforce", "instance_url": "https://x.my.salesforce.com", "secret": "s"}
            ],
            "syncs": [sync],
        }
    )
    return resolve_export_plan(config.syncs[0], SCHEMA.__getitem__, "salesforce")


@dataclass
class Journal:
    job_id: str | None = None

    def record_job(self, job_id):
        self.job_id = job_id


@dataclass
class FakeCrm:
    """The writer port over dictionaries. `lose_answers` cuts the answer of that many write calls after
    applying them, as a dropped connection does."""

    records: dict[str, dict[str, dict]] = field(default_factory=lambda: {"Lead": {}, "Contact": {}, "User": {}})
    lose_answers: int = 0
    calls: list[tuple] = field(default_factory=list)
    kind: str = "salesforce"
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def api_calls(self):
        return len(self.calls)

    def seed(self, object_name, **values):
        crm_id = f"{object_name[:3]}{next(self.ids):05d}"
        self.records[object_name][crm_id] = {"Id": crm_id, **values}
        return crm_id

    def find(self, object_name, field_name, values, fields):
        self.calls.append(("find", object_name, field_name))
        wanted = {str(v).lower() for v in values}
        return [
            dict(r) for r in self.records[object_name].values() if str(r.get(field_name, "")).lower() in wanted
        ]

    def write(self, request, journal):
        self.calls.append(("write", request.object, request.kind, len(request.records)))
        results = []
        for record in request.records:
            values = dict(record.fields)
            if not values.get("LastName") and request.kind == "insert":
                error = WriteError(
                    "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ("LastName",)
                )
                results.append(WriteResult(record.ref, None, False, (error,)))
                continue
            if request.kind == "insert":
                results.append(WriteResult(record.ref, self.seed(request.object, **values), True))
            else:
                crm_id = values.pop("Id")
                self.records[request.object][crm_id].update(values)
                results.append(WriteResult(record.ref, crm_id, False))
        if self.lose_answers:
            self.lose_answers -= 1
            raise CrmOutcomeUnknown("the connection was cut after the request was sent")
        return results


def snapshot(n, **attrs):
    return SnapshotRecord(f"p{n}", {"email": f"p{n}@example.com", "lastName": f"L{n}", "company": "Acme", **attrs})


def export(plan, crm, records, *, interrupted=False):
    return BatchExporter(plan, crm, lambda slot: Journal(), bulk=False, interrupted=interrupted).export(records)


def leads_per_profile(crm):
    profiles = [r["Profile__c"] for r in crm.records["Lead"].values()]
    return {p: profiles.count(p) for p in profiles}


def test_unlinked_profiles_are_inserted_with_their_profile_id_and_linked_back():
    crm, plan = FakeCrm(), plan_for()
    result = export(plan, crm, [snapshot(1), snapshot(2)])
    assert result.counts()["created"] == 2
    assert leads_per_profile(crm) == {"p1": 1, "p2": 1}
    assert sorted((link.profile_id, link.object) for link in result.links) == [("p1", "Lead"), ("p2", "Lead")]


def test_a_linked_profile_is_updated_in_place_and_needs_no_new_link():
    crm, plan = FakeCrm(), plan_for()
    lead = crm.seed("Lead", LastName="Old", Email="p1@example.com")
    result = export(plan, crm, [SnapshotRecord("p1", {"lastName": "New"}, {"sf:Lead": lead})])
    assert result.counts()["updated"] == 1
    assert crm.records["Lead"][lead]["LastName"] == "New"
    assert result.links == []


def test_an_uncertain_insert_is_looked_up_by_correlation_and_never_created_twice():
    crm, plan = FakeCrm(lose_answers=1), plan_for()
    result = export(plan, crm, [snapshot(n) for n in range(5)])
    assert leads_per_profile(crm) == {f"p{n}": 1 for n in range(5)}
    assert result.counts()["created"] == 5
    assert ("find", "Lead", "Profile__c") in crm.calls


@dataclass
class SlowCrm(FakeCrm):
    """A CRM that answers its first write after the client's timeout and applies it later still: a
    timed-out request is not cancelled. `now` is the client's clock, in seconds."""

    timeout: float = 1.0
    applies_after: float = 1.6
    now: float = 0.0
    late: list[tuple[float, object]] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)

    def write(self, request, journal):
        if self.late or self.calls:
            return super().write(request, journal)
        self.calls.append(("write", request.object, request.kind, len(request.records)))
        self.late.append((self.now + self.applies_after, request))
        self.now += self.timeout
        raise CrmOutcomeUnknown("Salesforce did not answer in time (the write may have been applied)")

    def apply_due(self, *, everything=False):
        for due, request in list(self.late):
            if everything or due <= self.now:
                self.late.remove((due, request))
                FakeCrm.write(self, request, Journal())
                self.calls.pop()  # the call was counted when it was sent

    def find(self, object_name, field_name, values, fields):
        self.apply_due()
        return super().find(object_name, field_name, values, fields)

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_an_insert_that_timed_out_is_looked_up_after_the_crm_had_as_long_again_and_never_created_twice():
    crm, plan = SlowCrm(), plan_for()
    exporter = BatchExporter(
        plan, crm, lambda slot: Journal(), bulk=False, interrupted=False, clock=lambda: crm.now, sleep=crm.sleep
    )
    result = exporter.export([snapshot(n) for n in range(3)])
    crm.apply_due(everything=True)  # whatever was still running at the CRM has landed by now
    assert leads_per_profile(crm) == {f"p{n}": 1 for n in range(3)}
    assert result.counts()["created"] == 3
    assert crm.slept == [1.0]
    assert [c for c in crm.calls if c[0] == "write"] == [("write", "Lead", "insert", 3)]


def test_an_interrupted_batch_resolves_its_inserts_before_sending_anything():
    crm, plan = FakeCrm(), plan_for()
    already = crm.seed("Lead", LastName="L0", Email="p0@example.com", Profile__c="p0")
    result = export(plan, crm, [snapshot(0), snapshot(1)], interrupted=True)
    assert leads_per_profile(crm) == {"p0": 1, "p1": 1}
    assert [link.crm_id for link in result.links if link.profile_id == "p0"] == [already]


def test_a_partially_refused_batch_rejects_only_the_bad_records_with_the_crm_code():
    crm, plan = FakeCrm(), plan_for()
    result = export(plan, crm, [snapshot(1), SnapshotRecord("p2", {"email": "p2@example.com"}), snapshot(3)])
    assert (result.counts()["created"], result.counts()["rejected"]) == (2, 1)
    (reject,) = result.rejects
    assert (reject.error_symbol, reject.fields, reject.profile_id) == (
        "REQUIRED_FIELD_MISSING",
        ("LastName",),
        "p2",
    )
    assert reject.record == {"Email": "p2@example.com", "Profile__c": "p2"}


def test_an_update_with_nothing_to_send_makes_no_call():
    crm, plan = FakeCrm(), plan_for()
    lead = crm.seed("Lead", LastName="Old")
    result = export(plan, crm, [SnapshotRecord("p1", {}, {"sf:Lead": lead})])
    assert result.counts()["unchanged"] == 1
    assert crm.calls == []


def test_a_value_the_mapping_refuses_becomes_a_reject_without_reaching_the_crm():
    crm = FakeCrm()
    plan = plan_for(fields=[{"remote": "LastName", "local": "lastName", "max_length": 3}])
    result = export(plan, crm, [SnapshotRecord("p1", {"lastName": "Toolong"})])
    assert [r.error_symbol for r in result.rejects] == ["STRING_TOO_LONG"]
    assert crm.calls == []


def lead_or_contact_plan(**overrides):
    return plan_for(
        lead_or_contact={"match": "email", "contact_fields": [{"remote": "LastName", "local": "lastName"}]},
        **overrides,
    )


def test_lead_or_contact_routes_each_person_to_the_form_the_crm_knows_them_in():
    crm, plan = FakeCrm(), lead_or_contact_plan()
    contact = crm.seed("Contact", Email="P1@Example.com", LastName="C")
    lead = crm.seed("Lead", Email="p2@example.com", LastName="L")
    result = export(plan, crm, [snapshot(1), snapshot(2), snapshot(3)])
    assert crm.records["Contact"][contact]["LastName"] == "L1"
    assert crm.records["Lead"][lead]["LastName"] == "L2"
    assert [r["Email"] for r in crm.records["Lead"].values()] == ["p2@example.com", "p3@example.com"]
    assert sorted((link.profile_id, link.object) for link in result.links) == [
        ("p1", "Contact"),
        ("p2", "Lead"),
        ("p3", "Lead"),
    ]


def test_lead_or_contact_looks_emails_up_once_per_object_for_the_whole_batch():
    crm, plan = FakeCrm(), lead_or_contact_plan()
    export(plan, crm, [snapshot(n) for n in range(50)])
    assert [c for c in crm.calls if c[0] == "find"] == [("find", "Lead", "Email"), ("find", "Contact", "Email")]


def test_a_converted_lead_is_not_matched():
    crm, plan = FakeCrm(), lead_or_contact_plan()
    crm.seed("Lead", Email="p1@example.com", LastName="L", IsConverted=True)
    export(plan, crm, [snapshot(1)])
    assert len(crm.records["Lead"]) == 2


def test_owners_named_by_email_are_set_and_an_unknown_owner_keeps_the_current_one():
    crm, plan = FakeCrm(), plan_for(owner={"local": "ownerEmail"})
    rep = crm.seed("User", Email="rep@acme.example", IsActive=True)
    result = export(
        plan, crm, [snapshot(1, ownerEmail="REP@acme.example"), snapshot(2, ownerEmail="gone@acme.example")]
    )
    owners = {r["Profile__c"]: r.get("OwnerId") for r in crm.records["Lead"].values()}
    assert owners == {"p1": rep, "p2": None}
    assert result.owners_unmatched == 1


def test_a_missing_field_on_the_crm_object_fails_the_plan_with_a_hint():
    with pytest.raises(ConfigurationError) as refused:
        plan_for(fields=[{"remote": "Emial", "local": "email"}])
    assert refused.value.problems == [
        "sync export: fields[0].remote: Lead has no field 'Emial' (did you mean Email?)"
    ]


def test_an_upsert_key_that_is_not_an_external_id_fails_the_plan():
    with pytest.raises(ConfigurationError) as refused:
        plan_for(write="upsert", external_id={"remote": "Email"}, correlation_field=None)
    assert refused.value.problems == ["sync export: external_id.remote: Lead.Email is not an external-id field"]
