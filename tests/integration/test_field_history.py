"""Our connectors read who changed a field and when: Salesforce field history, Dataverse auditing, and the
user crmsync acts as (SPEC O3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.format import format_soql

from crmsync.connectors.port import FieldHistoryConnector
from crmsync.errors import CrmRequestRejected

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_salesforce_names_the_user_of_its_oauth_identity(connector, salesforce_client, salesforce_oauth):
    expected = salesforce_client.query(
        format_soql("SELECT Id FROM User WHERE Username = {}", salesforce_oauth.username)
    )

    assert isinstance(connector, FieldHistoryConnector)
    assert connector.integration_user() == expected["records"][0]["Id"]


def test_salesforce_says_which_fields_history_tracks(connector, salesforce_emulator):
    salesforce_emulator.control.track_history("Contact", ["DoNotCall"])

    tracking = connector.field_tracking("Contact", ["DoNotCall", "HasOptedOutOfEmail"])

    assert (tracking.source, tracking.tracked) == ("history", {"DoNotCall": True, "HasOptedOutOfEmail": False})


def test_salesforce_field_changes_come_from_one_history_query(connector, salesforce_emulator):
    control = salesforce_emulator.control
    control.track_history("Contact", ["HasOptedOutOfEmail"])
    control.set_clock(START)
    ids = control.seed("Contact", [{"LastName": f"H{i}"} for i in range(3)])
    control.set_clock(START + timedelta(minutes=5))
    control.seed("Contact", [{"Id": i, "HasOptedOutOfEmail": True} for i in ids])
    calls = connector.api_calls

    changes = connector.field_changes(
        "Contact", ["HasOptedOutOfEmail"], ids[:2], START, START + timedelta(hours=1)
    )

    assert sorted(c.record_id for c in changes) == sorted(ids[:2])
    assert {(c.value, c.at) for c in changes} == {(True, START + timedelta(minutes=5))}
    assert connector.api_calls - calls <= 2  # the query (and a token on first use)


def test_dynamics_names_its_application_user_from_whoami(dynamics, dynamics_emulator):
    user = dynamics.integration_user()

    users = {r["systemuserid"]: r for r in dynamics_emulator.control.records("systemusers")}
    assert users[user]["applicationid"] == dynamics_emulator.secret_app.client_id


def test_dynamics_tracking_needs_the_environment_the_table_and_the_column(dynamics, dynamics_emulator):
    off = dynamics.field_tracking("contact", ["donotemail"])
    dynamics_emulator.control.set_auditing(
        environment=True, tables={"contact": True}, columns={"contact": {"donotfax": False}}
    )

    on = dynamics.field_tracking("contact", ["donotemail", "donotfax"])

    assert (off.tracked, off.note) == ({"donotemail": False}, "auditing is off for the environment")
    assert on.tracked == {"donotemail": True, "donotfax": False}


def test_dynamics_field_changes_read_each_records_change_history(dynamics, dynamics_emulator):
    control = dynamics_emulator.control
    control.set_auditing(environment=True, tables={"contact": True})
    ids = control.put_records("contacts", [{"lastname": f"A{i}"} for i in range(2)])
    control.put_records("contacts", [{"contactid": ids[0], "donotemail": True}])
    now = datetime.now(UTC)

    changes = dynamics.field_changes(
        "contact", ["donotemail"], ids, now - timedelta(hours=1), now + timedelta(hours=1)
    )

    latest = {c.record_id: c for c in changes}  # oldest first: the creation's values, then the update
    assert (latest[ids[0]].value, latest[ids[1]].value) == (True, False)
    assert latest[ids[0]].author == control.info()["admin_user_id"]


def test_dynamics_a_column_cleared_is_a_change_to_null(dynamics, dynamics_emulator):
    control = dynamics_emulator.control
    control.set_auditing(environment=True, tables={"contact": True})
    (contact,) = control.put_records("contacts", [{"lastname": "A", "jobtitle": "Buyer"}])
    control.put_records("contacts", [{"contactid": contact, "jobtitle": None}])
    now = datetime.now(UTC)

    changes = dynamics.field_changes(
        "contact", ["jobtitle"], [contact], now - timedelta(hours=1), now + timedelta(hours=1)
    )

    assert [c.value for c in changes] == ["Buyer", None]  # Dataverse leaves a null out of NewValue


def _history_calls(emulator) -> dict[str, int]:
    return {k: n for k, n in emulator.control.stats()["calls"].items() if "$batch" in k or "RetrieveRecord" in k}


def test_dynamics_change_histories_of_many_records_are_read_in_one_batch(dynamics, dynamics_emulator):
    control = dynamics_emulator.control
    control.set_auditing(environment=True, tables={"contact": True})
    ids = control.put_records("contacts", [{"lastname": f"A{i}"} for i in range(5)])
    control.put_records("contacts", [{"contactid": c, "donotemail": True} for c in ids[:3]])
    now = datetime.now(UTC)
    control.reset_stats()

    changes = dynamics.field_changes(
        "contact", ["donotemail"], ids, now - timedelta(hours=1), now + timedelta(hours=1)
    )

    assert _history_calls(dynamics_emulator) == {"POST /api/data/v9.2/$batch": 1}  # 5 function calls, 1 request
    latest = {c.record_id: c.value for c in changes}
    assert [latest[c] for c in ids] == [True, True, True, False, False]


def test_dynamics_a_batch_of_history_reads_cut_off_is_sent_again(dynamics, dynamics_emulator):
    control = dynamics_emulator.control
    control.set_auditing(environment=True, tables={"contact": True})
    ids = control.put_records("contacts", [{"lastname": f"A{i}", "donotemail": True} for i in range(3)])
    now = datetime.now(UTC)
    control.add_fault(r"^POST .*\$batch", status=503, times=1)
    control.reset_stats()

    changes = dynamics.field_changes(
        "contact", ["donotemail"], ids, now - timedelta(hours=1), now + timedelta(hours=1)
    )

    assert {c.record_id for c in changes} == set(ids)  # reads change nothing: the batch is simply repeated
    assert _history_calls(dynamics_emulator) == {"POST /api/data/v9.2/$batch": 2}


def test_dynamics_a_history_the_batch_refuses_is_read_again_alone_and_fails_as_a_lone_read(
    dynamics, dynamics_emulator
):
    control = dynamics_emulator.control
    control.set_auditing(environment=True, tables={"contact": True})
    ids = control.put_records("contacts", [{"lastname": f"A{i}", "donotemail": True} for i in range(2)])
    gone = str(uuid.uuid4())  # changed in the window, deleted since: its history is refused (404)
    now = datetime.now(UTC)
    control.reset_stats()

    with pytest.raises(CrmRequestRejected) as refused:
        list(
            dynamics.field_changes(
                "contact",
                ["donotemail"],
                [ids[0], gone, ids[1]],
                now - timedelta(hours=1),
                now + timedelta(hours=1),
            )
        )

    assert gone in str(refused.value)
    calls = _history_calls(dynamics_emulator)
    assert calls.pop("POST /api/data/v9.2/$batch") == 1
    assert [(k.split(" ")[0], "RetrieveRecordChangeHistory" in k, n) for k, n in calls.items()] == [
        ("GET", True, 1)
    ]  # the refused one, alone
