"""States a sync could get stuck in, each found by reading the code (issue 10): every test here failed
before its fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crmsync.services.deletion_imports import (
    StartDeletionImportEvent,
    deletion_import_page,
    start_deletion_import,
)

from .conftest import T0

pytestmark = pytest.mark.slow

NOW = T0 + timedelta(days=1)
COMPARE = "sf-contacts-compare"


def by_crm_id(env):
    return {p["externalId"]: p for p in env.profiles()}


def test_a_record_imported_while_the_crm_ids_are_compared_is_not_flagged_deleted(sync_env):
    kept = sync_env.seed_contacts(2)
    assert sync_env.run()["created"] == 2
    container = sync_env.container
    state = start_deletion_import(StartDeletionImportEvent(sync_id=COMPARE, run_id="compare-1"), container)
    while state.page.phase != "sweep":  # the comparison has read every CRM id...
        state = deletion_import_page(state, container)

    sync_env.crm.control.set_clock(NOW + timedelta(hours=1), frozen=True)
    (late,) = sync_env.seed_contacts(1, prefix="late", start=NOW + timedelta(minutes=10))
    assert sync_env.run()["created"] == 1  # ...when another sync imports a record created since

    while not state.page.done:
        state = deletion_import_page(state, container)
    profiles = by_crm_id(sync_env)
    assert {crm_id: bool(profiles[crm_id].get("deletedInCrm")) for crm_id in [*kept, late]} == dict.fromkeys(
        [*kept, late], False
    )
    assert state.totals.deleted == 0


def test_a_record_deleted_before_the_comparison_is_still_flagged(sync_env):
    ids = sync_env.seed_contacts(2)
    assert sync_env.run()["created"] == 2
    sync_env.crm.control.delete("Contact", ids[0], deleted_date=NOW - timedelta(hours=1))
    summary = sync_env.run(COMPARE)
    assert (summary["status"], summary["deleted"]) == ("SUCCEEDED", 1)
    assert by_crm_id(sync_env)[ids[0]]["deletedInCrm"] is True


def test_a_contact_re_created_with_the_email_of_a_deleted_one_is_imported_onto_its_profile(sync_env):
    (old,) = sync_env.seed_contacts(1)
    assert sync_env.run()["created"] == 1
    sync_env.crm.control.delete("Contact", old, deleted_date=NOW - timedelta(hours=2))
    assert sync_env.run("sf-contacts-deleted")["deleted"] == 1

    sync_env.crm.control.set_clock(NOW + timedelta(hours=1), frozen=True)
    (new,) = sync_env.seed_contacts(1, start=NOW + timedelta(minutes=5))  # same e-mail address
    for _ in range(2):
        summary = sync_env.run()
        assert (summary["status"], summary["rejected"]) == ("SUCCEEDED", 0)
    (profile,) = sync_env.profiles()
    assert new in profile["externalIds"].values()
    assert not profile.get("deletedInCrm")
    assert sync_env.operator.rejects("sf-contacts") == []
