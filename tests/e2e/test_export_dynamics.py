"""The real export state machine, in the local stack, against the Dataverse emulator (SPEC E1, E2, E4, R1).

Exactly once is checked through the emulator's control API: every profile is in the CRM once, carrying
its profile id in the correlation column `new_marketingprofileid`.
"""

from __future__ import annotations

from collections import Counter

import pytest

from crmsync_local.marketing import marketing_profiles

pytestmark = pytest.mark.slow

EXPORT = "dyn-people-export"
PROFILE_FIELD = "new_marketingprofileid"
BATCH = r"^POST /api/data/v9\.2/\$batch"


class DynamicsExportEnvironment:
    def __init__(self, env):
        self.env = env
        self.crm = env.crm
        self.operator = env.operator
        self.profiles = marketing_profiles(env.container)

    def people(self, count, prefix="p", **attrs):
        rows = [
            {"email": f"{prefix}{i}@example.com", "firstName": f"Ana{i}", "lastName": f"Lima{i}", **attrs}
            for i in range(count)
        ]
        ids = self.profiles.create_local_many(rows, key_attribute="email")
        assert None not in ids
        return ids

    def run(self, **start):
        return self.env.run(EXPORT, **start)

    def contacts(self):
        return self.crm.control.records("contacts")

    def copies_per_profile(self):
        return Counter(r.get(PROFILE_FIELD) for r in self.contacts())

    def configure(self, **changes):
        config = self.env.config
        syncs = [s.model_copy(update=changes) if s.id == EXPORT else s for s in config.syncs]
        self.operator.apply(config.model_copy(update={"syncs": syncs}))


@pytest.fixture
def export_env(dynamics_env):
    return DynamicsExportEnvironment(dynamics_env)


def test_first_export_creates_contacts_and_links_them_back(export_env):
    ids = export_env.people(3)
    summary = export_env.run()
    assert (summary["status"], summary["selected"], summary["created"]) == ("SUCCEEDED", 3, 3)
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)
    contacts = {r[PROFILE_FIELD]: r["contactid"] for r in export_env.contacts()}
    for profile_id in ids:
        assert export_env.profiles.get(profile_id)["externalIds"] == {"dyn-prod:contact": contacts[profile_id]}
    assert summary["window"]["option"] == "LASTEXPORT_acme_dyn-people-export"
    assert summary["watermark_moved"] is True


def test_second_export_sends_only_the_changed_profiles_as_updates_of_their_contacts(export_env):
    ids = export_env.people(4)
    export_env.run()
    export_env.crm.control.reset_stats()
    export_env.profiles.update_local(ids[0], {"lastName": "Renamed"})
    summary = export_env.run()
    assert (summary["selected"], summary["updated"], summary["created"]) == (1, 1, 0)
    assert sorted(r["lastname"] for r in export_env.contacts()) == ["Lima1", "Lima2", "Lima3", "Renamed"]
    assert export_env.crm.control.stats()["calls"]["POST /api/data/v9.2/$batch"] == 1


def test_crash_after_k_of_n_batches_then_resume_puts_every_record_in_the_crm_exactly_once(export_env):
    export_env.configure(batch_size=200, max_concurrency=1)
    ids = export_env.people(1000)
    control = export_env.crm.control
    # Batches 1 and 2 go through. Batch 3 reaches Dataverse but its answer is lost, and the look-up that
    # would resolve it fails for good; batches 4 and 5 are refused. The run dies with 3 of 5 batches in the CRM.
    control.add_fault(BATCH, drop_response=True, after=2, times=1)
    control.add_fault(BATCH, status=503, after=2, times=None)
    control.add_fault(r"^GET /api/data/v9\.2/contacts\?", status=503, times=None)
    failed = export_env.run()
    assert failed["status"] == "FAILED"
    assert len(export_env.contacts()) == 600
    ledger = export_env.operator.container.batches
    assert [e.number for e in ledger.entries(EXPORT, failed["run_id"]) if e.status == "done"] == [1, 2]

    control.clear_faults()
    resumed = export_env.run()
    assert resumed["status"] == "SUCCEEDED"
    assert resumed["resumed_from"] == failed["run_id"]
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)
    assert (resumed["selected"], resumed["created"]) == (1000, 1000)


def test_a_dropped_response_on_an_insert_batch_creates_no_duplicate(export_env):
    export_env.configure(batch_size=200, max_concurrency=1)
    ids = export_env.people(450)
    export_env.crm.control.add_fault(BATCH, drop_response=True, after=1, times=1)
    summary = export_env.run()
    assert (summary["status"], summary["created"]) == ("SUCCEEDED", 450)
    assert export_env.copies_per_profile() == dict.fromkeys(ids, 1)


def test_a_record_dataverse_refuses_becomes_a_reject_with_its_error_code(export_env):
    good = export_env.people(2)
    (too_long,) = export_env.people(1, prefix="long", lastName="L" * 51)
    summary = export_env.run()
    assert (summary["created"], summary["rejected"]) == (2, 1)
    assert export_env.copies_per_profile() == dict.fromkeys(good, 1)
    (reject,) = export_env.operator.rejects(EXPORT)
    assert (reject["profileId"], reject["errorSymbol"]) == (too_long, "0x80044331")
