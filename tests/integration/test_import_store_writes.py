"""How the profile store writes an import (SPEC I10, DESIGN §5's cost rule), on the local stack's DynamoDB:
what each kind of record costs, and how lookups left without their profile by a stopped writer are
adopted rather than duplicated."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from crmsync.domain.records import LocalRecord
from crmsync.errors import StoreThrottled
from crmsync.services.operations import Operator
from crmsync.stores.dynamo import serialize
from crmsync.stores.profile_imports import ORPHAN_GRACE_SECONDS
from crmsync.stores.profiles import ExportedProfile, ExportLink, crm_id_key, unique_key
from crmsync_local.marketing import marketing_profiles

MODIFIED = datetime(2024, 3, 1, tzinfo=UTC)


def record(crm_id: str, email: str, name: str = "Ana", modified: datetime = MODIFIED) -> LocalRecord:
    return LocalRecord(crm_id=crm_id, modified_at=modified, attributes={"email": email, "name": name})


@pytest.fixture
def container(local_stack, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    return Operator("crmsync").container


@pytest.fixture
def writes(container) -> Counter[str]:
    """Items written per way of writing: `transact` (each costs 2 WCU), `batch` and `single` (1 WCU)."""
    counted: Counter[str] = Counter()

    def count(params, **_):
        if "TransactItems" in params:
            counted["transact"] += len(params["TransactItems"])
        for requests_ in (params.get("RequestItems") or {}).values():
            counted["batch"] += sum(1 for r in requests_ if "PutRequest" in r or "DeleteRequest" in r)

    def single(params, **_):
        counted["single"] += 1

    events = container.profiles.client.meta.events
    events.register("provide-client-params.dynamodb.TransactWriteItems", count)
    events.register("provide-client-params.dynamodb.BatchWriteItem", count)
    for operation in ("PutItem", "UpdateItem", "DeleteItem"):
        events.register(f"provide-client-params.dynamodb.{operation}", single)
    return counted


def apply(container, records):
    return container.profiles.apply_import(
        records, connection="sf", object_name="Contact", key_attribute="email", case_insensitive=True, run_id="r1"
    )


def put_lookup(container, pk: str, profile_id: str, created_at: datetime | None) -> None:
    item = {"pk": pk, "kind": "crm-id", "profileId": profile_id}
    if created_at is not None:
        item["createdAt"] = created_at.isoformat(timespec="seconds")
    container.profiles.client.put_item(TableName=container.profiles.table, Item=serialize(item))


def test_a_new_profile_is_one_plain_write_after_its_two_conditional_lookups(container, writes):
    result = apply(container, [record(f"c{i}", f"p{i}@example.net") for i in range(30)])

    assert result.created == 30
    assert writes == Counter({"transact": 60, "batch": 30})


def test_an_unchanged_record_writes_nothing(container, writes):
    apply(container, [record("c1", "a@example.net")])
    writes.clear()

    result = apply(container, [record("c1", "a@example.net", modified=MODIFIED + timedelta(days=1))])

    assert (result.unchanged, sum(writes.values())) == (1, 0)


def test_a_changed_record_updates_its_profile_in_one_transaction_item(container, writes):
    apply(container, [record("c1", "a@example.net")])
    writes.clear()

    result = apply(container, [record("c1", "a@example.net", name="Bea", modified=MODIFIED + timedelta(days=1))])

    assert (result.updated, writes) == (1, Counter({"transact": 1}))


def test_an_old_orphaned_lookup_is_adopted_and_the_record_gets_one_profile(container):
    stopped = datetime.now(UTC) - timedelta(seconds=ORPHAN_GRACE_SECONDS + 60)
    put_lookup(container, crm_id_key("sf", "Contact", "c1"), "orphan-profile", stopped)

    result = apply(container, [record("c1", "a@example.net")])

    profile = marketing_profiles(container).find_by_crm_id("sf", "Contact", "c1")
    assert (result.created, profile["profileId"]) == (1, "orphan-profile")
    assert [p["profileId"] for p in marketing_profiles(container).scan_profiles()] == ["orphan-profile"]


def test_a_lookup_from_before_lookups_were_dated_counts_as_old(container):
    put_lookup(container, unique_key("email", "a@example.net"), "keyed-orphan", None)

    apply(container, [record("c1", "a@example.net")])

    assert marketing_profiles(container).find_by_crm_id("sf", "Contact", "c1")["profileId"] == "keyed-orphan"


def test_a_young_orphaned_lookup_is_left_to_its_writer_and_the_page_is_retried(container):
    put_lookup(container, crm_id_key("sf", "Contact", "c1"), "in-flight", datetime.now(UTC))

    with pytest.raises(StoreThrottled):
        apply(container, [record("c1", "a@example.net")])

    assert marketing_profiles(container).scan_profiles() == []


def test_the_same_records_imported_twice_keep_one_profile_each(container):
    records = [record(f"c{i}", f"p{i}@example.net") for i in range(5)]

    apply(container, records)
    apply(container, [record(r.crm_id, r.attributes["email"], name="Bea") for r in records])

    assert len(marketing_profiles(container).scan_profiles()) == 5


def test_an_export_write_back_without_a_new_link_is_one_plain_update_each(container, writes):
    profile_ids = marketing_profiles(container).create_local_many(
        [{"email": f"e{i}@example.net"} for i in range(3)]
    )
    writes.clear()

    result = container.profiles.record_exported("export", [ExportedProfile(p, 1) for p in profile_ids])

    assert (result.missing, writes) == ([], Counter({"single": 3}))
    assert [container.profiles.get(p)["exportedVersion:export"] for p in profile_ids] == [1, 1, 1]


def test_an_export_write_back_that_links_a_crm_record_is_one_transaction(container, writes):
    (profile_id,) = marketing_profiles(container).create_local_many([{"email": "e@example.net"}])
    writes.clear()

    container.profiles.record_exported(
        "export", [ExportedProfile(profile_id, 1, ExportLink(profile_id, "sf", "Lead", "00QB"))]
    )

    assert writes == Counter({"transact": 2})
    assert marketing_profiles(container).find_by_crm_id("sf", "Lead", "00QB")["profileId"] == profile_id


def test_a_profile_the_store_refuses_takes_its_new_lookups_back(container):
    huge = LocalRecord(
        crm_id="c9", modified_at=MODIFIED, attributes={"email": "big@example.net", "notes": "x" * 500_000}
    )

    with pytest.raises(ClientError):
        apply(container, [huge])

    assert (
        container.profiles._lookup_items(
            [crm_id_key("sf", "Contact", "c9"), unique_key("email", "big@example.net")]
        )
        == {}
    )


def test_a_crm_record_an_export_linked_is_listed_for_the_deletion_checks(container):
    (profile_id,) = marketing_profiles(container).create_local_many([{"email": "l@example.net"}])

    container.profiles.record_exported(
        "export", [ExportedProfile(profile_id, 1, ExportLink(profile_id, "sf", "Lead", "00QL"))]
    )

    assert container.profiles.crm_ids("sf", "Lead")[0] == ["00QL"]
