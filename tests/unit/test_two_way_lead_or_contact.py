"""A two-way sync's `create.lead_or_contact` (SPEC B2 with E5): the export's routing for the records a
two-way sync of Leads creates in the CRM - the configuration it takes, its check against the CRM's schema, and
where each profile goes (the export's `route_lead_or_contact` over one batched look-up per object)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from crmsync.config import TwoWaySync, parse_config
from crmsync.domain.records import RejectCode
from crmsync.domain.routing import Route
from crmsync.errors import ConfigurationError
from crmsync.services.schema import objects_of
from crmsync.services.two_way import TwoWayRun, _linked_in_another_form, _routes, _routing
from tests.unit.test_batch_exporter import SCHEMA, FakeCrm


def config(*syncs, kind="salesforce"):
    connection = {"name": "sf", "kind": kind, "instance_url": "https://acme.example.com", "secret": "s"}
    if kind == "dynamics":
        connection["tenant_id"] = "acme.onmicrosoft.com"
    return {"version": 1, "instance": "acme", "connections": [connection], "syncs": list(syncs)}


def lead_sync(object_name="Lead", *, fields=None, key="email", **create):
    return {
        "id": "leads",
        "connection": "sf",
        "object": object_name,
        "operation": "two_way",
        "fields": fields
        or [
            {"remote": "Email", "local": "email"},
            {"remote": "LastName", "local": "lastName"},
            {"remote": "Company", "local": "company", "direction": "crm_to_marketing"},
        ],
        "reconciliation": {"key": key},
        "create": {"in_crm": True, "lead_or_contact": {"match": "email"}, **create},
    }


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def parsed(raw) -> TwoWaySync:
    (sync,) = parse_config(raw).syncs
    assert isinstance(sync, TwoWaySync)
    return sync


# -- configuration ------------------------------------------------------------------------------------
def test_a_lead_sync_creating_in_the_crm_takes_the_exports_lead_or_contact_routing():
    sync = parsed(config(lead_sync()))

    assert sync.create.lead_or_contact is not None
    assert (sync.create.lead_or_contact.match, sync.create.lead_or_contact.contact_fields) == ("email", None)


def test_a_creating_sync_without_lead_or_contact_creates_in_its_own_object_as_before():
    raw = lead_sync()
    del raw["create"]["lead_or_contact"]

    assert parsed(config(raw)).create.lead_or_contact is None


def test_lead_or_contact_without_creation_in_the_crm_is_refused():
    (problem,) = problems_of(config(lead_sync(in_crm=False)))

    assert problem.startswith("syncs[0] (leads).create")
    assert "lead_or_contact: routes the records created in the CRM; set in_crm: true" in problem


def test_lead_or_contact_with_an_external_id_upsert_is_refused():
    (problem,) = problems_of(config(lead_sync(external_id={"remote": "Profile__c"})))

    assert "lead_or_contact" in problem
    assert "does not work with external_id" in problem


def test_lead_or_contact_on_another_object_than_lead_is_refused_as_the_export_refuses_it():
    assert problems_of(config(lead_sync("Contact"))) == [
        "syncs[0] (leads).object: create.lead_or_contact creates Leads and updates Leads or Contacts; set object "
        "to Lead, not 'Contact'"
    ]


def test_lead_or_contact_matching_an_unmapped_attribute_is_refused():
    raw = lead_sync()
    raw["create"]["lead_or_contact"]["match"] = "mail"

    assert "syncs[0] (leads).create.lead_or_contact.match: 'mail' is not a mapped local attribute" in " ".join(
        problems_of(config(raw))
    )


def test_lead_or_contact_matching_another_attribute_than_the_reconciliation_key_is_refused():
    raw = lead_sync(key="lastName")

    assert problems_of(config(raw)) == [
        "syncs[0] (leads).create.lead_or_contact.match: 'email' must be reconciliation.key ('lastName'): the "
        "e-mail address finds the Lead or Contact the CRM already has, in place of the key"
    ]


def test_lead_or_contact_on_a_dynamics_two_way_sync_is_refused_as_salesforce_only():
    raw = lead_sync()
    assert problems_of(config(raw, kind="dynamics")) == [
        "syncs[0] (leads).create.lead_or_contact: Salesforce-only (rule E5 routes people to Salesforce Leads and "
        "Contacts); a Dynamics two-way sync writes one table"
    ]


# -- against the CRM's schema -------------------------------------------------------------------------
def resolved(raw):
    sync = parsed(config(raw))
    connector = SimpleNamespace(describe=SCHEMA.__getitem__)
    return _routing(sync, SCHEMA["Lead"], connector, "salesforce")


def test_people_found_as_contacts_get_the_syncs_fields_that_move_to_the_crm_by_default():
    contact, targets = resolved(lead_sync())

    assert [(f.local, f.remote, f.direction) for f in contact] == [
        ("email", "Email", "marketing_to_crm"),
        ("lastName", "LastName", "marketing_to_crm"),
    ]  # Company moves crm_to_marketing only: not written, not required on Contact
    assert [(t["object"], t["email_field"], t["converted_field"]) for t in targets] == [
        ("Lead", "Email", "IsConverted"),
        ("Contact", "Email", None),
    ]


def test_a_contact_field_the_contact_lacks_is_refused_before_anything_is_read():
    raw = lead_sync()
    raw["create"]["lead_or_contact"]["contact_fields"] = [{"remote": "Company", "local": "company"}]

    with pytest.raises(ConfigurationError) as caught:
        resolved(raw)

    assert caught.value.problems == [
        "sync leads: create.lead_or_contact.contact_fields[0].remote: Contact has no field 'Company'"
    ]


# -- where each profile goes --------------------------------------------------------------------------
def run_for(raw=None) -> TwoWayRun:
    _, targets = resolved(raw or lead_sync())
    return TwoWayRun.model_construct(
        object="Lead", connection="sf", id_field="Id", routing=targets, key_remote="Email", upsert_field=None
    )


def row(profile_id, email):
    return {"profileId": profile_id, "key": email, "insert": {"Email": email, "LastName": profile_id}}


def test_each_profile_goes_to_the_form_the_crm_knows_it_in_and_unknown_people_become_leads():
    crm = FakeCrm()
    contact = crm.seed("Contact", Email="cora@example.com")
    lead = crm.seed("Lead", Email="LEO@example.com")
    crm.seed("Lead", Email="cora@example.com")  # a Contact wins over a Lead
    crm.seed("Lead", Email="old@example.com", IsConverted=True)  # a converted Lead is not a match

    routes, rejects = _routes(
        run_for(),
        crm,
        [row("p1", "Cora@example.com"), row("p2", "leo@example.com"), row("p3", "old@example.com")],
        str,
    )

    assert rejects == []
    assert routes == {
        "p1": Route("Contact", "update", contact),
        "p2": Route("Lead", "update", lead),
        "p3": Route("Lead", "insert"),
    }


def test_the_batch_looks_emails_up_once_per_object():
    crm = FakeCrm()

    _routes(run_for(), crm, [row(f"p{i}", f"p{i}@example.com") for i in range(50)], str)

    assert crm.calls == [("find", "Lead", "Email"), ("find", "Contact", "Email")]


def test_two_contacts_with_the_address_refuse_the_profile_as_ambiguous():
    crm = FakeCrm()
    crm.seed("Contact", Email="twin@example.com")
    crm.seed("Contact", Email="twin@example.com")

    routes, (reject,) = _routes(run_for(), crm, [row("p1", "twin@example.com"), row("p2", "new@example.com")], str)

    assert routes == {"p2": Route("Lead", "insert")}
    assert (reject.error_symbol, reject.profile_id) == (RejectCode.MULTIPLE_MATCHES.value, "p1")
    assert "twin@example.com" not in reject.error_message  # ids and counts, never the address


def test_without_lead_or_contact_a_profile_finds_its_object_by_the_reconciliation_key_as_before():
    crm = FakeCrm()
    crm.seed("Contact", Email="cora@example.com")
    lead = crm.seed("Lead", Email="leo@example.com")
    run = TwoWayRun.model_construct(
        object="Lead", connection="sf", id_field="Id", routing=[], key_remote="Email", upsert_field=None
    )

    routes, _ = _routes(run, crm, [row("p1", "cora@example.com"), row("p2", "leo@example.com")], str)

    assert routes == {"p1": Route("Lead", "insert"), "p2": Route("Lead", "update", lead)}
    assert crm.calls == [("find", "Lead", "Email")]


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ({"sf:Contact": "003A"}, True),
        ({}, False),
        ({"other:Contact": "003A"}, False),
    ],
    ids=["linked to a Contact", "unlinked", "linked to another connection's Contact"],
)
def test_a_profile_linked_to_a_contact_is_not_one_to_create_as_a_lead(links, expected):
    assert _linked_in_another_form(run_for(), {"profileId": "p1", "externalIds": links}) is expected


def test_without_lead_or_contact_a_profile_linked_to_a_contact_is_still_one_to_create():
    run = TwoWayRun.model_construct(object="Lead", connection="sf", routing=[])

    assert _linked_in_another_form(run, {"profileId": "p1", "externalIds": {"sf:Contact": "003A"}}) is False


def test_schema_pull_saves_contact_too_for_a_sync_that_routes_to_contacts():
    assert objects_of(parse_config(config(lead_sync())), "sf") == ["Lead", "Contact"]
