"""The real export state machine, in the local stack, against the Salesforce emulator (SPEC E1-E6, R1, R2).

Exactly once is checked through the emulator's control API: every profile is in the CRM once, carrying
its profile id in the correlation field.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from crmsync.config import ExportSync, FieldMapping
from crmsync_local.cli import app
from crmsync_local.marketing import marketing_profiles

pytestmark = pytest.mark.slow

EXPORT = "sf-people-export"
LEADS = "sf-leads-export"
PROFILE_FIELD = "Marketing_Profile_Id__c"


class ExportEnvironment:
    def __init__(self, env):
        self.env = env
        self.crm = env.crm
        self.operator = env.operator
        self.profiles = marketing_profiles(env.container)

    def people(self, count, prefix="p", **attrs):
        rows = [
            {
                "email": f"{prefix}{i}@example.com",
                "firstName": f"Ana{i}",
                "lastName": f"Lima{i}",
                "company": "Acme",
                **attrs,
            }
            for i in range(count)
        ]
        return self.add(rows)

    def add(self, rows):
        ids = self.profiles.create_local_many(rows, key_attribute="email")
        assert None not in ids
        return ids

    def run(self, sync_id=EXPORT, **start):
        return self.env.run(sync_id, **start)

    def crm_records(self, sobject="Lead"):
        return [r for r in self.crm.control.records(sobject) if not r.get("IsDeleted")]

    def copies_per_profile(self, sobject="Lead"):
        return Counter(r.get(PROFILE_FIELD) for r in self.crm_records(sobject))

    def rejects(self, sync_id=EXPORT):
        return self.operator.rejects(sync_id)

    def apply_sync(self, sync):
        config = self.env.config
        self.operator.apply(config.model_copy(update={"syncs": [*config.syncs, sync]}))


@pytest.fixture
def export_env(sync_env):
    for sobject in ("Lead", "Contact"):
        sync_env.crm.control.define_object(
            sobject, fields=[{"name": PROFILE_FIELD, "type": "string", "length": 64}]
        )
    environment = ExportEnvironment(sync_env)
    environment.apply_sync(leads_export(LEADS))
    return environment


def leads_export(sync_id: str) -> ExportSync:
    """Profiles to Salesforce Leads, correlated by the profile id, 200 a batch, one batch at a time."""
    return ExportSync(
        id=sync_id,
        operation="export",
        connection="sf-prod",
        object="Lead",
        correlation_field=PROFILE_FIELD,
        fields=[
            FieldMapping(remote="LastName", local="lastName"),
            FieldMapping(remote="Company", local="company"),
            FieldMapping(remote="Email", local="email"),
        ],
        batch_size=200,
        max_concurrency=1,
    )


def test_first_export_creates_unknown_people_as_leads_and_links_them_back(export_env):
    ids = export_env.people(3)
    summary = export_env.run()
    assert (summary["status"], summary["selected"], summary["created"]) == ("SUCCEEDED", 3, 3)
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)
    leads = {r[PROFILE_FIELD]: r["Id"] for r in export_env.crm_records()}
    for profile_id in ids:
        profile = export_env.profiles.get(profile_id)
        assert profile["externalIds"] == {"sf-prod:Lead": leads[profile_id]}
        assert export_env.profiles.find_by_crm_id("sf-prod", "Lead", leads[profile_id])["profileId"] == profile_id
    assert summary["window"]["option"] == "LASTEXPORT_acme_sf-people-export"
    assert summary["watermark_moved"] is True


def test_second_export_sends_only_the_changed_profiles_as_updates_of_their_records(export_env):
    ids = export_env.people(4)
    export_env.run()
    export_env.profiles.update_local(ids[0], {"company": "Renamed Ltd"})
    summary = export_env.run()
    assert (summary["selected"], summary["updated"], summary["created"]) == (1, 1, 0)
    assert sorted(r["Company"] for r in export_env.crm_records()) == ["Acme", "Acme", "Acme", "Renamed Ltd"]


def test_lead_or_contact_updates_known_people_in_their_form_and_creates_the_others_as_leads(export_env):
    (contact,) = export_env.crm.control.seed("Contact", [{"LastName": "Known", "Email": "p0@example.com"}])
    (lead,) = export_env.crm.control.seed(
        "Lead", [{"LastName": "Known", "Company": "X", "Email": "P1@example.com"}]
    )
    ids = export_env.people(3)
    summary = export_env.run()
    assert (summary["created"], summary["updated"]) == (1, 2)
    assert export_env.crm_records("Contact")[0]["LastName"] == "Lima0"
    assert {r["Id"]: r["LastName"] for r in export_env.crm_records("Lead")}[lead] == "Lima1"
    assert export_env.profiles.get(ids[0])["externalIds"] == {"sf-prod:Contact": contact}
    assert len(export_env.crm_records("Lead")) == 2


def test_profiles_imported_from_salesforce_are_not_exported_back(export_env):
    export_env.env.seed_contacts(5)
    assert export_env.run("sf-contacts")["created"] == 5
    summary = export_env.run()
    assert (summary["status"], summary["selected"]) == ("SUCCEEDED", 0)


def test_crash_after_k_of_n_batches_then_resume_puts_every_record_in_the_crm_exactly_once(export_env):
    ids = export_env.people(1000)
    control = export_env.crm.control
    # Batches 1 and 2 go through. Batch 3 reaches Salesforce but its answer is lost, and the look-up that
    # would resolve it fails for good; batches 4 and 5 are refused. The run dies with 3 of 5 batches in the CRM.
    control.add_fault(r"^POST .*/composite/sobjects$", drop_response=True, after=2, times=1)
    control.add_fault(r"^POST .*/composite/sobjects$", status=503, after=2, times=None)
    control.add_fault(r"^GET .*/query", status=503, times=None)
    failed = export_env.run(LEADS)
    assert failed["status"] == "FAILED"
    assert len(export_env.crm_records()) == 600
    ledger = export_env.operator.container.batches
    done = [e.number for e in ledger.entries(LEADS, failed["run_id"]) if e.status == "done"]
    assert done == [1, 2]

    control.clear_faults()
    resumed = export_env.run(LEADS)
    assert resumed["status"] == "SUCCEEDED"
    assert resumed["resumed_from"] == failed["run_id"]
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)
    assert (resumed["selected"], resumed["created"]) == (1000, 1000)


def test_a_dropped_response_on_an_insert_batch_creates_no_duplicate(export_env):
    ids = export_env.people(450)
    export_env.crm.control.add_fault(r"^POST .*/composite/sobjects$", drop_response=True, after=1, times=1)
    summary = export_env.run(LEADS)
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 450)
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)


def test_a_partially_failed_batch_rejects_only_the_bad_records(export_env):
    good = export_env.people(3)
    bad_email, no_name, too_long = export_env.add(
        [
            {"email": "not-an-address", "lastName": "Bad", "company": "Acme"},
            {"email": "noname@example.com", "company": "Acme"},
            {"email": "long@example.com", "lastName": "L" * 81, "company": "Acme"},
        ]
    )
    summary = export_env.run(LEADS)
    assert (summary["created"], summary["rejected"]) == (3, 3)
    assert export_env.copies_per_profile() == dict.fromkeys(good, 1)
    rejects = {r["profileId"]: r for r in export_env.rejects(LEADS)}
    assert {p: r["errorSymbol"] for p, r in rejects.items()} == {
        bad_email: "INVALID_EMAIL_ADDRESS",
        no_name: "REQUIRED_FIELD_MISSING",
        too_long: "STRING_TOO_LONG",
    }
    missing = rejects[no_name]
    assert (missing["fields"], missing["runId"], missing["operation"]) == (
        ["LastName"],
        summary["run_id"],
        "export",
    )
    assert missing["record"] == {"Company": "Acme", "Email": "noname@example.com", PROFILE_FIELD: no_name}
    assert "Required fields are missing: [LastName]" in missing["errorMessage"]


@pytest.mark.parametrize("status", [429, 503])
def test_a_burst_of_refusals_longer_than_one_step_is_recovered(export_env, status):
    ids = export_env.people(20)
    export_env.crm.control.add_fault(r"^POST .*/composite/sobjects$", status=status, times=7)
    summary = export_env.run(LEADS)
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 20)
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)


def test_a_large_population_goes_through_bulk_jobs_and_ends_as_the_collections_path_would(export_env):
    stored = export_env.operator.container.definitions.sync(LEADS).sync
    export_env.apply_sync(stored.model_copy(update={"bulk_threshold": 300, "bulk_batch_size": 400}))
    ids = export_env.people(500)
    export_env.crm.control.reset_stats()
    summary = export_env.run(LEADS)
    assert (summary["status"], summary["created"], summary["batches"]) == ("SUCCEEDED", 500, 2)
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)
    calls = export_env.crm.control.stats()["calls"]
    assert not any("composite/sobjects" in key for key in calls)
    assert sum(n for key, n in calls.items() if key.startswith("POST") and key.endswith("/jobs/ingest")) == 2


def test_rejects_export_as_a_data_loader_error_file_and_replay_after_the_data_was_fixed(export_env):
    export_env.people(2)
    fixable, hopeless = export_env.add(
        [
            {"email": "fixable@example.com", "company": "Acme"},
            {"email": "hopeless", "lastName": "Bad", "company": "Acme"},
        ]
    )
    export_env.run(LEADS)
    exported = CliRunner().invoke(app, ["rejects", "export", LEADS])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert sorted(r["ERROR"].split(":")[0] for r in rows) == ["INVALID_EMAIL_ADDRESS", "REQUIRED_FIELD_MISSING"]
    assert list(rows[0])[-1] == "ERROR"

    export_env.profiles.update_local(fixable, {"lastName": "Fixed"})
    replayed = CliRunner().invoke(app, ["rejects", "replay", LEADS, "--json"])
    assert replayed.exit_code == 0, replayed.output
    report = json.loads(replayed.stdout)
    assert (report["exported"], report["rejected_again"], report["consumed"]) == (1, 1, 2)
    assert export_env.copies_per_profile()[fixable] == 1
    left = export_env.rejects(LEADS)
    assert [(r["profileId"], r["runId"]) for r in left] == [(hopeless, report["summary"]["run_id"])]


def test_an_export_mapping_the_crm_does_not_have_fails_before_any_data_moves(export_env):
    stored = export_env.operator.container.definitions.sync(LEADS).sync
    export_env.apply_sync(
        stored.model_copy(update={"fields": [*stored.fields, FieldMapping(remote="Compnay", local="company2")]})
    )
    export_env.people(3)
    summary = export_env.run(LEADS)
    assert summary["status"] == "FAILED"
    assert summary["error"]["type"] == "ConfigurationError"
    assert "Lead has no field 'Compnay' (did you mean Company?)" in summary["error"]["message"]
    assert export_env.crm_records() == []
    assert export_env.operator.container.batches.unfinished(LEADS, "export") is None


def test_a_given_population_exports_exactly_those_profiles_and_leaves_the_watermark(export_env):
    ids = export_env.people(5)
    summary = export_env.run(LEADS, population={"ids": [ids[1], ids[3], "no-such-profile"]})
    assert (summary["created"], summary["rejected"], summary["window"]) == (2, 1, None)
    assert set(export_env.copies_per_profile()) == {ids[1], ids[3]}
    assert [r["errorSymbol"] for r in export_env.rejects(LEADS)] == ["NOT_FOUND"]
    assert export_env.operator.watermark(LEADS)[1] is None


def test_a_file_of_records_is_exported_with_its_values_and_the_profiles_links(export_env):
    (linked,) = export_env.people(1)
    export_env.run(LEADS)
    bucket = export_env.operator.container.settings.data_bucket
    body = f"profileId,lastName,company,email\n{linked},Updated,Acme,p0@example.com\nfrom-file,Newman,Acme,n@example.com\n"
    export_env.env.stack.client("s3").put_object(Bucket=bucket, Key="inbox/people.csv", Body=body.encode())
    summary = export_env.run(LEADS, population={"s3_uri": f"s3://{bucket}/inbox/people.csv"})
    assert (summary["created"], summary["updated"]) == (1, 1)
    assert sorted(r["LastName"] for r in export_env.crm_records()) == ["Newman", "Updated"]


def test_a_file_of_records_outside_inbox_and_populations_is_refused(export_env):
    bucket = export_env.operator.container.settings.data_bucket
    body = b"profileId,lastName,company,email\nfrom-file,Newman,Acme,n@example.com\n"
    export_env.env.stack.client("s3").put_object(Bucket=bucket, Key="runs/people.csv", Body=body)
    summary = export_env.run(LEADS, population={"s3_uri": f"s3://{bucket}/runs/people.csv"})
    assert summary["status"] == "FAILED"
    assert "inbox/ or populations/ only" in summary["error"]["message"]
    assert export_env.crm_records() == []


def test_the_export_writes_the_profile_id_and_the_link_to_its_timeline(export_env):
    """SPEC M5: one writer of both special fields, the export (the correlation field holds the id)."""
    for sobject in ("Lead", "Contact"):
        export_env.crm.control.define_object(
            sobject, fields=[{"name": "Marketing_Timeline__c", "type": "url", "length": 255}]
        )
    timeline = "https://marketing.example.com/profiles/{profileId}/timeline"
    sync = export_env.env.config.sync(EXPORT)
    export_env.apply_sync(
        type(sync).model_validate(
            {
                **sync.model_dump(),
                "id": "sf-people-timeline",
                "watermark": {"option": "LASTEXPORT_timeline"},
                "timeline_link": {"field": "Marketing_Timeline__c", "url": timeline},
            }
        )
    )
    (contact,) = export_env.crm.control.seed("Contact", [{"LastName": "Known", "Email": "p0@example.com"}])
    ids = export_env.people(2)
    summary = export_env.run("sf-people-timeline")
    assert (summary["status"], summary["created"], summary["updated"]) == ("SUCCEEDED", 1, 1)
    records = [*export_env.crm_records("Lead"), *export_env.crm_records("Contact")]
    links = {r[PROFILE_FIELD]: r["Marketing_Timeline__c"] for r in records if r.get(PROFILE_FIELD)}
    assert links == {p: timeline.replace("{profileId}", p) for p in ids}
    assert contact in {r["Id"] for r in export_env.crm_records("Contact")}
