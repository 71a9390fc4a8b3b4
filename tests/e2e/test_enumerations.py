"""The enumerations operation (SPEC S2): picklists and option sets, local and global, and Boolean labels
into the Enumerations table; replace versus add-and-update; multi-selects refused; an import converting
option-set values to labels through an enumeration."""

from __future__ import annotations

from crmsync.config import load_config

SF = """
version: 1
instance: acme
connections:
  - { kind: salesforce, name: sf-prod, instance_url: "URL", secret: crmsync/sf-prod, ca_bundle: "CA" }
syncs:
  - id: channels
    operation: enumerations
    connection: sf-prod
    object: Subscription__c
    enumerations:
      - { name: channelReplaced, field: Channel__c, replace: true }
      - { name: channelMerged, field: Channel__c }
  - id: hobbies
    operation: enumerations
    connection: sf-prod
    object: Contact
    enumerations:
      - { name: hobbies, field: Interests__c }
"""


def apply(env, text: str) -> None:
    env.operator.apply(load_config(text.replace("URL", env.crm.url).replace("CA", env.crm.ca_bundle)))


def table(env, name: str) -> list[tuple[str, str, bool]]:
    return [(v.value, v.label, v.active) for v in env.container.enumerations.values(name)]


def test_salesforce_picklist_values_land_with_labels_order_and_the_active_flag(sync_env):
    summary = sync_env.run("sf-enumerations")
    assert summary["status"] == "SUCCEEDED"
    assert [v[0] for v in table(sync_env, "leadSource")] == [
        "Web",
        "Phone Inquiry",
        "Partner Referral",
        "Purchased List",
        "Other",
    ]
    assert summary["added"] == 10


def test_a_second_run_with_nothing_changed_writes_nothing(sync_env):
    sync_env.run("sf-enumerations")
    summary = sync_env.run("sf-enumerations")
    assert (summary["added"], summary["updated"], summary["unchanged"]) == (0, 0, 10)


def test_replace_removes_values_the_crm_dropped_and_merge_keeps_them(sync_env):
    apply(sync_env, SF)
    assert sync_env.run("channels")["status"] == "SUCCEEDED"
    assert ("Post", "Postal mail", True) in table(sync_env, "channelReplaced")
    sync_env.crm.control.retype_field(
        "Subscription__c",
        "Channel__c",
        type="picklist",
        picklistValues=["Email", {"value": "SMS", "label": "Text message"}, "WhatsApp"],
    )
    summary = sync_env.run("channels")
    replaced = [v[0] for v in table(sync_env, "channelReplaced")]
    merged = [v[0] for v in table(sync_env, "channelMerged")]
    assert replaced == ["Email", "SMS", "WhatsApp"]
    assert set(merged) == {"Email", "SMS", "WhatsApp", "Post", "Fax"}
    assert ("SMS", "Text message", True) in table(sync_env, "channelMerged")
    assert summary["removed"] == 2


def test_a_multi_select_picklist_is_refused_with_a_clear_message(sync_env):
    apply(sync_env, SF)
    summary = sync_env.run("hobbies")
    assert summary["status"] == "FAILED"
    assert "multi-select values are not supported by enumeration sync" in summary["error"]["message"]
    assert table(sync_env, "hobbies") == []


def test_record_type_values_come_from_the_ui_api(sync_env):
    described = sync_env.crm.control.define_object(
        "Contact",
        record_types=[{"developerName": "Partner", "picklists": {"LeadSource": ["Web", "Partner Referral"]}}],
    )
    record_type = next(r["recordTypeId"] for r in described["recordTypeInfos"] if r["developerName"] == "Partner")
    apply(
        sync_env,
        SF.replace(
            "field: Channel__c, replace: true }",
            "field: Channel__c, replace: true }\n"
            f"      - {{ name: partnerSources, field: LeadSource, record_type: {record_type} }}",
        )
        .replace("object: Subscription__c", "object: Contact")
        .replace("field: Channel__c", "field: LeadSource"),
    )
    assert sync_env.run("channels")["status"] == "SUCCEEDED"
    assert [v[0] for v in table(sync_env, "partnerSources")] == ["Web", "Partner Referral"]


def test_dynamics_local_and_global_option_sets_and_boolean_labels(dynamics_env):
    summary = dynamics_env.run("dyn-enumerations")
    assert summary["status"] == "SUCCEEDED"
    assert table(dynamics_env, "gender") == [("1", "Male", True), ("2", "Female", True)]
    assert table(dynamics_env, "emailPermission") == [("0", "Allow", True), ("1", "Do Not Allow", True)]
    assert [v[1] for v in table(dynamics_env, "channel")] == ["Email", "SMS", "Postal Mail"]


DYN_IMPORT = """
version: 1
instance: acme
connections:
  - kind: dynamics
    name: dyn-prod
    instance_url: "URL"
    tenant_id: "TENANT"
    authority: "AUTHORITY"
    secret: crmsync/dyn-prod
    ca_bundle: "CA"
syncs:
  - id: dyn-enumerations
    operation: enumerations
    connection: dyn-prod
    object: contact
    enumerations:
      - { name: gender, field: gendercode }
  - id: dyn-gender
    operation: import
    connection: dyn-prod
    object: contact
    fields:
      - { remote: emailaddress1, local: email }
      - { remote: gendercode, local: gender, enumeration: gender }
    reconciliation: { key: email }
    watermark: { mode: modified }
"""


def test_an_import_converts_option_set_values_to_labels_through_the_enumeration(dynamics_env):
    crm = dynamics_env.crm
    text = (
        DYN_IMPORT.replace("URL", crm.url)
        .replace("TENANT", crm.tenant_id)
        .replace("AUTHORITY", crm.authority)
        .replace("CA", crm.ca_bundle)
    )
    dynamics_env.operator.apply(load_config(text))
    dynamics_env.seed_contacts(2, gendercode=2)
    refused = dynamics_env.run("dyn-gender")
    assert refused["status"] == "FAILED"
    assert "has no values yet" in refused["error"]["message"]
    assert dynamics_env.run("dyn-enumerations")["status"] == "SUCCEEDED"
    assert dynamics_env.run("dyn-gender")["status"] == "SUCCEEDED"
    assert {p["attrs"].get("gender") for p in dynamics_env.profiles()} == {"Female"}
