"""The starting mapping of every object both emulators expose validates offline (against its snapshot) and
imports with zero rejects (SPEC S1, S3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.config import load_config
from crmsync.domain.records import RecordRejected
from crmsync.services.import_plan import resolve_import_plan
from crmsync.services.schema import check_config, load_snapshot, save_snapshot, starting_mapping

from .conftest import dynamics_connection, salesforce_connection

SALESFORCE_OBJECTS = ("Account", "Campaign", "Contact", "Lead", "Opportunity", "Subscription__c", "User")
DYNAMICS_OBJECTS = ("account", "contact", "lead", "new_subscription", "systemuser")


def imported(connector, yaml_text: str, folder, kind: str) -> tuple[list[str], int, int]:
    """Validate the generated file offline, then read every record of the object and map it."""
    config = load_config(yaml_text)
    sync = config.syncs[0]
    check = check_config(config, lambda c, o: load_snapshot(folder, c, o))
    plan = resolve_import_plan(sync, connector.describe(sync.object), kind)
    mapper = plan.mapper()
    page = connector.read_first_page(plan.query())
    records = list(page.records)
    while page.next_cursor:
        page = connector.read_next_page(page.next_cursor)
        records.extend(page.records)
    rejected = 0
    for record in records:
        try:
            mapper.map(record)
        except RecordRejected:
            rejected += 1
    return check.problems, len(records), rejected


@pytest.mark.parametrize("object_name", SALESFORCE_OBJECTS)
def test_salesforce_starting_mapping_validates_offline_and_imports_without_rejects(
    connector, salesforce_emulator, object_name, tmp_path
):
    stamp = datetime(2024, 3, 1, tzinfo=UTC).isoformat()
    seeded = {"Name": "Acme"} if object_name not in ("Contact", "Lead", "User") else {"LastName": "Lima"}
    if object_name == "User":
        seeded.update({"Username": "ana@example.com", "Email": "ana@example.com", "Alias": "ana"})
    if object_name == "Contact":
        seeded.update({"Interests__c": "Running;Cycling", "Birthdate": "1990-05-17", "LeadSource": "Web"})
    salesforce_emulator.control.seed(object_name, [{**seeded, "SystemModstamp": stamp}])
    connection = salesforce_connection(salesforce_emulator.url, salesforce_emulator.ca_bundle)
    description = connector.describe(object_name, values=True)
    save_snapshot(tmp_path, connection.name, description)
    text = starting_mapping(connection, description)
    problems, read, rejected = imported(connector, text, tmp_path, "salesforce")
    assert problems == []
    assert read >= 1
    assert rejected == 0


@pytest.mark.parametrize("object_name", DYNAMICS_OBJECTS)
def test_dynamics_starting_mapping_validates_offline_and_imports_without_rejects(
    dynamics, dynamics_emulator, object_name, tmp_path
):
    connection = dynamics_connection(dynamics_emulator)
    description = dynamics.describe(object_name, values=True)
    primary_name = next((f.name for f in description.fields.values() if f.name.endswith("name")), None)
    row = {"modifiedon": "2024-03-01T00:00:00Z"}
    if object_name in ("contact", "lead"):
        row.update(
            {"lastname": "Lima", "new_interests": "100000000,100000002"}
            if object_name == "contact"
            else {"lastname": "Lima"}
        )
    elif object_name == "systemuser":
        row.update({"domainname": "ana@example.com"})
    elif primary_name:
        row[primary_name] = "Acme"
    dynamics_emulator.control.put_records(description.entity_set, [row])
    save_snapshot(tmp_path, connection.name, description)
    text = starting_mapping(connection, description)
    problems, read, rejected = imported(dynamics, text, tmp_path, "dynamics")
    assert problems == []
    assert read >= 1
    assert rejected == 0


def test_a_multi_select_is_left_out_of_the_starting_mapping_with_the_reason(connector, salesforce_emulator):
    connection = salesforce_connection(salesforce_emulator.url, salesforce_emulator.ca_bundle)
    text = starting_mapping(connection, connector.describe("Contact", values=True))
    assert "# left out: Interests__c: multi-select" in text
    assert "remote: Interests__c, local: interests, type: list" in text


def test_the_starting_mapping_of_contact_reads_the_watermark_and_reconciles_on_email(
    connector, salesforce_emulator
):
    connection = salesforce_connection(salesforce_emulator.url, salesforce_emulator.ca_bundle)
    sync = load_config(starting_mapping(connection, connector.describe("Contact", values=True))).syncs[0]
    assert sync.watermark.field == "SystemModstamp"
    assert sync.reconciliation.key == "email"
    assert next(m.local for m in sync.fields if m.remote == "Email") == "email"


def test_an_export_starting_mapping_upserts_on_the_external_id(connector, salesforce_emulator):
    connection = salesforce_connection(salesforce_emulator.url, salesforce_emulator.ca_bundle)
    text = starting_mapping(connection, connector.describe("Account", values=True), operation="export")
    sync = load_config(text).syncs[0]
    assert sync.write == "upsert"
    assert sync.external_id.remote == "External_Id__c"
