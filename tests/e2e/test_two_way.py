"""The real two-way state machine in the local stack, on both CRM emulators: opt-outs move both ways, the
latest change wins, nothing echoes, and every change applied is in the consent ledger (SPEC O1-O3).

Each CRM change is made through the control API as a person (never the integration user), at a moment
placed relative to the marketing side's own change time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crmsync.stores.profiles import ProfileStore

from .optouts import OptOuts

pytestmark = pytest.mark.slow


@pytest.fixture(params=["salesforce", "dynamics"])
def kind(request):
    return request.param


@pytest.fixture
def env(kind, request):
    return request.getfixturevalue("sync_env" if kind == "salesforce" else "dynamics_env")


@pytest.fixture
def optouts(env, kind):
    sync = OptOuts(env, kind)
    sync.side.track("email", "phone")
    return sync


def test_a_crm_opt_out_reaches_the_profile(optouts):
    crm_id = optouts.crm_ids[0]
    optouts.side.change(crm_id, optouts.side_now(), email=True)

    summary = optouts.run()

    assert summary["status"] == "SUCCEEDED", summary
    assert optouts.marketing(0) == {"email": True, "phone": False}
    assert (summary["marketing"]["fields_written"], summary["crm"]["fields_written"]) == (1, 0)
    (row,) = optouts.consent(0)
    assert (row["channel"], row["value"], row["sourceSide"], row["sourceRecord"]) == (
        optouts.side.attributes["email"],
        True,
        "crm",
        crm_id,
    )
    assert row["timeSource"] in ("history", "audit")


def test_a_marketing_opt_out_reaches_the_crm(optouts):
    optouts.mark(1, phone=True)

    summary = optouts.run()

    assert optouts.side.values(optouts.crm_ids[1]) == {"email": False, "phone": True}
    assert (summary["crm"]["fields_written"], summary["crm"]["records_written"]) == (1, 1)
    (row,) = optouts.consent(1)
    assert (row["sourceSide"], row["timeSource"], row["sourceRecord"]) == (
        "marketing",
        "profile_attribute",
        optouts.profile_ids[1],
    )


def test_both_changed_and_the_crm_later_the_crm_wins(optouts):
    crm_id = optouts.crm_ids[0]
    marked = optouts.mark(0, email=True)
    optouts.side.change(crm_id, marked - timedelta(seconds=20), email=True)
    optouts.side.change(crm_id, marked + timedelta(seconds=30), email=False)  # a person takes it back, later

    summary = optouts.run()

    assert (optouts.marketing(0)["email"], optouts.side.values(crm_id)["email"]) == (False, False)
    assert summary["conflicts"] == 1
    assert summary["decided_by"] == {"later_change": 1}


def test_both_changed_and_the_marketing_side_later_it_wins(optouts):
    crm_id = optouts.crm_ids[0]
    marked = optouts.mark(0, email=True)
    optouts.side.change(crm_id, marked - timedelta(seconds=60), email=True)
    optouts.side.change(crm_id, marked - timedelta(seconds=30), email=False)

    summary = optouts.run()

    assert (optouts.marketing(0)["email"], optouts.side.values(crm_id)["email"]) == (True, True)
    assert summary["decided_by"] == {"later_change": 1}


def test_changes_within_the_tolerance_opt_out(optouts):
    crm_id = optouts.crm_ids[0]
    marked = optouts.mark(0, email=True)
    optouts.side.change(crm_id, marked - timedelta(seconds=60), email=True)
    optouts.side.change(crm_id, marked + timedelta(seconds=1), email=False)  # later, but within 2 s

    summary = optouts.run()

    assert (optouts.marketing(0)["email"], optouts.side.values(crm_id)["email"]) == (True, True)
    assert summary["decided_by"] == {"tie_restrictive": 1}


def test_a_sync_written_value_does_not_echo_and_a_second_run_writes_nothing(optouts):
    optouts.mark(2, phone=True)
    optouts.side.change(optouts.crm_ids[0], optouts.side_now(), email=True)
    first = optouts.run()
    optouts.side.reset_stats()

    second = optouts.run()

    assert (first["crm"]["fields_written"], first["marketing"]["fields_written"]) == (1, 1)
    assert (second["crm"]["fields_written"], second["marketing"]["fields_written"]) == (0, 0)
    assert second["crm"]["echoes_skipped"] >= 1
    assert optouts.side.write_calls() == 0
    assert len(optouts.consent(0)) == len(optouts.consent(2)) == 1  # one ledger row per real change


def test_a_human_edit_of_another_field_after_our_write_is_not_hidden(optouts):
    crm_id = optouts.crm_ids[0]
    optouts.mark(0, phone=True)
    optouts.run()  # we write the phone opt-out: the record's last modifier is now the integration user
    optouts.side.change(crm_id, optouts.side_now(), email=True)

    summary = optouts.run()

    assert optouts.marketing(0) == {"email": True, "phone": True}
    assert summary["marketing"]["fields_written"] == 1


def test_the_crash_between_the_crm_write_and_the_profile_write_resumes_without_a_double_write(
    optouts, monkeypatch
):
    crm_id = optouts.crm_ids[0]
    optouts.mark(1, phone=True)
    optouts.side.change(crm_id, optouts.side_now(), email=True)
    original = ProfileStore.apply_synced

    def crash(*args, **kwargs):
        raise RuntimeError("the function died between the CRM write and the profile write")

    monkeypatch.setattr(ProfileStore, "apply_synced", crash)
    failed = optouts.run()
    assert failed["status"] == "FAILED"
    assert optouts.side.values(optouts.crm_ids[1])["phone"] is True  # the CRM side was written
    assert optouts.marketing(0)["email"] is False  # the profile was not
    monkeypatch.setattr(ProfileStore, "apply_synced", original)
    optouts.side.reset_stats()

    resumed = optouts.run()

    assert (resumed["status"], resumed["resumed_from"]) == ("SUCCEEDED", failed["run_id"])
    assert optouts.side.write_calls() == 0  # nothing written twice
    assert optouts.marketing(0)["email"] is True  # nothing lost
    assert len(optouts.consent(0)) == len(optouts.consent(1)) == 1


@pytest.mark.parametrize("direction", ["disabled", "crm_to_marketing", "marketing_to_crm"])
def test_a_direction_moves_only_its_way(env, kind, direction):
    optouts = OptOuts(env, kind, direction=direction, sync_id=f"{direction.replace('_', '-')}-optouts")
    optouts.side.track("email", "phone")
    optouts.mark(0, phone=True)
    optouts.side.change(optouts.crm_ids[1], optouts.side_now(), email=True)

    summary = optouts.run()

    assert summary["status"] == "SUCCEEDED", summary
    to_crm = optouts.side.values(optouts.crm_ids[0])["phone"]
    to_marketing = optouts.marketing(1)["email"]
    assert (to_crm, to_marketing) == {
        "disabled": (False, False),
        "crm_to_marketing": (False, True),
        "marketing_to_crm": (True, False),
    }[direction]


def test_without_field_history_the_record_time_is_used_and_said_so(env, kind):
    optouts = OptOuts(env, kind)
    optouts.side.track("email")  # the phone field has no per-field history
    optouts.side.change(optouts.crm_ids[0], optouts.side_now(), phone=True)

    summary = optouts.run()

    assert optouts.marketing(0)["phone"] is True
    assert summary["tracking"][optouts.side.fields["phone"]] == "record_timestamp"
    (row,) = optouts.consent(0)
    assert row["timeSource"] == "record_timestamp"


def test_a_workflow_re_saving_the_same_value_is_not_a_change(sync_env):
    optouts = OptOuts(sync_env, "salesforce")
    optouts.side.track("email")  # phone: record timestamps only
    optouts.mark(0, phone=True)
    optouts.run()
    optouts.side.reset_stats()
    optouts.side.change(optouts.crm_ids[0], optouts.side_now(), as_integration=True, phone=True)

    summary = optouts.run()

    assert (summary["crm"]["fields_written"], summary["marketing"]["fields_written"]) == (0, 0)
    assert optouts.side.write_calls() == 0
    assert len(optouts.consent(0)) == 1
