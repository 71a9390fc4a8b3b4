"""Deletions applied to the profile and resource stores (SPEC D2), generic over connection and object, on
the local stack's DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.domain.records import CrmDeletion, LocalRecord
from crmsync.services.operations import Operator

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
    flagged = container.profiles.find_by_crm_id("dyn", "contact", "a")
    assert (flagged["deletedInCrm"], flagged["deletedInCrmAt"]) == (True, "2024-03-02T10:00:00+00:00")
    assert "deletedInCrm" not in container.profiles.find_by_crm_id("dyn", "contact", "b")


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
    profile = container.profiles.find_by_crm_id("dyn", "contact", "a")
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
