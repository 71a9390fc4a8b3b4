"""The real import state machine, in the local stack, against the Salesforce emulator (SPEC I1-I12, R1, R2)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crmsync.domain.windows import format_watermark
from crmsync_local.marketing import marketing_profiles

from .conftest import T0

pytestmark = pytest.mark.slow
DAY1 = T0 + timedelta(days=1)


def by_email(env):
    return {p["attrs"]["email"]: p for p in env.profiles()}


def test_first_run_imports_every_record_and_moves_the_watermark_to_the_window_end(sync_env):
    sync_env.seed_contacts(30)
    summary = sync_env.run()
    assert summary["status"] == "SUCCEEDED"
    assert (summary["read"], summary["created"], summary["rejected"]) == (30, 30, 0)
    assert summary["window"]["start"] is None
    assert summary["window"]["end"] == format_watermark(DAY1 - timedelta(seconds=60))
    assert sync_env.watermark().text == "2024/03/02 08:59:00"
    assert summary["variables"]["crmOptionName"] == "LASTIMPORT_acme_sf-contacts"
    usage = summary["crm_api_usage"]
    assert usage["used"] + usage["remaining"] == usage["max"]
    assert usage["used"] >= summary["api_calls"] - 1  # the token call is not counted by Salesforce
    assert len(sync_env.profiles()) == 30


def test_profiles_carry_the_crm_id_as_external_id_and_mapped_attributes(sync_env):
    (crm_id,) = sync_env.seed_contacts(1, Birthdate="1990-02-28", LeadSource="Web")
    sync_env.run()
    (profile,) = sync_env.profiles()
    assert profile["externalId"] == crm_id
    assert profile["attrs"]["birthDate"] == "1990-02-28"
    assert profile["attrs"]["source"] == "web"
    assert profile["attrs"]["crmCreatedOn"] == "2024-03-01"


def test_second_run_reads_only_the_changes(sync_env):
    ids = sync_env.seed_contacts(20)
    sync_env.run()
    sync_env.crm.control.advance_clock(600)
    sync_env.crm.control.seed("Contact", [{"Id": i, "FirstName": "Changed"} for i in ids[:3]])
    sync_env.crm.control.advance_clock(120)
    summary = sync_env.run()
    assert (summary["read"], summary["updated"], summary["created"]) == (3, 3, 0)
    assert sum(p["attrs"]["firstName"] == "Changed" for p in sync_env.profiles()) == 3


def test_records_on_the_boundary_second_are_imported_exactly_once(sync_env):
    first_end = DAY1 - timedelta(seconds=60)
    sync_env.seed_contacts(2, start=first_end - timedelta(seconds=1), step=timedelta(seconds=1), prefix="b")
    assert sync_env.run()["created"] == 1
    sync_env.crm.control.advance_clock(600)
    second = sync_env.run()
    assert (second["created"], second["unchanged"]) == (1, 1)
    assert len(sync_env.profiles()) == 2


def test_a_record_committed_late_is_still_imported_by_the_next_run(sync_env):
    sync_env.seed_contacts(5)
    first = sync_env.run()
    late_stamp = DAY1 - timedelta(seconds=90)  # inside the first window, committed after it was read
    sync_env.seed_contacts(1, start=late_stamp, prefix="late")
    sync_env.crm.control.advance_clock(600)
    second = sync_env.run()
    assert first["created"] == 5
    assert second["created"] == 1
    assert "ana.late0@example.com" in by_email(sync_env)


def test_crash_in_the_middle_of_a_window_keeps_the_watermark_and_the_rerun_creates_no_duplicate(sync_env):
    sync_env.crm.control.configure(query_page_size=200)
    sync_env.seed_contacts(500)
    sync_env.crm.control.add_fault(r"GET /services/data/v[\d.]+/query/\w", status=500, times=1000)
    failed = sync_env.run()
    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "CrmUnavailable"
    assert sync_env.watermark() is None
    assert 0 < len(sync_env.profiles()) < 500

    sync_env.crm.control.clear_faults()
    rerun = sync_env.run()
    assert rerun["status"] == "SUCCEEDED"
    assert rerun["read"] == 500
    assert len(sync_env.profiles()) == 500
    assert len({p["externalId"] for p in sync_env.profiles()}) == 500


def test_session_expiry_mid_run_is_recovered(sync_env):
    sync_env.crm.control.configure(query_page_size=200)
    sync_env.seed_contacts(450)
    sync_env.crm.control.add_fault(r"GET /services/data/v[\d.]+/query/\w", status=401, times=1)
    summary = sync_env.run()
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 450)


def test_a_429_burst_longer_than_one_step_is_recovered_by_the_state_machine(sync_env):
    sync_env.seed_contacts(10)
    sync_env.crm.control.add_fault(r"GET /services/data/v[\d.]+/query", status=429, times=6)
    summary = sync_env.run()
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 10)


def test_refused_records_reach_the_rejects_queue_with_code_and_message(sync_env):
    sync_env.seed_contacts(3)
    sync_env.seed_contacts(1, prefix="long", LastName="L" * 81)
    sync_env.seed_contacts(1, prefix="dup", Email="ana.c0@example.com", start=T0 + timedelta(hours=1))
    summary = sync_env.run()
    assert (summary["created"], summary["rejected"]) == (3, 2)
    rejects = {r["errorSymbol"]: r for r in sync_env.operator.rejects("sf-contacts")}
    assert set(rejects) == {"STRING_TOO_LONG", "DUPLICATE_KEY"}
    assert "81 characters" in rejects["STRING_TOO_LONG"]["errorMessage"]
    assert rejects["STRING_TOO_LONG"]["record"]["LastName"] == "L" * 81
    assert rejects["DUPLICATE_KEY"]["runId"] == summary["run_id"]


def test_rejects_are_only_logged_when_routing_is_off(sync_env):
    config = sync_env.config.model_copy(
        update={
            "syncs": [
                sync_env.config.syncs[0].model_copy(
                    update={"rejects": sync_env.config.syncs[0].rejects.model_copy(update={"route": False})}
                )
            ]
        }
    )
    sync_env.operator.apply(config)
    sync_env.seed_contacts(1, prefix="long", LastName="L" * 81)
    assert sync_env.run()["rejected"] == 1
    assert sync_env.operator.rejects("sf-contacts") == []
    assert "reject STRING_TOO_LONG" in sync_env.stack.lambda_log_text()


def test_a_population_of_ids_imports_exactly_those(sync_env):
    ids = sync_env.seed_contacts(10)
    summary = sync_env.run(population={"ids": [ids[1], ids[4], "003000000000000AAA", "not-an-id"]})
    assert (summary["read"], summary["created"]) == (2, 2)
    assert {r["errorSymbol"] for r in sync_env.operator.rejects("sf-contacts")} == {"NOT_FOUND", "INVALID_ID"}
    assert {p["externalId"] for p in sync_env.profiles()} == {ids[1], ids[4]}
    assert sync_env.watermark() is None


def test_a_population_of_15_character_ids_imports_those_records_under_their_18_character_ids(sync_env):
    ids = sync_env.seed_contacts(4)
    summary = sync_env.run(population={"ids": [ids[0][:15], ids[2][:15], "003000000000000"]})
    assert (summary["read"], summary["created"]) == (2, 2)
    assert [r["crmId"] for r in sync_env.operator.rejects("sf-contacts")] == ["003000000000000AAA"]
    assert {p["externalId"] for p in sync_env.profiles()} == {ids[0], ids[2]}


def test_reconciliation_by_email_links_the_existing_profile(sync_env):
    existing = marketing_profiles(sync_env.container).create_local(
        {"email": "Ana.C0@Example.com", "firstName": "A"}, key_attribute="email"
    )
    (crm_id, _) = sync_env.seed_contacts(2)
    summary = sync_env.run()
    assert (summary["created"], summary["updated"]) == (1, 1)
    profile = sync_env.container.profiles.get(existing)
    assert profile["externalId"] == crm_id
    assert profile["externalIds"] == {"sf-prod:Contact": crm_id}
    assert len(sync_env.profiles()) == 2


def test_a_run_while_another_holds_the_lease_is_refused_and_changes_nothing(sync_env):
    sync_env.seed_contacts(3)
    sync_env.container.runs.acquire("sf-contacts", "someone-else", 900)
    summary = sync_env.run()
    assert summary["status"] == "REFUSED"
    assert summary["error"]["type"] == "RunAlreadyInProgress"
    assert sync_env.profiles() == []
    assert sync_env.container.runs.lease_holder("sf-contacts")["holder"] == "someone-else"


def test_a_rerun_after_a_failure_starts_from_the_same_watermark(sync_env):
    sync_env.seed_contacts(5)
    sync_env.run()
    before = sync_env.watermark()
    sync_env.crm.control.advance_clock(3600)
    sync_env.crm.control.add_fault(r"POST /services/oauth2/token|GET .*/limits", status=503, times=1000)
    failed = sync_env.run()
    assert failed["status"] == "FAILED"
    assert sync_env.watermark().text == before.text


def test_a_custom_object_lands_in_its_resource_table(sync_env):
    (contact,) = sync_env.seed_contacts(1)
    stamp = T0.isoformat()
    sync_env.crm.control.seed(
        "Subscription__c",
        [
            {"Name": "Newsletter", "Status__c": "Active", "Contact__c": contact, "SystemModstamp": stamp},
            {"Name": "Offers", "Status__c": "Paused", "Contact__c": contact, "SystemModstamp": stamp},
        ],
    )
    summary = sync_env.run("sf-subscriptions")
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 2)
    rows = sync_env.container.resources.all("subscriptions")
    assert sorted(r["attrs"]["name"] for r in rows) == ["Newsletter", "Offers"]
    assert all(r["attrs"]["contactCrmId"] == contact for r in rows)


def test_invalid_mapping_against_the_crm_schema_fails_before_any_data_moves(sync_env):
    bad = sync_env.config.syncs[0].model_copy(
        update={
            "fields": [
                *sync_env.config.syncs[0].fields[:3],
                sync_env.config.syncs[0].fields[0].model_copy(update={"remote": "Emial__c", "local": "typo"}),
            ]
        }
    )
    sync_env.operator.apply(sync_env.config.model_copy(update={"syncs": [bad]}))
    sync_env.seed_contacts(3)
    summary = sync_env.run()
    assert summary["status"] == "FAILED"
    assert summary["error"]["type"] == "ConfigurationError"
    assert "Contact has no field 'Emial__c'" in summary["error"]["message"]
    assert sync_env.profiles() == []


def test_a_population_file_in_the_data_bucket_imports_exactly_its_ids(sync_env):
    ids = sync_env.seed_contacts(5)
    bucket = sync_env.container.settings.data_bucket
    sync_env.stack.client("s3").put_object(
        Bucket=bucket, Key="populations/today.csv", Body=f"Id\n{ids[0]}\n{ids[3]}\n".encode()
    )
    summary = sync_env.run(population={"s3_uri": f"s3://{bucket}/populations/today.csv"})
    assert (summary["read"], summary["created"]) == (2, 2)


def test_a_population_file_that_is_not_utf8_fails_naming_the_file_line_and_rule(sync_env):
    ids = sync_env.seed_contacts(2)
    bucket = sync_env.container.settings.data_bucket
    body = f"Id,Name\n{ids[0]},Jos\xe9\n{ids[1]},Ana\n".encode("latin-1")
    sync_env.stack.client("s3").put_object(Bucket=bucket, Key="populations/latin1.csv", Body=body)
    summary = sync_env.run(population={"s3_uri": f"s3://{bucket}/populations/latin1.csv"})
    assert summary["status"] == "FAILED"
    assert summary["error"]["type"] == "ConfigurationError"
    assert summary["error"]["message"].startswith(f"s3://{bucket}/populations/latin1.csv:2:")
    assert "rule N4: input files are UTF-8 text" in summary["error"]["message"]
    assert "Jos" not in summary["error"]["message"]
    assert sync_env.profiles() == []


def test_a_population_file_outside_the_data_bucket_is_refused(sync_env):
    summary = sync_env.run(population={"s3_uri": "s3://someone-elses-bucket/ids.csv"})
    assert summary["status"] == "FAILED"
    assert "populations/ only" in summary["error"]["message"]
