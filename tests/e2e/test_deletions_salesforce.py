"""The real import-deleted and delete state machines, in the local stack, against the Salesforce emulator
(SPEC D1-D3). The emulator's clock is frozen one day after T0; deletions are dated explicitly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crmsync.config import CrmDeleteSync, DeletionImportSync
from crmsync_local.marketing import marketing_profiles

from .conftest import T0

pytestmark = pytest.mark.slow

NOW = T0 + timedelta(days=1)
DELETED = "sf-contacts-deleted"
COMPARE = "sf-contacts-compare"
DELETE = "sf-contacts-delete"


def imported(env, count, **fields):
    ids = env.seed_contacts(count, **fields)
    assert env.run("sf-contacts")["created"] == count
    return ids


def flagged(env, crm_ids):
    by_crm_id = {p["externalId"]: p for p in env.profiles()}
    return {crm_id: bool(by_crm_id[crm_id].get("deletedInCrm")) for crm_id in crm_ids}


def delete_in_crm(env, crm_id, when):
    env.crm.control.delete("Contact", crm_id, deleted_date=when)


def period(start, end=None):
    return {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}


def add_sync(env, sync):
    env.operator.apply(env.config.model_copy(update={"syncs": [*env.config.syncs, sync]}))


# ------------------------------------------------------------------------------------- import_deleted
def test_deletions_in_a_period_are_applied_with_both_ends_included(sync_env):
    ids = imported(sync_env, 5)
    first, inside, last = NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    delete_in_crm(sync_env, ids[0], first)
    delete_in_crm(sync_env, ids[1], inside)
    delete_in_crm(sync_env, ids[2], last)
    delete_in_crm(sync_env, ids[3], NOW - timedelta(minutes=10))
    summary = sync_env.run(DELETED, period=period(first, last))
    assert summary["status"] == "SUCCEEDED"
    assert (summary["reported"], summary["deleted"]) == (3, 3)
    assert flagged(sync_env, ids) == {ids[0]: True, ids[1]: True, ids[2]: True, ids[3]: False, ids[4]: False}


def test_a_profile_is_flagged_with_the_date_the_crm_deleted_its_record(sync_env):
    ids = imported(sync_env, 1)
    delete_in_crm(sync_env, ids[0], NOW - timedelta(hours=5))
    sync_env.run(DELETED)
    (profile,) = sync_env.profiles()
    assert profile["deletedInCrm"] is True
    assert profile["deletedInCrmAt"].startswith((NOW - timedelta(hours=5)).strftime("%Y-%m-%dT%H"))


def test_deletions_are_applied_once_and_the_next_run_starts_at_the_latest_date_covered(sync_env):
    ids = imported(sync_env, 3)
    delete_in_crm(sync_env, ids[0], NOW - timedelta(hours=2))
    first = sync_env.run(DELETED)
    assert (first["deleted"], first["watermark_moved"]) == (1, True)
    mark = sync_env.watermark(DELETED)
    assert mark.value <= NOW
    delete_in_crm(sync_env, ids[1], NOW + timedelta(minutes=30))
    sync_env.crm.control.set_clock(NOW + timedelta(hours=1), frozen=True)
    second = sync_env.run(DELETED)
    assert second["window"]["start"] == mark.text
    assert (second["deleted"], second["already"] + second["deleted"]) == (1, second["reported"])
    assert flagged(sync_env, ids) == {ids[0]: True, ids[1]: True, ids[2]: False}


def test_a_deletion_of_a_record_never_imported_is_counted_not_an_error(sync_env):
    imported(sync_env, 1)
    (stranger,) = sync_env.seed_contacts(1, prefix="x", start=NOW - timedelta(hours=1))
    delete_in_crm(sync_env, stranger, NOW - timedelta(minutes=30))
    summary = sync_env.run(DELETED)
    assert (summary["status"], summary["unknown"], summary["deleted"]) == ("SUCCEEDED", 1, 0)


def test_a_start_older_than_the_crm_keeps_deletions_is_refused_and_nothing_changes(sync_env):
    ids = imported(sync_env, 2)
    sync_env.crm.control.configure(deleted_retention_days=2)
    delete_in_crm(sync_env, ids[0], NOW - timedelta(hours=1))
    summary = sync_env.run(DELETED, period=period(NOW - timedelta(days=5)))
    assert summary["status"] == "FAILED"
    assert summary["error"]["type"] == "DeletionPeriodRefused"
    assert "only from 2024-02-29T09:00:00" in summary["error"]["message"]
    assert flagged(sync_env, ids) == {ids[0]: False, ids[1]: False}
    assert sync_env.watermark(DELETED) is None


def test_a_period_with_more_deleted_ids_than_one_answer_is_split_until_it_fits(sync_env):
    ids = imported(sync_env, 6)
    sync_env.crm.control.configure(deleted_id_limit=2)
    for n, crm_id in enumerate(ids):
        delete_in_crm(sync_env, crm_id, NOW - timedelta(hours=6) + timedelta(minutes=40 * n))
    summary = sync_env.run(DELETED)
    assert summary["status"] == "SUCCEEDED"
    assert summary["splits"] >= 2
    assert (summary["reported"], summary["deleted"]) == (6, 6)


def test_the_id_set_comparison_finds_a_deletion_older_than_the_crm_keeps(sync_env):
    ids = imported(sync_env, 8)
    sync_env.crm.control.delete("Contact", ids[3], hard=True)
    summary = sync_env.run(COMPARE)
    assert summary["status"] == "SUCCEEDED"
    assert (summary["compared"], summary["checked"], summary["deleted"]) == (7, 8, 1)
    assert [crm_id for crm_id, gone in flagged(sync_env, ids).items() if gone] == [ids[3]]


def test_removal_mode_removes_the_profile_of_a_deleted_record(sync_env):
    ids = imported(sync_env, 3)
    add_sync(
        sync_env,
        DeletionImportSync(
            id="sf-remove", operation="import_deleted", connection="sf-prod", object="Contact", apply="remove"
        ),
    )
    delete_in_crm(sync_env, ids[1], NOW - timedelta(hours=1))
    summary = sync_env.run("sf-remove")
    assert summary["deleted"] == 1
    assert sorted(p["externalId"] for p in sync_env.profiles()) == sorted([ids[0], ids[2]])
    assert marketing_profiles(sync_env.container).find_by_crm_id("sf-prod", "Contact", ids[1]) is None


# ------------------------------------------------------------------------------------- delete
def crm_alive(env, ids):
    rows = {r["Id"]: r for r in env.crm.control.records("Contact")}
    return {i: not rows[i].get("IsDeleted") for i in ids}


def test_flagged_profiles_have_their_records_deleted_in_the_crm_and_are_marked(sync_env):
    ids = imported(sync_env, 4)
    profiles = marketing_profiles(sync_env.container)
    for crm_id in ids[:2]:
        profile = profiles.find_by_crm_id("sf-prod", "Contact", crm_id)
        profiles.update_local(profile["profileId"], {"deleteInCrm": True})
    summary = sync_env.run(DELETE)
    assert summary["status"] == "SUCCEEDED"
    assert (summary["selected"], summary["deleted"], summary["already_gone"], summary["rejected"]) == (2, 2, 0, 0)
    assert crm_alive(sync_env, ids) == {ids[0]: False, ids[1]: False, ids[2]: True, ids[3]: True}
    assert flagged(sync_env, ids) == {ids[0]: True, ids[1]: True, ids[2]: False, ids[3]: False}
    assert sync_env.run(DELETE)["selected"] == 0


def test_deleting_in_the_crm_twice_is_harmless(sync_env):
    ids = imported(sync_env, 3)
    first = sync_env.run(DELETE, population={"ids": ids})
    again = sync_env.run(DELETE, population={"ids": ids})
    assert (first["deleted"], first["already_gone"]) == (3, 0)
    assert (again["status"], again["deleted"], again["already_gone"], again["rejected"]) == ("SUCCEEDED", 0, 3, 0)


def test_15_character_ids_delete_their_records_and_mark_their_profiles(sync_env):
    ids = imported(sync_env, 2)
    summary = sync_env.run(DELETE, population={"ids": [crm_id[:15] for crm_id in ids]})
    assert (summary["status"], summary["deleted"], summary["rejected"]) == ("SUCCEEDED", 2, 0)
    assert flagged(sync_env, ids) == {ids[0]: True, ids[1]: True}


def test_an_id_that_is_not_a_crm_id_is_rejected_and_the_others_deleted(sync_env):
    ids = imported(sync_env, 2)
    summary = sync_env.run(DELETE, population={"ids": [*ids, "not-an-id'; DROP"]})
    assert (summary["status"], summary["deleted"], summary["rejected"]) == ("SUCCEEDED", 2, 1)
    (reject,) = [r for r in sync_env.operator.rejects(DELETE) if r["operation"] == "delete"]
    assert reject["errorSymbol"] == "INVALID_ID"


def test_an_id_of_another_object_is_rejected_not_deleted(sync_env):
    ids = imported(sync_env, 1)
    (lead,) = sync_env.crm.control.seed("Lead", [{"LastName": "Keep", "Company": "Acme"}])
    summary = sync_env.run(DELETE, population={"ids": [ids[0], lead]})
    assert (summary["deleted"], summary["rejected"]) == (1, 1)
    assert not next(r for r in sync_env.crm.control.records("Lead") if r["Id"] == lead).get("IsDeleted")
    (reject,) = [r for r in sync_env.operator.rejects(DELETE) if r["operation"] == "delete"]
    assert "is not a Contact id" in reject["errorMessage"]


def test_a_file_of_ids_in_the_data_bucket_deletes_exactly_those(sync_env):
    ids = imported(sync_env, 4)
    bucket = sync_env.container.settings.data_bucket
    sync_env.stack.client("s3").put_object(
        Bucket=bucket, Key="populations/to-delete.csv", Body=f"Id\n{ids[1]}\n{ids[2]}\n".encode()
    )
    summary = sync_env.run(DELETE, population={"s3_uri": f"s3://{bucket}/populations/to-delete.csv"})
    assert (summary["status"], summary["selected"], summary["deleted"]) == ("SUCCEEDED", 2, 2)
    assert crm_alive(sync_env, ids) == {ids[0]: True, ids[1]: False, ids[2]: False, ids[3]: True}
    assert summary["window"] is None


def collection_deletes(control):
    return sum(
        n for call, n in control.stats()["calls"].items() if call.startswith("DELETE") and "composite" in call
    )


def test_a_crash_half_way_resumes_without_sending_done_batches_again(sync_env):
    add_sync(
        sync_env,
        CrmDeleteSync(
            id="sf-delete-small",
            operation="delete",
            connection="sf-prod",
            object="Contact",
            batch_size=200,
            max_concurrency=1,
        ),
    )
    ids = imported(sync_env, 450)
    control = sync_env.crm.control
    # Batch 1 (200 ids, one collections call) goes through; every later call is refused, so the run dies.
    control.add_fault(r"^DELETE .*/composite/sobjects", status=503, after=1, times=None)
    failed = sync_env.run("sf-delete-small", population={"ids": ids})
    assert failed["status"] == "FAILED"
    ledger = sync_env.container.batches
    assert [e.number for e in ledger.entries("sf-delete-small", failed["run_id"]) if e.status == "done"] == [1]
    assert sum(crm_alive(sync_env, ids).values()) == 250

    control.clear_faults()
    control.reset_stats()
    resumed = sync_env.run("sf-delete-small")
    assert (resumed["status"], resumed["resumed_from"]) == ("SUCCEEDED", failed["run_id"])
    assert (resumed["deleted"], resumed["already_gone"], resumed["rejected"]) == (450, 0, 0)
    assert collection_deletes(control) == 2  # batches 2 and 3 only
    assert not any(crm_alive(sync_env, ids).values())
