"""Deletions applied to the profile and resource stores (SPEC D2), generic over connection and object, on
the local stack's DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.domain.records import CrmDeletion, LocalRecord
from crmsync.services.operations import Operator
from crmsync_local.marketing import marketing_profiles

SEEN = datetime(2024, 3, 2, 10, 0, tzinfo=UTC)


def record(crm_id: str, email: str) -> LocalRecord:
    return LocalRecord(crm_id=crm_id, modified_at=datetime(2024, 3, 1, tzinfo=UTC), attributes={"email": email})


@pytest.fixture
def container(local_stack, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    return Operator("crmsync").container


def import_profiles(container, records, connection="dyn", object_name="contact"):
    return container.profiles.apply_import(
        records,
        connection=connection,
        object_name=object_name,
        key_attribute="email",
        case_insensitive=True,
        run_id="r1",
    )


def test_a_profile_is_flagged_once_and_a_record_never_imported_is_counted(container):
    import_profiles(container, [record("a", "a@example.net"), record("b", "b@example.net")])
    deletions = [CrmDeletion("a", SEEN), CrmDeletion("never", SEEN)]

    first = container.profiles.mark_deleted(deletions, connection="dyn", object_name="contact", run_id="r2")
    again = container.profiles.mark_deleted(deletions, connection="dyn", object_name="contact", run_id="r3")

    assert (first.marked, first.already, first.unknown) == (1, 0, 1)
    assert (again.marked, again.already, again.unknown) == (0, 1, 1)
    flagged = marketing_profiles(container).find_by_crm_id("dyn", "contact", "a")
    assert (flagged["deletedInCrm"], flagged["deletedInCrmAt"]) == (True, "2024-03-02T10:00:00+00:00")
    assert "deletedInCrm" not in marketing_profiles(container).find_by_crm_id("dyn", "contact", "b")


def test_a_deletion_is_scoped_to_its_connection_and_object(container):
    import_profiles(container, [record("same-id", "x@example.net")], connection="sf", object_name="Contact")
    result = container.profiles.mark_deleted(
        [CrmDeletion("same-id", SEEN)], connection="dyn", object_name="contact", run_id="r2"
    )
    assert (result.marked, result.unknown) == (0, 1)


def test_a_record_that_comes_back_clears_the_flag(container):
    import_profiles(container, [record("a", "a@example.net")])
    container.profiles.mark_deleted([CrmDeletion("a", SEEN)], connection="dyn", object_name="contact", run_id="r2")
    back = LocalRecord(crm_id="a", modified_at=SEEN, attributes={"email": "a@example.net"})
    assert import_profiles(container, [back]).updated == 1
    profile = marketing_profiles(container).find_by_crm_id("dyn", "contact", "a")
    assert "deletedInCrm" not in profile
    assert "deletedInCrmAt" not in profile


def test_the_crm_ids_of_one_link_are_listed_page_by_page(container):
    import_profiles(container, [record(f"id{i}", f"{i}@example.net") for i in range(5)])
    import_profiles(container, [record("other", "o@example.net")], connection="sf", object_name="Contact")
    seen, after, pages = [], None, 0
    while True:
        ids, after = container.profiles.crm_ids("dyn", "contact", after=after, limit=2)
        seen += ids
        pages += 1
        if after is None:
            break
    assert sorted(seen) == [f"id{i}" for i in range(5)]
    assert pages >= 3


def test_resource_rows_are_flagged_and_listed_per_connection(container):
    resources = container.resources
    resources.apply_import([record("r1", "-"), record("r2", "-")], resource="subs", connection="dyn", run_id="r1")
    result = resources.mark_deleted(
        [CrmDeletion("r1", SEEN), CrmDeletion("r9", SEEN)], resource="subs", connection="dyn", run_id="r2"
    )
    assert (result.marked, result.unknown) == (1, 1)
    assert resources.get("subs", "r1")["deletedInCrm"] is True
    assert sorted(resources.crm_ids("subs", "dyn")[0]) == ["r1", "r2"]
    assert resources.crm_ids("subs", "sf")[0] == []


def unique_key_owner(container, email):
    from crmsync.stores.profiles import unique_key

    return container.profiles._lookup([unique_key("email", email)])


def test_removal_deletes_a_profile_with_no_other_link_and_its_lookups(container):
    import_profiles(container, [record("a", "a@example.net"), record("b", "b@example.net")])
    profile_id = marketing_profiles(container).find_by_crm_id("dyn", "contact", "a")["profileId"]
    result = container.profiles.remove_deleted(
        [CrmDeletion("a", SEEN), CrmDeletion("never", SEEN)], connection="dyn", object_name="contact", run_id="r2"
    )
    assert (result.marked, result.unknown) == (1, 1)
    assert container.profiles.get(profile_id) is None
    assert marketing_profiles(container).find_by_crm_id("dyn", "contact", "a") is None
    assert unique_key_owner(container, "a@example.net") == {}
    assert marketing_profiles(container).find_by_crm_id("dyn", "contact", "b") is not None


def test_removal_keeps_a_profile_linked_to_another_crm_record_and_drops_only_the_link(container):
    import_profiles(container, [record("a", "a@example.net")])
    import_profiles(container, [record("003A", "a@example.net")], connection="sf", object_name="Contact")
    profile_id = marketing_profiles(container).find_by_crm_id("dyn", "contact", "a")["profileId"]
    again = container.profiles.remove_deleted(
        [CrmDeletion("a", SEEN)], connection="dyn", object_name="contact", run_id="r2"
    )
    assert again.marked == 1
    profile = container.profiles.get(profile_id)
    assert profile["externalIds"] == {"sf:Contact": "003A"}
    assert marketing_profiles(container).find_by_crm_id("dyn", "contact", "a") is None
    assert marketing_profiles(container).find_by_crm_id("sf", "Contact", "003A")["profileId"] == profile_id


def test_removal_of_resource_rows_deletes_only_this_connections_rows(container):
    resources = container.resources
    rows = [LocalRecord(crm_id=i, modified_at=SEEN, attributes={"name": i}) for i in ("r1", "r2")]
    resources.apply_import(rows, resource="subs", connection="dyn", run_id="r1")
    resources.apply_import(
        [LocalRecord(crm_id="r3", modified_at=SEEN, attributes={})], resource="subs", connection="sf", run_id="r1"
    )
    result = resources.remove_deleted(
        [CrmDeletion("r1", SEEN), CrmDeletion("r3", SEEN)], resource="subs", connection="dyn"
    )
    assert (result.marked, result.unknown) == (1, 1)
    assert resources.get("subs", "r1") is None
    assert resources.get("subs", "r2") is not None
    assert resources.get("subs", "r3") is not None
