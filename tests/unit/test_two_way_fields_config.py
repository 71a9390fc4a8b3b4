"""Two-way field syncs in the configuration (SPEC B1-B2): per-field direction, priority and update blank
values; a priority or blank filling on a one-way field is refused with a message naming it; an opt-out sync
written before keeps its meaning."""

import pytest

from crmsync.config import TwoWaySync, parse_config
from crmsync.errors import ConfigurationError
from tests.unit.test_two_way_config import two_way as opt_out_sync


def config(*syncs):
    connection = {"name": "crm", "kind": "salesforce", "instance_url": "https://acme.example.com", "secret": "s"}
    return {"version": 1, "instance": "acme", "connections": [connection], "syncs": list(syncs)}


def two_way(*fields, **settings):
    return {
        "id": "people",
        "connection": "crm",
        "object": "Contact",
        "operation": "two_way",
        "fields": list(fields),
        **settings,
    }


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_a_field_defaults_to_both_directions_the_latest_change_and_no_blank_filling():
    (sync,) = parse_config(config(two_way({"remote": "Phone", "local": "phone"}))).syncs

    assert isinstance(sync, TwoWaySync)
    (field,) = sync.fields
    assert (field.direction, field.winner, field.update_blank_values) == ("both", "latest", False)
    assert (sync.opt_outs, sync.direction, sync.target.timezone) == (None, "both", "UTC")


@pytest.mark.parametrize("priority", ["crm", "marketing", "latest"])
def test_every_priority_is_accepted_with_blank_filling(priority):
    (sync,) = parse_config(
        config(two_way({"remote": "City", "local": "city", "priority": priority, "update_blank_values": True}))
    ).syncs

    assert (sync.fields[0].winner, sync.fields[0].update_blank_values) == (priority, True)


@pytest.mark.parametrize("direction", ["crm_to_marketing", "marketing_to_crm"])
def test_a_priority_on_a_one_way_field_is_refused_by_name(direction):
    (problem,) = problems_of(
        config(two_way({"remote": "City", "local": "city", "direction": direction, "priority": "crm"}))
    )

    assert problem.startswith("syncs[0] (people).fields[0]")
    assert f"city moves {direction} only" in problem
    assert "priority" in problem


def test_blank_filling_on_a_one_way_field_is_refused_by_name():
    (problem,) = problems_of(
        config(
            two_way(
                {"remote": "City", "local": "city", "direction": "crm_to_marketing", "update_blank_values": True}
            )
        )
    )

    assert "update_blank_values" in problem
    assert "direction: both" in problem


def test_an_unknown_priority_is_refused():
    (problem,) = problems_of(config(two_way({"remote": "City", "local": "city", "priority": "oldest"})))

    assert "priority" in problem


def test_a_two_way_sync_without_opt_outs_or_fields_is_refused():
    (problem,) = problems_of(config(two_way()))

    assert "needs opt_outs, fields, or both" in problem


def test_a_field_mapped_twice_is_refused():
    problems = problems_of(
        config(two_way({"remote": "City", "local": "city"}, {"remote": "MailingCity", "local": "city"}))
    )

    assert any("'city' is already mapped" in p for p in problems)


def test_an_opt_out_also_in_fields_is_refused():
    sync = two_way(
        {"remote": "HasOptedOutOfEmail", "local": "optin"},
        opt_outs={"fields": {"denyListEmail": "HasOptedOutOfEmail"}},
    )

    (problem,) = problems_of(config(sync))

    assert "mapped by opt_outs.fields" in problem


def test_a_display_label_cannot_be_synced_back():
    (problem,) = problems_of(config(two_way({"remote": "Industry", "local": "industry", "label": True})))

    assert "label" in problem


def test_an_opt_out_sync_written_before_keeps_its_direction_and_fields():
    raw = opt_out_sync(direction="marketing_to_crm", fields={"denyListEmail": "HasOptedOutOfEmail"})

    (sync,) = parse_config(config(raw)).syncs

    assert (sync.direction, sync.fields, sync.mapped()) == (
        "marketing_to_crm",
        [],
        {"denyListEmail": "HasOptedOutOfEmail"},
    )


def test_an_import_of_a_field_a_two_way_field_sync_owns_is_refused():
    importer = {**two_way({"remote": "City", "local": "city"}), "id": "contacts", "operation": "import"}

    (problem,) = problems_of(config(two_way({"remote": "City", "local": "town"}), importer))

    assert "owned by the two-way sync 'people'" in problem


def test_the_reconciliation_key_must_be_a_mapped_field():
    (problem,) = problems_of(config(two_way({"remote": "City", "local": "city"}, reconciliation={"key": "email"})))

    assert problem.startswith("syncs[0] (people).reconciliation.key")


def test_creating_crm_records_needs_a_key_that_finds_them_again():
    (problem,) = problems_of(config(two_way({"remote": "Email", "local": "email"}, create={"in_crm": True})))

    assert problem.startswith("syncs[0] (people).create.in_crm: needs reconciliation.key")


def test_records_are_created_both_ways_with_a_key():
    (sync,) = parse_config(
        config(
            two_way(
                {"remote": "Email", "local": "email"},
                create={"in_crm": True, "in_marketing": True},
                reconciliation={"key": "email"},
            )
        )
    ).syncs

    assert (sync.create.in_crm, sync.create.in_marketing, sync.reconciliation.key) == (True, True, "email")


def test_a_resource_target_takes_fields_only_and_creates_nothing_in_the_crm():
    problems = problems_of(
        config(
            two_way(
                {"remote": "Name", "local": "name"},
                target={"kind": "resource", "resource": "projects"},
                create={"in_crm": True},
            )
        )
    )

    assert problems == [
        "syncs[0] (people).create.in_crm: resource rows are keyed by CRM id, so they are created from CRM "
        "records only"
    ]


def test_an_upsert_key_is_for_records_created_in_the_crm_only():
    (problem,) = problems_of(
        config(
            two_way({"remote": "Email", "local": "email"}, create={"external_id": {"remote": "External_Id__c"}})
        )
    )

    assert "external_id: the upsert key of records created in the CRM" in problem
