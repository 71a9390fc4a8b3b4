"""Reconciliation decides create / update / unchanged / reject (SPEC I10)."""

from datetime import UTC, datetime, timedelta
from itertools import count

from crmsync.domain.reconciliation import StoredProfile, reconcile
from crmsync.domain.records import LocalRecord, RejectCode

T0 = datetime(2024, 7, 1, 10, tzinfo=UTC)
LINK = "sf:Contact"


def record(crm_id, email="ana@example.com", at=T0, **attrs):
    return LocalRecord(crm_id=crm_id, modified_at=at, attributes={"email": email, **attrs})


def profile(pid, crm_id=None, email="ana@example.com", at=T0, **attrs):
    return StoredProfile(
        profile_id=pid,
        attributes={"email": email, **attrs},
        links={LINK: crm_id} if crm_id else {},
        crm_modified_at={LINK: at.isoformat()} if crm_id else {},
        version=1,
        key_value=email.casefold() if email else None,
    )


def plan(records, by_crm_id=None, by_key=None, key="email"):
    ids = count(1)
    return reconcile(
        records,
        link=LINK,
        key_attribute=key,
        case_insensitive=True,
        by_crm_id=by_crm_id or {},
        by_key=by_key or {},
        new_profile_id=lambda: f"p{next(ids)}",
    )


def test_unknown_record_is_created():
    result = plan([record("A")])
    assert [c.record.crm_id for c in result.creates] == ["A"]


def test_match_on_crm_id_comes_first():
    linked = profile("p-linked", crm_id="A", email="ana@example.com", firstName="Ana")
    unlinked_same_key = profile("p-email")
    result = plan(
        [record("A", firstName="Anna")], by_crm_id={"A": linked}, by_key={"ana@example.com": unlinked_same_key}
    )
    assert [u.profile.profile_id for u in result.updates] == ["p-linked"]


def test_key_change_onto_another_profiles_key_is_rejected_not_merged():
    linked = profile("p-linked", crm_id="A", email="old@example.com")
    other = profile("p-email")
    result = plan([record("A")], by_crm_id={"A": linked}, by_key={"ana@example.com": other})
    assert not result.updates
    assert result.rejects[0][1].code is RejectCode.DUPLICATE_KEY


def test_match_on_unique_key_links_the_existing_profile():
    result = plan([record("A", email="Ana@Example.com ")], by_key={"ana@example.com": profile("p1")})
    (update,) = result.updates
    assert update.profile.profile_id == "p1"
    assert update.relink


def test_same_record_twice_in_a_batch_is_applied_once_with_its_latest_version():
    result = plan(
        [record("A", firstName="old", at=T0), record("A", firstName="new", at=T0 + timedelta(seconds=1))]
    )
    (create,) = result.creates
    assert create.record.attributes["firstName"] == "new"


def test_identical_record_is_unchanged():
    result = plan([record("A", firstName="Ana")], by_crm_id={"A": profile("p1", crm_id="A", firstName="Ana")})
    assert len(result.unchanged) == 1
    assert not result.updates


def test_older_version_than_stored_is_ignored():
    stored = profile("p1", crm_id="A", at=T0 + timedelta(minutes=5), firstName="new")
    result = plan([record("A", firstName="old", at=T0)], by_crm_id={"A": stored})
    assert len(result.unchanged) == 1


def test_changed_attributes_only_are_updated():
    stored = profile("p1", crm_id="A", firstName="Ana", lastName="Lima")
    (update,) = plan([record("A", firstName="Anna", lastName="Lima")], by_crm_id={"A": stored}).updates
    assert update.changed == {"firstName": "Anna"}


def test_key_owned_by_another_crm_record_is_a_duplicate_key_reject():
    owner = profile("p1", crm_id="B")
    result = plan([record("A")], by_key={"ana@example.com": owner})
    ((_, refused),) = result.rejects
    assert refused.code is RejectCode.DUPLICATE_KEY


def test_two_new_records_with_one_key_create_one_profile_and_reject_the_other():
    result = plan([record("A"), record("B")])
    assert len(result.creates) == 1
    assert result.rejects[0][1].code is RejectCode.DUPLICATE_KEY


def test_without_a_key_records_match_on_crm_id_only():
    result = plan([record("A"), record("B")], key=None)
    assert len(result.creates) == 2


def test_deleted_flag_is_cleared_when_the_record_comes_back():
    stored = profile("p1", crm_id="A")
    stored.deleted_in_crm = True
    (update,) = plan([record("A")], by_crm_id={"A": stored}).updates
    assert update.undelete


def test_a_new_record_with_the_key_of_a_profile_deleted_in_the_crm_takes_the_profile_over():
    stored = profile("p-old", crm_id="A")
    stored.deleted_in_crm = True
    result = plan([record("B", firstName="Ana")], by_key={"ana@example.com": stored})
    assert not result.rejects
    (update,) = result.updates
    assert (update.profile.profile_id, update.relink, update.undelete) == ("p-old", True, True)
    assert update.profile.links[LINK] == "B"


def test_two_new_records_with_the_key_of_a_deleted_profile_take_it_once():
    stored = profile("p-old", crm_id="A")
    stored.deleted_in_crm = True
    result = plan([record("B"), record("C")], by_key={"ana@example.com": stored})
    assert [u.record.crm_id for u in result.updates] == ["B"]
    assert [(r.crm_id, e.code) for r, e in result.rejects] == [("C", RejectCode.DUPLICATE_KEY)]


def test_the_key_of_a_live_profile_linked_to_another_record_is_still_a_duplicate():
    result = plan([record("B")], by_key={"ana@example.com": profile("p-live", crm_id="A")})
    assert [(r.crm_id, e.code) for r, e in result.rejects] == [("B", RejectCode.DUPLICATE_KEY)]
