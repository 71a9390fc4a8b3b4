"""The real initial-transfer state machine, in the local stack, against both CRM emulators (SPEC T1, N3):
routing by the object's count, the extract in S3 parts (Salesforce Bulk API 2.0 query, Dataverse change
tracking) loaded by a Distributed Map, resume by part, and the import's incremental runs taking over."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crmsync.domain.windows import format_watermark
from crmsync.errors import ConfigurationError, StoreThrottled
from crmsync.services import batched_runs, initial_transfers

from .conftest import T0

pytestmark = pytest.mark.slow
DAY1 = T0 + timedelta(days=1)


def calls(crm, method, fragment):
    return sum(n for key, n in crm.control.stats()["calls"].items() if key.startswith(method) and fragment in key)


def parts_loaded(monkeypatch, fail=None):
    """Count the loads of each part; `fail` maps a part number to the errors its first loads raise."""
    loads: dict[int, int] = {}
    send = initial_transfers.InitialTransfer.send

    def counting(self, container, event, claim, rows, writer, journal):
        loads[event.number] = loads.get(event.number, 0) + 1
        errors = (fail or {}).get(event.number, [])
        if len(errors) >= loads[event.number]:
            raise errors[loads[event.number] - 1]
        return send(self, container, event, claim, rows, writer, journal)

    monkeypatch.setattr(initial_transfers.InitialTransfer, "send", counting)
    return loads


def run_while_held(sync_env, held: str, sync_id: str) -> dict:
    """Runs `sync_id` while another run holds the lease of sync `held`."""
    sync_env.container.runs.acquire(held, f"{held}-in-flight", 900)
    try:
        return sync_env.run(sync_id)
    finally:
        sync_env.container.runs.release(held, f"{held}-in-flight")


# -- Salesforce ------------------------------------------------------------------------------------------
def test_an_object_at_the_threshold_is_extracted_by_one_bulk_query_job_and_loaded_by_parts(sync_env):
    ids = sync_env.seed_contacts(25)
    sync_env.reapply("sf-contacts-transfer", threshold=25, part_records=10)

    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert (summary["mode"], summary["counted"], summary["parts"]) == ("files", 25, 3)
    assert (summary["read"], summary["created"], summary["rejected"]) == (25, 25, 0)
    assert calls(sync_env.crm, "POST", "jobs/query") == 2  # the extract, then the completeness check's ids
    assert summary["completeness"]["crm_ids"] == summary["completeness"]["loaded"] == 25
    assert sorted(p["externalId"] for p in sync_env.profiles()) == sorted(ids)
    # The import sync's watermark: the extract's start (the CRM's clock) less the import's overlap.
    assert sync_env.watermark("sf-contacts").text == format_watermark(DAY1 - timedelta(seconds=300))


def test_below_the_threshold_the_import_syncs_ordinary_first_import_runs(sync_env):
    sync_env.seed_contacts(5)
    sync_env.reapply("sf-contacts-transfer", threshold=6)

    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert (summary["mode"], summary["counted"], summary["parts"]) == ("import", 5, 0)
    assert (summary["read"], summary["created"]) == (5, 5)
    assert calls(sync_env.crm, "POST", "jobs/query") == 0
    (imported,) = sync_env.operator.runs("sf-contacts", limit=5)
    assert (imported["operation"], imported["status"]) == ("import", "SUCCEEDED")
    assert sync_env.watermark("sf-contacts").text == format_watermark(DAY1 - timedelta(seconds=60))


def test_an_import_starting_during_a_transfer_is_refused_naming_the_transfer(sync_env):
    sync_env.seed_contacts(3)
    summary = run_while_held(sync_env, "sf-contacts-transfer", "sf-contacts")

    assert summary["status"] == "REFUSED", summary
    assert summary["error"]["type"] == "RunAlreadyInProgress"
    assert "its initial transfer 'sf-contacts-transfer'" in summary["error"]["message"]
    assert sync_env.profiles() == []
    assert sync_env.container.runs.lease_holder("sf-contacts") is None


def test_a_transfer_is_refused_while_its_import_sync_runs(sync_env):
    summary = run_while_held(sync_env, "sf-contacts", "sf-contacts-transfer")

    assert summary["status"] == "REFUSED", summary
    assert "its import sync 'sf-contacts'" in summary["error"]["message"]


def test_a_failed_part_is_retried_alone(sync_env, monkeypatch):
    sync_env.seed_contacts(30)
    sync_env.reapply("sf-contacts-transfer", threshold=1, part_records=10)
    loads = parts_loaded(monkeypatch, fail={2: [StoreThrottled("throttled once")]})

    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert loads == {1: 1, 2: 2, 3: 1}
    assert summary["created"] == 30


def test_a_rerun_resumes_the_failed_transfer_without_extracting_or_loading_finished_parts_again(
    sync_env, monkeypatch
):
    sync_env.seed_contacts(30)
    sync_env.reapply("sf-contacts-transfer", threshold=1, part_records=10)
    failing = {2: [ValueError("a part that cannot load")]}
    loads = parts_loaded(monkeypatch, fail=failing)
    failed = sync_env.run("sf-contacts-transfer")
    assert failed["status"] == "FAILED"
    assert sync_env.watermark("sf-contacts") is None
    assert len(sync_env.profiles()) == 20

    loads.clear()
    failing.clear()
    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert summary["resumed_from"] == failed["run_id"]
    assert loads == {2: 1}
    assert calls(sync_env.crm, "POST", "jobs/query") == 2  # one extract (not redone), one id listing
    assert len(sync_env.profiles()) == 30
    assert sync_env.watermark("sf-contacts") is not None


def test_a_record_changed_during_the_extract_is_imported_by_the_next_incremental_run(sync_env, monkeypatch):
    ids = sync_env.seed_contacts(12)
    sync_env.reapply("sf-contacts-transfer", threshold=1, part_records=10)
    extract_page = initial_transfers._extract_page

    def change_after_the_job_started(connector, plan, run, cursor):
        page = extract_page(connector, plan, run, cursor)
        if cursor is None:  # the query job holds its snapshot: this change is not in the extract
            sync_env.crm.control.seed(
                "Contact",
                [
                    {
                        "Id": ids[0],
                        "FirstName": "Changed",
                        "SystemModstamp": (DAY1 + timedelta(seconds=5)).isoformat(),
                    }
                ],
            )
        return page

    monkeypatch.setattr(initial_transfers, "_extract_page", change_after_the_job_started)
    sync_env.run("sf-contacts-transfer")
    by_id = {p["externalId"]: p for p in sync_env.profiles()}
    assert by_id[ids[0]]["attrs"]["firstName"] == "Anac0"

    sync_env.crm.control.advance_clock(600)
    following = sync_env.run("sf-contacts")

    assert following["status"] == "SUCCEEDED", following
    assert following["updated"] == 1
    by_id = {p["externalId"]: p for p in sync_env.profiles()}
    assert by_id[ids[0]]["attrs"]["firstName"] == "Changed"


def test_two_parts_holding_the_same_email_make_one_profile(sync_env):
    ids = sync_env.seed_contacts(20)
    sync_env.crm.control.seed("Contact", [{"Id": ids[15], "Email": "ana.c3@example.com"}])
    sync_env.reapply("sf-contacts-transfer", threshold=1, part_records=10, max_concurrency=2)

    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert summary["parts"] == 2
    emails = [p["attrs"]["email"] for p in sync_env.profiles()]
    assert emails.count("ana.c3@example.com") == 1
    assert len(emails) == 19


def test_a_record_lost_from_a_part_is_found_by_the_completeness_check_and_re_read(sync_env, monkeypatch):
    ids = sync_env.seed_contacts(20)
    sync_env.reapply("sf-contacts-transfer", threshold=1, part_records=10)
    read_part = batched_runs.read_part

    def losing_one(container, key):
        rows = read_part(container, key)
        return [r for r in rows if r["Id"] != ids[13]]

    monkeypatch.setattr(batched_runs, "read_part", losing_one)
    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert (summary["read"], summary["created"]) == (19, 19)
    figures = summary["completeness"]
    assert (figures["crm_ids"], figures["loaded"], figures["missing"], figures["re_read"]) == (20, 19, 1, 1)
    assert ids[13] in {p["externalId"] for p in sync_env.profiles()}


def test_a_record_rejected_without_reject_routing_counts_as_rejected_not_missing(sync_env):
    sync_env.seed_contacts(4)
    sync_env.seed_contacts(1, prefix="long", LastName="L" * 81)  # longer than the mapping's max_length
    sync_env.reapply_syncs(
        {
            "sf-contacts": {"rejects": {"route": False}},
            "sf-contacts-transfer": {"threshold": 1, "part_records": 10},
        }
    )

    summary = sync_env.run("sf-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert (summary["created"], summary["rejected"]) == (4, 1)
    assert sync_env.operator.rejects("sf-contacts") == []
    figures = summary["completeness"]
    assert (figures["crm_ids"], figures["loaded"], figures["rejected"], figures["missing"]) == (5, 4, 1, 0)


# -- Dynamics 365 ------------------------------------------------------------------------------------------
def test_dataverse_is_extracted_by_change_tracking_and_its_delta_link_carries_the_import_on(dynamics_env):
    ids = dynamics_env.seed_contacts(12)
    dynamics_env.reapply("dyn-contacts-transfer", threshold=12, part_records=10)

    summary = dynamics_env.run("dyn-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert (summary["mode"], summary["counted"], summary["parts"], summary["created"]) == ("files", 12, 2, 12)
    assert summary["delta_link_kept"] is True
    mark = dynamics_env.watermark("dyn-contacts")
    assert mark.delta_link.startswith(f"{dynamics_env.crm.api_url}/contacts?")
    assert mark.text == format_watermark(DAY1 - timedelta(seconds=300))

    dynamics_env.crm.control.advance_clock(600)
    dynamics_env.crm.control.put_records("contacts", [{"contactid": ids[0], "firstname": "Changed"}])
    following = dynamics_env.run("dyn-contacts")

    assert (following["change_tracking"], following["read"], following["updated"]) == ("delta", 1, 1)


def test_dataverse_below_the_threshold_runs_the_ordinary_first_import(dynamics_env):
    dynamics_env.seed_contacts(3)
    dynamics_env.reapply("dyn-contacts-transfer", threshold=4)

    summary = dynamics_env.run("dyn-contacts-transfer")

    assert summary["status"] == "SUCCEEDED", summary
    assert (summary["mode"], summary["counted"], summary["created"]) == ("import", 3, 3)
    assert dynamics_env.watermark("dyn-contacts").delta_link is not None


def test_crmsync_transfer_without_a_file_starts_the_transfer_sync_naming_the_import_sync(sync_env):
    operator = sync_env.operator

    assert operator.transfer_sync("sf-contacts") == "sf-contacts-transfer"
    assert operator.transfer_sync("dyn-contacts-transfer") == "dyn-contacts-transfer"
    with pytest.raises(ConfigurationError, match="no initial_transfer sync naming it"):
        operator.transfer_sync("sf-subscriptions")
    with pytest.raises(ConfigurationError, match="is an export"):
        operator.transfer_sync("sf-people-export")
