"""Schema drift on every run (SPEC S3): a deleted or retyped mapped field fails the next run before anything
is read, naming the field; a new CRM field is reported in the run summary."""

from __future__ import annotations

from crmsync.config import load_config

SYNC = """
version: 1
instance: acme
connections:
  - { kind: salesforce, name: sf-prod, instance_url: "URL", secret: crmsync/sf-prod, ca_bundle: "CA" }
syncs:
  - id: drift-contacts
    operation: import
    connection: sf-prod
    object: Contact
    fields:
      - { remote: Email, local: email }
      - { remote: Score__c, local: score }
    target: { kind: profiles }
"""


def apply(env, text: str = SYNC) -> None:
    crm = env.crm
    env.operator.apply(load_config(text.replace("URL", crm.url).replace("CA", crm.ca_bundle)))


def with_score(env) -> None:
    env.crm.control.define_object("Contact", fields=[{"name": "Score__c", "type": "double"}])
    apply(env)
    env.seed_contacts(3, Score__c=7.5)


def queries(env) -> int:
    calls = env.crm.control.stats()["calls"]
    return sum(count for name, count in calls.items() if "/query" in name)


def test_a_mapped_field_deleted_in_the_crm_fails_the_next_run_before_reading(sync_env):
    with_score(sync_env)
    assert sync_env.run("drift-contacts")["status"] == "SUCCEEDED"
    sync_env.crm.control.remove_field("Contact", "Score__c")
    sync_env.crm.control.reset_stats()
    summary = sync_env.run("drift-contacts")
    assert summary["status"] == "FAILED"
    assert "Score__c" in summary["error"]["message"]
    assert queries(sync_env) == 0


def test_a_mapped_field_whose_type_changed_fails_the_next_run_naming_both_types(sync_env):
    with_score(sync_env)
    assert sync_env.run("drift-contacts")["status"] == "SUCCEEDED"
    sync_env.crm.control.retype_field("Contact", "Score__c", type="string")
    sync_env.crm.control.reset_stats()
    summary = sync_env.run("drift-contacts")
    assert summary["status"] == "FAILED"
    assert "Score__c changed type in the CRM since the last run: double -> string" in summary["error"]["message"]
    assert queries(sync_env) == 0


def test_applying_the_sync_again_accepts_the_new_type(sync_env):
    with_score(sync_env)
    sync_env.run("drift-contacts")
    sync_env.crm.control.retype_field("Contact", "Score__c", type="string")
    assert sync_env.run("drift-contacts")["status"] == "FAILED"
    apply(sync_env, SYNC.replace("local: score }", "local: score, type: string }"))
    assert sync_env.run("drift-contacts")["status"] == "SUCCEEDED"


def test_a_new_crm_field_is_reported_in_the_run_summary(sync_env):
    with_score(sync_env)
    assert sync_env.run("drift-contacts")["new_fields"] == []
    sync_env.crm.control.define_object("Contact", fields=[{"name": "Loyalty_Tier__c", "type": "string"}])
    summary = sync_env.run("drift-contacts")
    assert summary["status"] == "SUCCEEDED"
    assert summary["new_fields"] == ["Loyalty_Tier__c"]
