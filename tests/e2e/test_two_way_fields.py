"""The real two-way state machine on both CRM emulators, for any field (SPEC B1-B2): per-field priority and
update blank values over the whole matrix in one run, rapid changes decided once on their last value, and
the per-field counts of the run's summary.

The matrix is the one of tests/unit/test_two_way_fields_judge.py, run end to end: each contact is one row
(which side changed, which value is empty), each of its six fields one column (priority crm / marketing /
latest, without and with update_blank_values), so one run decides all 96 cells."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.config import Target, TwoWayCreate, TwoWayField, TwoWaySync, WatermarkSettings
from crmsync_local.marketing import marketing_profiles
from tests.unit.test_two_way_fields_judge import MATRIX

from .conftest import DynamicsSyncEnvironment
from .two_way_fields import COLUMNS, FieldSync

pytestmark = pytest.mark.slow

C, M, OLD = "C-crm", "M-mkt", "old"


@pytest.fixture(params=["sync_env", "dynamics_env"], ids=["salesforce", "dynamics"])
def env(request):
    """Each test on both CRM emulators."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def kind(env):
    return "dynamics" if isinstance(env, DynamicsSyncEnvironment) else "salesforce"


def _rows():
    rows = []
    for line in MATRIX.strip().splitlines()[1:]:
        sides, outcomes = line.split("||")
        crm_part, mkt_part = sides.split("|")
        crm_changed, crm_value = crm_part.split()
        mkt_changed, mkt_value = mkt_part.split()
        rows.append(
            {
                "crm_changed": crm_changed == "yes",
                "crm": None if crm_value == "''" else C,
                "mkt_changed": mkt_changed == "yes",
                "mkt": None if mkt_value == "''" else M,
                "expected": [
                    None if o == "-" else ("" if o == "''" else (C if o == "C" else M)) for o in outcomes.split()
                ],
                "unchanged": [o == "-" for o in outcomes.split()],
            }
        )
    return rows


def _blank(value):
    return None if value in (None, "") else value


def test_every_cell_of_the_priority_and_blank_values_matrix_in_one_run(env, kind):
    rows = _rows()
    locals_ = [f"f_{c}" for c in COLUMNS]
    # The CRM holds its row's value, or an old one it is about to change; the first run brings it in.
    initial = {i: dict.fromkeys(locals_, OLD if r["crm_changed"] else r["crm"]) for i, r in enumerate(rows)}
    sync = FieldSync(env, kind, count=len(rows), initial=initial)
    for index, row in enumerate(rows):  # the marketing side's held values, from before that run's end
        sync.hold(index, dict.fromkeys(locals_, OLD if row["mkt_changed"] else (row["mkt"] or "")))
    marked = None
    for index, row in enumerate(rows):
        if row["mkt_changed"]:
            marked = sync.mark(index, dict.fromkeys(locals_, row["mkt"] or ""))
    assert marked is not None
    for index, row in enumerate(rows):  # the CRM's changes are the later (latest: the CRM wins)
        changes = dict.fromkeys(locals_, row["crm"]) if row["crm_changed"] else {}
        sync.crm_edit(index, marked + timedelta(seconds=30), changes)

    summary = sync.run()

    assert summary["status"] == "SUCCEEDED", summary
    crm_after, marketing_after = sync.crm_values(), sync.marketing_values()
    found, wanted = {}, {}
    for index, row in enumerate(rows):
        for column, local in enumerate(locals_):
            cell = f"row {index + 1} {COLUMNS[column]}"
            found[cell] = (_blank(crm_after[index][local]), _blank(marketing_after[index][local]))
            if row["unchanged"][column]:
                wanted[cell] = (row["crm"], row["mkt"])
            else:
                wanted[cell] = (_blank(row["expected"][column]),) * 2
    assert found == wanted
    fields = summary["fields"]
    assert (fields["f_crm"]["by_priority"], fields["f_marketing"]["by_priority"]) == (3, 3)
    assert (fields["f_latest"]["by_time"], fields["f_latest_blank"]["by_time"]) == (3, 2)
    assert (fields["f_crm_blank"]["blanks_filled"], fields["f_latest_blank"]["blanks_filled"]) == (3, 5)


def test_ten_rapid_changes_on_both_sides_converge_in_one_run_and_stay_still_on_the_next(env, kind):
    sync = FieldSync(env, kind, count=1)
    marked = None
    for n in range(10):
        marked = sync.mark(0, {"f_latest": f"marketing {n}", "f_crm": f"marketing {n}"})
        sync.crm_edit(0, marked - timedelta(seconds=60 - n), {"f_latest": f"crm {n}", "f_crm": f"crm {n}"})
    first = sync.run()
    env.crm.control.reset_stats()

    second = sync.run()

    assert (first["status"], second["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert sync.crm_values()[0]["f_latest"] == sync.marketing_values()[0]["f_latest"] == "marketing 9"
    assert sync.crm_values()[0]["f_crm"] == sync.marketing_values()[0]["f_crm"] == "crm 9"
    assert (first["fields"]["f_latest"]["by_time"], first["fields"]["f_crm"]["by_priority"]) == (1, 1)
    assert (second["crm"]["fields_written"], second["marketing"]["fields_written"]) == (0, 0)
    assert sync.crm_writes() == 0


def test_a_human_change_after_our_write_is_the_humans(env, kind):
    sync = FieldSync(env, kind, count=1)
    sync.mark(0, {"f_latest": "from marketing"})
    sync.run()  # we write "from marketing" to the CRM
    sync.crm_edit(0, sync.mark(0, {"f_crm": "unrelated"}) + timedelta(seconds=5), {"f_latest": "a person's"})

    summary = sync.run()

    assert sync.marketing_values()[0]["f_latest"] == "a person's"
    assert summary["fields"]["f_latest"]["from_crm"] == 1


PEOPLE = {
    "salesforce": {"email": "Email", "lastName": "LastName", "f_crm": "Title"},
    "dynamics": {"email": "emailaddress1", "lastName": "lastname", "f_crm": "jobtitle"},
}


def test_records_created_on_each_side_reach_the_other_and_one_created_on_both_is_linked_once(env, kind):
    names = PEOPLE[kind]
    fields = [
        TwoWayField(remote=names["email"], local="email"),
        TwoWayField(remote=names["lastName"], local="lastName"),
        TwoWayField(remote=names["f_crm"], local="f_crm", priority="crm"),
    ]
    sync = FieldSync(env, kind, count=1, fields=fields, creating=True)
    domain = "example.com" if kind == "salesforce" else "example.net"
    # Between two runs: Ana is created in the CRM, Bea on the marketing side, Cy on both (same e-mail).
    now = datetime.now(UTC).replace(microsecond=0)
    ana, cy = env.seed_contacts(2, start=now, prefix="new")
    email_of = {ana: f"ana.new0@{domain}", cy: f"ana.new1@{domain}"}
    store = marketing_profiles(env.container)
    bea, cy_profile = store.create_local_many(
        [
            {"email": "bea@example.org", "lastName": "Bea"},
            {"email": email_of[cy].upper(), "lastName": "Cy", "f_crm": "from marketing"},
        ],
        key_attribute="email",
    )
    env.crm.control.set_clock(now, frozen=True)
    if kind == "salesforce":
        env.crm.control.seed("Contact", [{"Id": cy, "Title": "from the CRM", "LastModifiedDate": now.isoformat()}])
    else:
        env.crm.control.put_records("contacts", [{"contactid": cy, "jobtitle": "from the CRM"}])

    summary = sync.run()

    assert summary["status"] == "SUCCEEDED", summary
    link = f"{'sf-prod:Contact' if kind == 'salesforce' else 'dyn-prod:contact'}"
    profiles = {p["profileId"]: p for p in env.profiles()}
    linked = {(p.get("externalIds") or {}).get(link): p for p in profiles.values()}
    if kind == "salesforce":
        records = env.crm.control.records("Contact")
        key, id_field = "Email", "Id"
    else:
        records = env.crm.control.records("contacts")
        key, id_field = "emailaddress1", "contactid"
    by_email = {}
    for record in records:
        by_email.setdefault((record.get(key) or "").lower(), []).append(record)
    assert linked[ana]["attrs"]["email"] == email_of[ana]  # the CRM's new record became a profile
    assert [r[id_field] for r in by_email["bea@example.org"]] == [profiles[bea]["externalIds"][link]]
    assert [r[id_field] for r in by_email[email_of[cy]]] == [cy]  # one CRM record, linked to the one profile
    assert profiles[cy_profile]["externalIds"][link] == cy
    assert sum(1 for p in profiles.values() if (p["attrs"].get("email") or "").lower() == email_of[cy]) == 1
    assert (profiles[cy_profile]["attrs"]["f_crm"], by_email[email_of[cy]][0][names["f_crm"]]) == (
        "from the CRM",
    ) * 2
    assert (summary["created_in_marketing"], summary["created_in_crm"], summary["linked"]) == (1, 1, 1)


SUBSCRIPTIONS = {
    "salesforce": {
        "object": "Subscription__c",
        "set": "Subscription__c",
        "id": "Id",
        "name": "Name",
        "both": "Status__c",
        "values": ("Active", "Paused", "Cancelled"),
        # the import's replacements going in, their reverse going out
        "replace": {"Active": "on", "Paused": "paused", "Cancelled": "off"},
    },
    "dynamics": {
        "object": "new_subscription",
        "set": "new_subscriptions",
        "id": "new_subscriptionid",
        "name": "new_name",
        "both": "new_email",
        "values": ("a@subs.example", "b@subs.example", "c@subs.example"),
        "replace": {},
    },
}


def test_a_custom_object_both_ways(env, kind):
    spec = SUBSCRIPTIONS[kind]
    control = env.crm.control
    seed = control.seed if kind == "salesforce" else control.put_records
    first, second = spec["values"][0], spec["values"][1]
    ids = seed(spec["set"], [{spec["name"]: f"S{i}", spec["both"]: first} for i in range(2)])
    ids = [i.lower() for i in ids] if kind == "dynamics" else ids
    sync = TwoWaySync(
        id="subscriptions-both-ways",
        operation="two_way",
        connection="sf-prod" if kind == "salesforce" else "dyn-prod",
        object=spec["object"],
        target=Target(kind="resource", resource="subs"),
        create=TwoWayCreate(in_marketing=True),
        fields=[
            TwoWayField(remote=spec["name"], local="name", direction="crm_to_marketing"),
            TwoWayField(remote=spec["both"], local="state", priority="marketing", replace=spec["replace"]),
        ],
        watermark=WatermarkSettings(overlap_seconds=3600, lag_seconds=0),
    )
    syncs = [s for s in env.config.syncs if s.object != spec["object"]] + [sync]
    env.config = env.config.model_copy(update={"syncs": syncs})
    env.operator.apply(env.config)
    control.set_clock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5), frozen=True)
    assert env.run(sync.id)["status"] == "SUCCEEDED"  # the first run: the rows are created
    resources = env.container.resources
    as_local = spec["replace"] or {v: v for v in spec["values"]}
    # Between two runs: the CRM changes S0's state and creates S2; the marketing side changes S1's state.
    now = datetime.now(UTC).replace(microsecond=0)
    control.set_clock(now, frozen=True)
    seed(spec["set"], [{spec["id"]: ids[0], spec["both"]: spec["values"][2]}])
    (new,) = seed(spec["set"], [{spec["name"]: "S2", spec["both"]: first}])
    new = new.lower() if kind == "dynamics" else new
    resources.update_local("subs", ids[1], {"state": as_local[second]})
    time.sleep(1.05)
    control.set_clock(now + timedelta(minutes=5), frozen=True)

    summary = dict(env.run(sync.id))

    assert summary["status"] == "SUCCEEDED", summary
    rows = {r["sk"]: r["attrs"] for r in resources.all("subs")}
    crm = {
        (r[spec["id"]].lower() if kind == "dynamics" else r[spec["id"]]): r for r in control.records(spec["set"])
    }
    assert rows[ids[0]]["state"] == as_local[spec["values"][2]]  # the CRM's change, converted going in
    assert crm[ids[1]][spec["both"]] == second  # the marketing change, converted back going out
    assert rows[new] == {"name": "S2", "state": as_local[first]}  # a record created in the CRM: a new row
    assert (summary["created_in_marketing"], summary["fields"]["state"]["from_marketing"]) == (1, 1)


def test_a_profile_created_on_the_marketing_side_is_upserted_by_its_external_id(sync_env):
    fields = [TwoWayField(remote=n, local=local) for local, n in PEOPLE["salesforce"].items()]
    sync = FieldSync(sync_env, "salesforce", count=1, fields=fields, creating=True, upsert="External_Id__c")
    (bea,) = marketing_profiles(sync_env.container).create_local_many(
        [{"email": "bea@example.org", "lastName": "Bea"}], key_attribute="email"
    )

    summary = sync.run()

    (record,) = [r for r in sync_env.crm.control.records("Contact") if r.get("Email") == "bea@example.org"]
    assert record["External_Id__c"] == bea  # upserted on the profile id: the CRM matches it if sent again
    assert sync_env.container.profiles.get(bea)["externalIds"]["sf-prod:Contact"] == record["Id"]
    assert summary["created_in_crm"] == 1
