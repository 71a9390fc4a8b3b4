"""Events syncs in the configuration (SPEC M1-M4) and which types `config apply` switches on."""

from __future__ import annotations

import pytest

from crmsync.config import EventsSync, parse_config
from crmsync.errors import ConfigurationError
from crmsync.services.events import switched_on

CONNECTIONS = [
    {"name": "sf", "kind": "salesforce", "instance_url": "https://acme.my.salesforce.com", "secret": "crmsync/sf"},
    {
        "name": "dyn",
        "kind": "dynamics",
        "instance_url": "https://acme.crm4.dynamics.com",
        "tenant_id": "acme.onmicrosoft.com",
        "secret": "crmsync/dyn",
    },
]


def config(connection="sf", **sync):
    base = {"id": "events", "operation": "events", "connection": connection, "object": "Marketing_Event__c"}
    return {"version": 1, "connections": CONNECTIONS, "syncs": [{**base, **sync}]}


def problems_of(raw):
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def events(**changes):
    return EventsSync.model_validate(
        {"id": "e", "operation": "events", "connection": "sf", "object": "Marketing_Event__c", **changes}
    )


def test_an_events_sync_takes_every_type_and_the_crms_batch_size_by_default():
    sync = parse_config(config()).syncs[0]
    assert sync.types.on() == {"send", "open", "click", "bounce"}
    assert (sync.records_per_call("salesforce"), sync.records_per_call("dynamics")) == (200, 100)


def test_an_events_sync_has_no_schedule():
    assert problems_of(config(schedule="rate(1 hour)")) == [
        "syncs[0] (events).schedule: events are pushed as they arrive; an events sync has no schedule"
    ]


def test_more_than_200_records_a_call_is_refused_on_salesforce():
    assert problems_of(config(batch_size=500)) == [
        "syncs[0] (events).batch_size: 500 is over 200, the most a salesforce call takes (Salesforce sObject "
        "Collections: 200; Dataverse $batch: 1,000 parts)"
    ]


def test_500_parts_a_batch_are_accepted_on_dynamics():
    assert parse_config(config("dyn", object="cr_marketingevent", batch_size=500)).syncs[0].batch_size == 500


def test_an_owner_must_look_like_a_crm_user_id():
    assert problems_of(config(owner="alice"))[0].startswith(
        "syncs[0] (events).owner: 'alice' is not a CRM user id"
    )


def test_a_field_name_can_be_replaced_and_the_others_keep_their_default():
    names = events(crm_fields={"at": "Happened_At__c"}).field_names("salesforce")
    assert (names["at"], names["subject"]) == ("Happened_At__c", "Name")


def test_a_new_events_sync_switches_every_type_on():
    assert switched_on(None, events(types={"bounce": False})) == {"send", "open", "click"}


def test_a_type_turned_on_is_switched_on():
    assert switched_on(events(types={"open": False}), events()) == {"open"}


def test_applying_the_same_switches_again_switches_nothing_on():
    assert switched_on(events(), events()) == set()


def test_a_disabled_sync_switches_nothing_on():
    assert switched_on(None, events(enabled=False)) == set()


def test_enabling_a_sync_again_switches_its_types_on():
    assert switched_on(events(enabled=False), events(types={"send": False})) == {"open", "click", "bounce"}
