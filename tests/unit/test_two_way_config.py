"""Two-way (opt-out) syncs in the configuration: direction, the customer's mapping, boolean fields only, and
a field a two-way sync owns written by nobody else (SPEC O1, O2)."""

import pytest

from crmsync.config import TwoWaySync, parse_config
from crmsync.errors import ConfigurationError


def config(*syncs, kind="salesforce"):
    connection = {"name": "crm", "kind": kind, "instance_url": "https://acme.example.com", "secret": "s"}
    if kind == "dynamics":
        connection["tenant_id"] = "acme.onmicrosoft.com"
    return {"version": 1, "instance": "acme", "connections": [connection], "syncs": list(syncs)}


def two_way(object_name="Contact", **opt_outs):
    fields = opt_outs.pop("fields", {"denyListEmail": "HasOptedOutOfEmail", "denyListPhone": "DoNotCall"})
    return {
        "id": "optouts",
        "connection": "crm",
        "object": object_name,
        "operation": "two_way",
        "opt_outs": {"fields": fields, **opt_outs},
    }


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_a_two_way_sync_parses_with_both_directions_and_a_two_second_tolerance():
    (sync,) = parse_config(config(two_way())).syncs

    assert isinstance(sync, TwoWaySync)
    assert (sync.opt_outs.direction, sync.tolerance_seconds) == ("both", 2)
    assert sync.watermark_option("acme") == "LASTTWOWAY_acme_optouts"


@pytest.mark.parametrize("direction", ["both", "crm_to_marketing", "marketing_to_crm", "disabled"])
def test_every_direction_is_accepted(direction):
    (sync,) = parse_config(config(two_way(direction=direction))).syncs

    assert sync.opt_outs.direction == direction


def test_an_unknown_marketing_attribute_is_refused():
    (problem,) = problems_of(config(two_way(fields={"denyListCarrierPigeon": "HasOptedOutOfEmail"})))

    assert problem.startswith("syncs[0] (optouts).opt_outs.fields")


def test_a_non_boolean_standard_field_is_refused():
    (problem,) = problems_of(config(two_way(fields={"denyListEmail": "Email"})))

    assert "opt_outs.fields.denyListEmail" in problem
    assert "rule O2" in problem


def test_the_dynamics_do_not_flags_are_accepted():
    fields = {"denyListEmail": "donotemail", "denyList": "donotsendmm", "denyListPostalMail": "donotpostalmail"}

    (sync,) = parse_config(config(two_way("contact", fields=fields), kind="dynamics")).syncs

    assert sync.owned_fields()["donotsendmm"] == "denyList"


def test_a_custom_checkbox_is_left_to_the_crm_describe():
    (sync,) = parse_config(config(two_way(fields={"denyListMobile": "SMS_Opt_Out__c"}))).syncs

    assert sync.opt_outs.fields == {"denyListMobile": "SMS_Opt_Out__c"}


def test_one_crm_field_mapped_twice_is_refused():
    (problem,) = problems_of(config(two_way(fields={"denyListEmail": "DoNotCall", "denyListPhone": "DoNotCall"})))

    assert "mapped twice" in problem


def test_an_import_of_the_same_object_that_maps_an_owned_field_is_refused():
    importer = {
        "id": "contacts-in",
        "connection": "crm",
        "object": "Contact",
        "operation": "import",
        "fields": [{"local": "email", "remote": "Email"}, {"local": "optOut", "remote": "hasoptedoutofemail"}],
    }

    (problem,) = problems_of(config(two_way(), importer))

    assert problem.startswith("syncs[1] (contacts-in).fields[1].remote:")
    assert "rule O3" in problem


def test_an_import_of_another_object_may_map_the_same_field_name():
    importer = {
        "id": "leads-in",
        "connection": "crm",
        "object": "Lead",
        "operation": "import",
        "fields": [{"local": "optOut", "remote": "HasOptedOutOfEmail"}],
    }

    assert len(parse_config(config(two_way(), importer)).syncs) == 2
