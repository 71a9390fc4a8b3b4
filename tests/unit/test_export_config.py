"""Export sync validation: bad input gets a clear error naming the setting and rule, before any data moves."""

import pytest

from crmsync.config import parse_config
from crmsync.errors import ConfigurationError


def config(**sync_overrides):
    sync = {
        "id": "sf-export",
        "operation": "export",
        "connection": "sf",
        "object": "Lead",
        "correlation_field": "Marketing_Profile_Id__c",
        "fields": [{"remote": "Email", "local": "email"}, {"remote": "LastName", "local": "lastName"}],
    }
    sync.update(sync_overrides)
    return {
        "version": 1,
        "instance": "acme",
        "connections": [
            {
                "name": "sf",
                "kind": "salesforce",
                "instance_url": "https://acme.my.salesforce.com",
                "secret": "crmsync/sf",
            }
        ],
        "syncs": [sync],
    }


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_a_valid_export_sync_parses_with_its_defaults():
    sync = parse_config(config()).syncs[0]
    assert (sync.operation, sync.write, sync.batch_size, sync.max_concurrency) == (
        "export",
        "insert_or_update",
        1000,
        4,
    )


def test_default_option_name_is_lastexport_instance_sync():
    parsed = parse_config(config())
    assert parsed.syncs[0].watermark_option(parsed.instance) == "LASTEXPORT_acme_sf-export"


def test_an_export_that_can_insert_without_a_correlation_field_is_refused_naming_the_rule():
    raw = config()
    del raw["syncs"][0]["correlation_field"]
    assert problems_of(raw) == [
        "syncs[0] (sf-export).correlation_field: required by write: insert_or_update (rule E4: an export that "
        "can insert needs a correlation field so no record is created twice)"
    ]


def test_upsert_without_an_external_id_is_refused():
    assert problems_of(config(write="upsert")) == [
        "syncs[0] (sf-export).external_id: write: upsert needs the external-id field to upsert on (rule E1)"
    ]


def test_upsert_on_an_unmapped_local_attribute_is_refused():
    raw = config(write="upsert", external_id={"remote": "External_Id__c", "local": "crmKey"})
    assert problems_of(raw) == [
        "syncs[0] (sf-export).external_id.local: 'crmKey' is neither profileId nor a mapped attribute"
    ]


def test_upsert_by_profile_id_needs_no_correlation_field():
    raw = config(write="upsert", external_id={"remote": "External_Id__c"})
    del raw["syncs"][0]["correlation_field"]
    assert parse_config(raw).syncs[0].external_id.local == "profileId"


def test_lead_or_contact_on_another_object_is_refused():
    raw = config(object="Contact", lead_or_contact={"match": "email"})
    assert problems_of(raw) == [
        "syncs[0] (sf-export).object: lead_or_contact creates Leads and updates Leads or Contacts; set object to "
        "Lead, not 'Contact'"
    ]


def test_lead_or_contact_matching_on_an_unmapped_attribute_is_refused():
    assert problems_of(config(lead_or_contact={"match": "mail"})) == [
        "syncs[0] (sf-export).lead_or_contact.match: 'mail' is not a mapped local attribute (mapped: email, lastName)"
    ]


def test_mapping_the_correlation_field_by_hand_is_refused():
    raw = config(
        fields=[{"remote": "Marketing_Profile_Id__c", "local": "pid"}, {"remote": "Email", "local": "email"}]
    )
    assert problems_of(raw) == [
        "syncs[0] (sf-export).correlation_field: 'Marketing_Profile_Id__c' is written by crmsync; do not map it "
        "in fields"
    ]


def test_the_same_remote_field_twice_is_refused():
    raw = config(fields=[{"remote": "Email", "local": "email"}, {"remote": "email", "local": "email2"}])
    assert problems_of(raw) == ["syncs[0] (sf-export).fields[1].remote: 'email' is already mapped by fields[0]"]


def test_an_unknown_operation_names_the_ones_this_version_supports():
    assert problems_of(config(operation="merge")) == [
        "syncs[0] (sf-export).operation: 'merge' is not one of 'import', 'export', 'import_deleted', 'delete', 'events', 'enumerations', 'two_way', 'initial_transfer'"
    ]


def test_max_concurrency_above_salesforce_long_request_limit_is_refused():
    assert problems_of(config(max_concurrency=50)) == [
        "syncs[0] (sf-export).max_concurrency: 50 is over 25, the most a salesforce connection takes at once"
    ]


def dynamics_config(**sync_overrides):
    sync_overrides.setdefault("object", "contact")
    raw = config(correlation_field="new_marketingprofileid", **sync_overrides)
    raw["connections"] = [
        {
            "name": "sf",
            "kind": "dynamics",
            "instance_url": "https://acme.crm.dynamics.com",
            "tenant_id": "acme.onmicrosoft.com",
            "secret": "crmsync/dyn",
        }
    ]
    return raw


def test_a_dynamics_export_may_write_up_to_52_batches_at_once_but_not_more():
    assert parse_config(dynamics_config(max_concurrency=52)).syncs[0].max_concurrency == 52
    assert problems_of(dynamics_config(max_concurrency=53)) == [
        "syncs[0] (sf-export).max_concurrency: Input should be less than or equal to 52"
    ]


def test_lead_or_contact_on_a_dynamics_export_is_refused_as_salesforce_only():
    raw = dynamics_config(object="Lead", lead_or_contact={"match": "email"})
    assert (
        "syncs[0] (sf-export).lead_or_contact: Salesforce-only (rule E5 routes people to Salesforce Leads and "
        "Contacts); a Dynamics export writes one table" in problems_of(raw)
    )


def test_bulk_settings_on_a_dynamics_export_are_refused_as_salesforce_only():
    assert problems_of(dynamics_config(bulk_threshold=5000)) == [
        "syncs[0] (sf-export).bulk_threshold: the bulk API is Salesforce-only (rule E2); Dynamics exports use "
        "$batch, 1,000 records a call"
    ]


def test_owner_sync_on_a_dynamics_export_is_refused():
    assert problems_of(dynamics_config(owner={"local": "owner"})) == [
        "syncs[0] (sf-export).owner: owner sync (rule E6) is Salesforce-only in this build"
    ]


def test_import_only_settings_on_an_export_are_unknown_settings():
    assert problems_of(config(page_size=500)) == [
        "syncs[0] (sf-export).page_size: unknown setting (check its spelling)"
    ]
