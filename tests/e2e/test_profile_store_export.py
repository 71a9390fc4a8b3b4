"""What the export needs from the profile store and the batch ledger, against the template's tables in moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.stores.batches import BatchAlreadyDone, BatchLedger, BatchPlan, BatchStatus
from crmsync.stores.profiles import ExportedProfile, ExportLink
from crmsync_local.marketing import MarketingProfiles

pytestmark = pytest.mark.slow


@pytest.fixture
def profiles(aws_env):
    return MarketingProfiles(aws_env.client("dynamodb"), aws_env.names["ProfilesTable"])


@pytest.fixture
def ledger(aws_env):
    return BatchLedger(
        aws_env.client("dynamodb"), aws_env.names["RunsTable"], aws_env.client("s3"), aws_env.names["DataBucket"]
    )


def test_profiles_changed_in_a_window_are_found_across_every_shard(profiles):
    ids = profiles.create_local_many([{"email": f"p{i}@example.com"} for i in range(60)])
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    found = [i for page in profiles.changed_profile_ids(None, later) for i in page]
    assert sorted(found) == sorted(ids)
    assert [i for page in profiles.changed_profile_ids(later, later + "9") for i in page] == []


def test_a_profile_whose_unique_key_is_taken_is_not_created(profiles):
    first, taken, other = profiles.create_local_many(
        [{"email": "a@example.com"}, {"email": "A@example.com"}, {"email": "b@example.com"}], key_attribute="email"
    )
    assert (first is not None, taken, other is not None) == (True, None, True)


def test_a_marketing_change_stamps_the_attribute_and_moves_the_unique_key(profiles):
    (profile_id,) = profiles.create_local_many([{"email": "old@example.com"}], key_attribute="email")
    profiles.update_local(profile_id, {"email": "new@example.com"}, key_attribute="email")
    profile = profiles.get(profile_id)
    assert (profile["attrs"]["email"], profile["attrSource"]["email"], profile["version"]) == (
        "new@example.com",
        "marketing",
        2,
    )
    assert profiles.create_local_many([{"email": "old@example.com"}], key_attribute="email")[0] is not None
    assert profiles.create_local_many([{"email": "NEW@example.com"}], key_attribute="email") == [None]


def test_recording_an_export_links_the_crm_record_and_refuses_one_linked_to_another_profile(profiles):
    first, second = profiles.create_local_many([{"email": "a@example.com"}, {"email": "b@example.com"}])
    link = ExportLink(first, "sf", "Lead", "00QA")
    result = profiles.record_exported(
        "export",
        [
            ExportedProfile(first, 1, link),
            ExportedProfile(second, 1, ExportLink(second, "sf", "Lead", "00QA")),
            ExportedProfile("missing", 1, None),
        ],
    )
    assert (result.linked, result.missing, [c.profile_id for c in result.conflicts]) == (1, ["missing"], [second])
    stored = profiles.get(first)
    assert (stored["externalIds"], stored["externalId"], stored["exportedVersion:export"]) == (
        {"sf:Lead": "00QA"},
        "00QA",
        1,
    )
    assert profiles.find_by_crm_id("sf", "Lead", "00QA")["profileId"] == first
    assert profiles.get(second)["externalIds"] == {}


def test_a_batch_moves_pending_in_flight_done_and_never_back(ledger):
    ledger.plan("sync", "run", [BatchPlan(1, ("k1",), 10), BatchPlan(2, ("k2",), 5)])
    before = ledger.claim("sync", "run", 1)
    assert (before.status, before.interrupted) == (BatchStatus.PENDING, False)
    ledger.record_job("sync", "run", 1, "Lead:insert", "750A")
    again = ledger.claim("sync", "run", 1)
    assert (again.interrupted, again.attempts, again.jobs) == (True, 1, {"Lead:insert": "750A"})
    ledger.complete("sync", "run", 1, [{"profileId": "p", "status": "created"}], {"created": 1})
    with pytest.raises(BatchAlreadyDone):
        ledger.claim("sync", "run", 1)
    entries = {e.number: e for e in ledger.entries("sync", "run")}
    assert (entries[1].status, entries[1].counts, entries[2].status) == (
        BatchStatus.DONE,
        {"created": 1},
        BatchStatus.PENDING,
    )
    assert ledger.results(entries[1]) == [{"profileId": "p", "status": "created"}]


def test_the_unfinished_run_is_kept_until_the_run_that_finishes_it_forgets_it(ledger, aws_env):
    ledger.mark_unfinished("sync", "export", {"ledger_run": "run-1"})
    assert ledger.unfinished("sync", "export") == {"ledger_run": "run-1"}
    aws_env.client("dynamodb").transact_write_items(TransactItems=[ledger.finished_action("sync", "export")])
    assert ledger.unfinished("sync", "export") is None
