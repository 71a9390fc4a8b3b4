"""The real import-deleted and delete state machines on a Dynamics connection (SPEC D1-D3): deletions
from change tracking, an expired delta link that still finds them, and deletion through `$batch`."""

from __future__ import annotations

import pytest

from crmsync.config import CrmDeleteSync

pytestmark = pytest.mark.slow

DELETED = "dyn-contacts-deleted"


def imported(env, count):
    ids = env.seed_contacts(count)
    assert env.run("dyn-contacts")["created"] == count
    return ids


def flagged(env, crm_ids):
    by_crm_id = {p["externalId"]: p for p in env.profiles()}
    return {crm_id: bool(by_crm_id[crm_id].get("deletedInCrm")) for crm_id in crm_ids}


def test_a_first_run_compares_id_sets_and_stores_a_delta_link(dynamics_env):
    ids = imported(dynamics_env, 5)
    dynamics_env.crm.control.delete_record("contacts", ids[0])
    summary = dynamics_env.run(DELETED)
    assert (summary["status"], summary["mode"]) == ("SUCCEEDED", "changes")
    assert (summary["compared"], summary["checked"], summary["deleted"]) == (4, 5, 1)
    assert dynamics_env.watermark(DELETED).delta_link


def test_deletions_since_the_delta_link_are_applied_once(dynamics_env):
    ids = imported(dynamics_env, 5)
    dynamics_env.run(DELETED)
    dynamics_env.crm.control.delete_record("contacts", ids[1])
    dynamics_env.crm.control.delete_record("contacts", ids[2])
    summary = dynamics_env.run(DELETED)
    assert (summary["reported"], summary["deleted"], summary["compared"]) == (2, 2, 0)
    assert flagged(dynamics_env, ids) == {i: i in ids[1:3] for i in ids}
    assert dynamics_env.run(DELETED)["deleted"] == 0


def test_an_expired_delta_token_still_finds_the_deletions(dynamics_env):
    ids = imported(dynamics_env, 6)
    dynamics_env.run(DELETED)
    dynamics_env.crm.control.delete_record("contacts", ids[4])
    dynamics_env.crm.control.expire_delta_tokens()
    summary = dynamics_env.run(DELETED)
    assert summary["status"] == "SUCCEEDED"
    assert (summary["compared"], summary["deleted"]) == (5, 1)
    assert flagged(dynamics_env, ids) == {i: i == ids[4] for i in ids}


def add_delete_sync(env):
    sync = CrmDeleteSync(id="dyn-contacts-delete", operation="delete", connection="dyn-prod", object="contact")
    env.operator.apply(env.config.model_copy(update={"syncs": [*env.config.syncs, sync]}))


def test_records_are_deleted_in_dynamics_through_batch_and_twice_is_harmless(dynamics_env):
    ids = imported(dynamics_env, 4)
    add_delete_sync(dynamics_env)
    first = dynamics_env.run("dyn-contacts-delete", population={"ids": ids[:3]})
    assert (first["status"], first["deleted"], first["already_gone"], first["rejected"]) == ("SUCCEEDED", 3, 0, 0)
    remaining = {r["contactid"] for r in dynamics_env.crm.control.records("contacts")}
    assert remaining == {ids[3]}
    assert flagged(dynamics_env, ids) == {i: i in ids[:3] for i in ids}
    again = dynamics_env.run("dyn-contacts-delete", population={"ids": ids[:3]})
    assert (again["deleted"], again["already_gone"], again["rejected"]) == (0, 3, 0)
