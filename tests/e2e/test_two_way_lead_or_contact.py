"""A two-way sync of Salesforce Leads that creates records on the CRM side with the export's lead-or-contact
routing (SPEC B2, E5), end to end through the real `two-way` state machine on the Salesforce emulator.

A profile born on the marketing side that Salesforce knows by its e-mail address as a Contact is linked to
that Contact - as the export links it, `externalIds["sf-prod:Contact"]` - and the Contact updated with
`contact_fields`; one known as a Lead is linked to that Lead; any other becomes a new Lead. The Contact is
not a record of the Lead sync: its later marketing changes are left to a sync of Contact, and no Lead is ever
created for that person. (Lead-or-contact routing is Salesforce-only, as the export's: no Dynamics test.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.config import (
    FieldMapping,
    LeadOrContact,
    Reconciliation,
    TwoWayCreate,
    TwoWayField,
    TwoWaySync,
    WatermarkSettings,
)
from crmsync_local.marketing import marketing_profiles

pytestmark = pytest.mark.slow

SYNC = "sf-leads-two-way"


def _run(env) -> dict:
    time.sleep(1.05)  # the change index is read up to our clock's last whole second, excluded
    env.crm.control.set_clock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5), frozen=True)
    return dict(env.run(SYNC))


def _apply_lead_sync(env) -> None:
    """The example's configuration, its export of Leads replaced by a two-way sync of Leads that creates
    records in the CRM with lead-or-contact routing (the export maps the fields the sync now owns)."""
    sync = TwoWaySync(
        id=SYNC,
        operation="two_way",
        connection="sf-prod",
        object="Lead",
        fields=[
            TwoWayField(remote="Email", local="email"),
            TwoWayField(remote="LastName", local="lastName"),
            TwoWayField(remote="Company", local="company"),
        ],
        create=TwoWayCreate(
            in_crm=True,
            lead_or_contact=LeadOrContact(
                match="email",
                contact_fields=[
                    FieldMapping(remote="Email", local="email"),
                    FieldMapping(remote="LastName", local="lastName"),
                ],
            ),
        ),
        reconciliation=Reconciliation(key="email"),
        watermark=WatermarkSettings(overlap_seconds=3600, lag_seconds=0),
        max_concurrency=1,
    )
    syncs = [s for s in env.config.syncs if not (s.operation in ("import", "export") and s.object == "Lead")]
    env.config = env.config.model_copy(update={"syncs": [*syncs, sync]})
    env.operator.apply(env.config)
    env.crm.control.track_history("Lead", ["Email", "LastName", "Company"])


def test_profiles_created_on_the_marketing_side_follow_the_exports_lead_or_contact_routing(sync_env):
    control = sync_env.crm.control
    (contact,) = control.seed("Contact", [{"LastName": "Known", "Email": "cora@example.com"}])
    (lead,) = control.seed("Lead", [{"LastName": "Known", "Company": "X", "Email": "LEO@example.com"}])
    _apply_lead_sync(sync_env)
    store = marketing_profiles(sync_env.container)
    cora, leo, nina = store.create_local_many(
        [
            {"email": "Cora@example.com", "lastName": "Cora", "company": "Acme"},
            {"email": "leo@example.com", "lastName": "Leo", "company": "Acme"},
            {"email": "nina@example.org", "lastName": "Nina", "company": "Acme"},
        ],
        key_attribute="email",
    )

    summary = _run(sync_env)

    assert summary["status"] == "SUCCEEDED", summary
    profiles = sync_env.container.profiles
    assert profiles.get(cora)["externalIds"] == {"sf-prod:Contact": contact}  # linked as the export links it
    assert profiles.get(leo)["externalIds"] == {"sf-prod:Lead": lead}
    leads = {r["Id"]: r for r in control.records("Lead")}
    assert len(leads) == 2  # Leo's, and a new one for Nina; none for Cora, whom the CRM knows as a Contact
    assert leads[profiles.get(nina)["externalIds"]["sf-prod:Lead"]]["LastName"] == "Nina"
    assert leads[lead]["LastName"] == "Leo"
    (known,) = control.records("Contact")
    assert known["LastName"] == "Cora"  # updated in its form, with contact_fields
    assert (summary["created_in_crm"], summary["linked_to_contacts"]) == (1, 1)


def test_a_profile_linked_to_a_contact_is_left_to_a_sync_of_contact_afterwards(sync_env):
    control = sync_env.crm.control
    (contact,) = control.seed("Contact", [{"LastName": "Known", "Email": "cora@example.com"}])
    _apply_lead_sync(sync_env)
    store = marketing_profiles(sync_env.container)
    cora, nina = store.create_local_many(
        [
            {"email": "cora@example.com", "lastName": "Cora", "company": "Acme"},
            {"email": "nina@example.org", "lastName": "Nina", "company": "Acme"},
        ],
        key_attribute="email",
    )
    assert _run(sync_env)["status"] == "SUCCEEDED"
    store.update_local(cora, {"lastName": "Cora Changed"})
    store.update_local(nina, {"lastName": "Nina Changed"})

    summary = _run(sync_env)

    assert summary["status"] == "SUCCEEDED", summary
    assert control.records("Contact")[0]["LastName"] == "Cora"  # not this sync's record: left as it was
    assert [r["LastName"] for r in control.records("Lead")] == ["Nina Changed"]  # the Lead sync's own, both ways
    assert sync_env.container.profiles.get(cora)["externalIds"] == {"sf-prod:Contact": contact}
    assert (summary["created_in_crm"], summary["linked_to_contacts"]) == (0, 0)
