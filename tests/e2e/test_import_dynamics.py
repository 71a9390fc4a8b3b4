"""The real import state machine, in the local stack, against the Dynamics 365 emulator (SPEC I1-I12, D1,
D2, R1, R2): contacts into profiles by change tracking, a custom entity into its resource table."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from crmsync.config import ImportSync
from crmsync.domain.windows import format_watermark
from crmsync.services import imports

from .conftest import T0

pytestmark = pytest.mark.slow
DAY1 = T0 + timedelta(days=1)
CONTACTS = r"GET /api/data/v9\.2/contacts"


def by_email(env):
    return {p["attrs"]["email"]: p for p in env.profiles()}


def reapply(env, sync_id, **changes):
    """Apply examples/syncs.yaml with one sync changed, as an operator editing the file would."""
    syncs = [
        ImportSync.model_validate({**s.model_dump(by_alias=True, exclude_none=True), **changes})
        if s.id == sync_id
        else s
        for s in env.config.syncs
    ]
    env.operator.apply(env.config.model_copy(update={"syncs": syncs}))


def test_first_run_reads_every_contact_by_change_tracking_and_stores_the_delta_link(dynamics_env):
    ids = dynamics_env.seed_contacts(30)
    summary = dynamics_env.run("dyn-contacts")
    assert summary["status"] == "SUCCEEDED"
    assert (summary["read"], summary["created"], summary["rejected"]) == (30, 30, 0)
    assert summary["change_tracking"] == "initial"
    assert summary["window"]["end"] == format_watermark(DAY1 - timedelta(seconds=60))
    mark = dynamics_env.watermark("dyn-contacts")
    assert mark.text == "2024/03/02 08:59:00"
    assert mark.delta_link.startswith(f"{dynamics_env.crm.api_url}/contacts?")
    assert sorted(p["externalId"] for p in dynamics_env.profiles()) == sorted(ids)


def test_contacts_land_in_profiles_with_external_id_contactid_labels_and_lookups(dynamics_env):
    (account,) = dynamics_env.crm.control.put_records("accounts", [{"name": "Contoso"}])
    (contact,) = dynamics_env.seed_contacts(
        1,
        birthdate="1990-02-28",
        preferredcontactmethodcode=2,
        donotemail=True,
        _parentcustomerid_value=account,
        **{"_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account"},
    )
    dynamics_env.run("dyn-contacts")
    (profile,) = dynamics_env.profiles()
    assert profile["externalId"] == contact
    assert profile["externalIds"] == {"dyn-prod:contact": contact}
    assert profile["attrs"]["preferredChannel"] == "Email"
    assert profile["attrs"]["companyCrmId"] == account
    assert (profile["attrs"]["birthDate"], profile["attrs"]["denyListEmail"]) == ("1990-02-28", True)
    assert profile["attrs"]["crmCreatedOn"] == "2024-03-01"


def test_the_delta_link_brings_creates_updates_and_deletes_only(dynamics_env):
    ids = dynamics_env.seed_contacts(20)
    dynamics_env.run("dyn-contacts")
    first_link = dynamics_env.watermark("dyn-contacts").delta_link
    dynamics_env.crm.control.advance_clock(600)
    dynamics_env.crm.control.put_records("contacts", [{"contactid": i, "firstname": "Changed"} for i in ids[:3]])
    dynamics_env.seed_contacts(2, prefix="new")
    dynamics_env.crm.control.delete_record("contacts", ids[5])

    summary = dynamics_env.run("dyn-contacts")

    assert summary["change_tracking"] == "delta"
    assert (summary["read"], summary["updated"], summary["created"], summary["deleted"]) == (5, 3, 2, 1)
    profiles = {p["externalId"]: p for p in dynamics_env.profiles()}
    assert sum(p["attrs"]["firstName"] == "Changed" for p in profiles.values()) == 3
    assert profiles[ids[5]]["deletedInCrm"] is True
    assert profiles[ids[5]]["deletedInCrmAt"].startswith("20")
    assert not any(p.get("deletedInCrm") for i, p in profiles.items() if i != ids[5])
    assert dynamics_env.watermark("dyn-contacts").delta_link != first_link


def test_a_deletion_of_a_record_never_imported_is_counted_not_an_error(dynamics_env):
    dynamics_env.seed_contacts(2)
    dynamics_env.run("dyn-contacts")
    (short_lived,) = dynamics_env.seed_contacts(1, prefix="brief")
    dynamics_env.crm.control.delete_record("contacts", short_lived)
    dynamics_env.crm.control.advance_clock(600)

    summary = dynamics_env.run("dyn-contacts")

    assert summary["status"] == "SUCCEEDED"
    assert (summary["deleted"], summary["deleted_unknown"]) == (0, 1)


def test_an_expired_delta_link_falls_back_to_a_full_read_and_id_comparison_losing_nothing(
    dynamics_env, monkeypatch
):
    monkeypatch.setattr(imports, "SWEEP_CHUNK", 2)  # several sweep steps over the 5 known ids
    ids = dynamics_env.seed_contacts(5)
    dynamics_env.run("dyn-contacts")
    expired_link = dynamics_env.watermark("dyn-contacts").delta_link
    dynamics_env.crm.control.advance_clock(600)
    dynamics_env.crm.control.put_records("contacts", [{"contactid": ids[0], "firstname": "Changed"}])
    (created,) = dynamics_env.seed_contacts(1, prefix="new")
    dynamics_env.crm.control.delete_record("contacts", ids[1])
    dynamics_env.crm.control.expire_delta_tokens()

    summary = dynamics_env.run("dyn-contacts")

    assert (summary["status"], summary["change_tracking"]) == ("SUCCEEDED", "resync")
    assert (summary["read"], summary["created"], summary["updated"], summary["unchanged"]) == (5, 1, 1, 3)
    assert summary["deleted"] == 1
    profiles = {p["externalId"]: p for p in dynamics_env.profiles()}
    assert profiles[ids[1]]["deletedInCrm"] is True
    assert profiles[ids[0]]["attrs"]["firstName"] == "Changed"
    assert created in profiles
    assert dynamics_env.watermark("dyn-contacts").delta_link != expired_link

    dynamics_env.crm.control.advance_clock(600)
    following = dynamics_env.run("dyn-contacts")
    assert (following["change_tracking"], following["read"], following["deleted"]) == ("delta", 0, 0)


def test_a_watermark_set_by_hand_drops_the_delta_link_and_the_next_run_compares_ids(dynamics_env):
    ids = dynamics_env.seed_contacts(3)
    dynamics_env.run("dyn-contacts")
    dynamics_env.operator.set_watermark("dyn-contacts", "2024/03/01 00:00:00")
    dynamics_env.crm.control.delete_record("contacts", ids[2])

    summary = dynamics_env.run("dyn-contacts")

    assert (summary["change_tracking"], summary["read"], summary["deleted"]) == ("resync", 2, 1)


def test_after_a_watermark_reset_the_full_read_also_compares_ids(dynamics_env):
    ids = dynamics_env.seed_contacts(3)
    dynamics_env.run("dyn-contacts")
    dynamics_env.operator.reset_watermark("dyn-contacts")
    dynamics_env.crm.control.delete_record("contacts", ids[0])

    summary = dynamics_env.run("dyn-contacts")

    assert (summary["change_tracking"], summary["read"], summary["unchanged"], summary["deleted"]) == (
        "resync",
        2,
        2,
        1,
    )


def test_a_delta_link_of_another_table_is_refused_before_any_data_moves(dynamics_env):
    dynamics_env.seed_contacts(2)
    dynamics_env.run("dyn-contacts")
    before = dynamics_env.watermark("dyn-contacts")
    dynamics_env.crm.control.put_records("leads", [{"lastname": "Lead", "emailaddress1": "lead@example.net"}])
    reapply(
        dynamics_env,
        "dyn-contacts",
        object="lead",
        fields=[{"remote": "lastname", "local": "lastName"}, {"remote": "emailaddress1", "local": "email"}],
    )

    summary = dynamics_env.run("dyn-contacts")

    assert (summary["status"], summary["error"]["type"]) == ("FAILED", "ConfigurationError")
    assert "the delta link reads 'contacts', not 'leads'" in summary["error"]["message"]
    assert "crmsync watermark reset dyn-contacts" in summary["error"]["message"]
    after = dynamics_env.watermark("dyn-contacts")
    assert (after.text, after.delta_link) == (before.text, before.delta_link)
    assert len(dynamics_env.profiles()) == 2


def test_a_429_burst_with_retry_after_is_recovered_by_the_state_machine(dynamics_env):
    dynamics_env.seed_contacts(10)
    dynamics_env.crm.control.add_fault(CONTACTS, status=429, times=6, headers={"Retry-After": "0"})
    summary = dynamics_env.run("dyn-contacts")
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 10)


def test_a_429_storm_longer_than_the_retry_budget_fails_the_run_and_keeps_watermark_and_delta_link(
    dynamics_env,
):
    ids = dynamics_env.seed_contacts(3)
    dynamics_env.run("dyn-contacts")
    before = dynamics_env.watermark("dyn-contacts")
    dynamics_env.crm.control.advance_clock(3600)
    dynamics_env.crm.control.put_records("contacts", [{"contactid": ids[0], "firstname": "Changed"}])
    dynamics_env.crm.control.add_fault(CONTACTS, status=429, times=1000, headers={"Retry-After": "0"})

    failed = dynamics_env.run("dyn-contacts")

    assert (failed["status"], failed["error"]["type"]) == ("FAILED", "CrmRateLimited")
    after = dynamics_env.watermark("dyn-contacts")
    assert (after.text, after.delta_link) == (before.text, before.delta_link)
    dynamics_env.crm.control.clear_faults()
    rerun = dynamics_env.run("dyn-contacts")
    assert (rerun["status"], rerun["change_tracking"], rerun["updated"]) == ("SUCCEEDED", "delta", 1)


def test_a_custom_entity_lands_in_its_resource_table_with_its_dynamics_id_first_and_incremental(dynamics_env):
    (contact,) = dynamics_env.seed_contacts(1)
    rows = [
        {"new_name": "Newsletter", "new_channel": 100_000_001, "new_optin": True, "_new_contactid_value": contact},
        {"new_name": "Offers", "new_channel": 100_000_000, "new_optin": False, "_new_contactid_value": contact},
        {"new_name": "Events", "new_channel": 100_000_002, "new_optin": True, "_new_contactid_value": contact},
    ]
    newsletter, offers, events = dynamics_env.crm.control.put_records("new_subscriptions", rows)

    first = dynamics_env.run("dyn-subscriptions")
    dynamics_env.crm.control.advance_clock(600)
    dynamics_env.crm.control.put_records("new_subscriptions", [{"new_subscriptionid": offers, "new_optin": True}])
    dynamics_env.crm.control.delete_record("new_subscriptions", events)
    second = dynamics_env.run("dyn-subscriptions")

    assert (first["status"], first["created"], first["change_tracking"]) == ("SUCCEEDED", 3, "initial")
    assert (second["read"], second["updated"], second["deleted"]) == (1, 1, 1)
    stored = {r["sk"]: r for r in dynamics_env.container.resources.all("dyn-subscriptions")}
    assert set(stored) == {newsletter, offers, events}
    assert stored[newsletter]["attrs"] == {
        "name": "Newsletter",
        "channel": "SMS",
        "optIn": True,
        "contactCrmId": contact,
        "subscribedOn": None,
    }
    assert stored[offers]["attrs"]["optIn"] is True
    assert stored[events]["deletedInCrm"] is True


def test_a_sync_with_a_filter_reads_a_modifiedon_window_first_and_incremental(dynamics_env):
    reapply(dynamics_env, "dyn-contacts", filter={"field": "donotemail", "op": "eq", "value": 0})
    ids = dynamics_env.seed_contacts(4, donotemail=False)
    dynamics_env.seed_contacts(2, prefix="out", donotemail=True)
    first = dynamics_env.run("dyn-contacts")
    dynamics_env.crm.control.advance_clock(600)
    dynamics_env.crm.control.put_records("contacts", [{"contactid": ids[0], "firstname": "Changed"}])
    dynamics_env.crm.control.advance_clock(120)
    second = dynamics_env.run("dyn-contacts")

    assert (first["change_tracking"], first["read"], first["created"]) == (None, 4, 4)
    assert (second["read"], second["updated"]) == (1, 1)
    assert second["window"]["start"] == format_watermark(DAY1 - timedelta(seconds=360))
    assert dynamics_env.watermark("dyn-contacts").delta_link is None


def test_a_filter_field_that_is_not_an_attribute_is_refused_before_data_moves(dynamics_env):
    reapply(dynamics_env, "dyn-contacts", filter={"field": "donotmail", "op": "eq", "value": 0})
    dynamics_env.seed_contacts(3)
    summary = dynamics_env.run("dyn-contacts")
    assert (summary["status"], summary["error"]["type"]) == ("FAILED", "ConfigurationError")
    assert "contact has no field 'donotmail' (did you mean donotemail?)" in summary["error"]["message"]
    assert dynamics_env.profiles() == []
    assert dynamics_env.watermark("dyn-contacts") is None


def test_a_population_of_guids_imports_exactly_those(dynamics_env):
    ids = dynamics_env.seed_contacts(6)
    summary = dynamics_env.run(
        "dyn-contacts", population={"ids": [ids[1].upper(), ids[4], str(uuid.uuid4()), "not-a-guid"]}
    )
    assert (summary["read"], summary["created"]) == (2, 2)
    assert {r["errorSymbol"] for r in dynamics_env.operator.rejects("dyn-contacts")} == {"NOT_FOUND", "INVALID_ID"}
    assert {p["externalId"] for p in dynamics_env.profiles()} == {ids[1], ids[4]}
    assert dynamics_env.watermark("dyn-contacts") is None
