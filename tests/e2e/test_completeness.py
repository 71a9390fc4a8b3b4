"""Did every CRM record arrive? The completeness check that ends a transfer, and the Salesforce incremental
import's COUNT() check of its window (issue 16, SPEC T1, T2, I7), on one local stack for the module and
the Salesforce emulator behind `sf-contacts` of examples/syncs.yaml.

Each test empties the emulator's Contact table first and seeds its own contacts, with e-mail addresses of
its own, so the profiles earlier tests left behind never match them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import load_config
from crmsync.connectors.salesforce.connector import SalesforceConnector
from crmsync.services.imports import StartImportEvent, finish_import, import_page, start_import
from crmsync.services.operations import Operator
from crmsync_local.emulators.dynamics import DynamicsControl
from crmsync_local.emulators.salesforce import SalesforceControl
from crmsync_local.marketing import marketing_profiles
from crmsync_local.stack import LocalStack

from .conftest import ROOT, T0, salesforce_example_config

pytestmark = pytest.mark.slow
HEADER = "Id,SystemModstamp,FirstName,LastName,Email,HasOptedOutOfEmail\n"


class Env:
    def __init__(
        self, operator: Operator, control: SalesforceControl, dynamics: DynamicsControl, environ: dict[str, str]
    ) -> None:
        self.operator = operator
        self.control = control
        self.dynamics = dynamics
        self.environ = environ
        """The variables examples/syncs.yaml was loaded with (the emulators' addresses)."""

    @property
    def container(self):
        return self.operator.container

    def seed(self, count: int, **fields: Any) -> list[str]:
        """`count` contacts modified an hour apart from T0, with e-mail addresses no other test uses."""
        tag = uuid.uuid4().hex[:6]
        rows = []
        for i in range(count):
            stamp = (T0 + timedelta(hours=i)).isoformat()
            rows.append(
                {
                    "FirstName": f"Ana{i}",
                    "LastName": f"Lima{tag}",
                    "Email": f"ana{i}.{tag}@example.com",
                    "SystemModstamp": stamp,
                    "LastModifiedDate": stamp,
                    "CreatedDate": stamp,
                    **fields,
                }
            )
        return self.control.seed("Contact", rows)

    def linked(self, crm_ids: list[str]) -> set[str]:
        """Those of `crm_ids` a local profile is linked to."""
        wanted = set(crm_ids)
        return {p["externalId"] for p in marketing_profiles(self.container).scan_profiles()} & wanted


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, salesforce_server, dynamics_server) -> Iterator[Env]:
    dynamics = DynamicsControl(dynamics_server.url, dynamics_server.ca_bundle)
    dynamics.reset()
    app = dynamics.register_app(client_id=str(uuid.uuid4()), client_secret="dyn-secret", display_name="crmsync")
    control = SalesforceControl(salesforce_server.url, salesforce_server.ca_bundle)
    control.reset()
    control.register_user("sync-completeness@crmsync.example", password="Pa55word!", security_token="TOKEN")
    control.register_app(
        "3MVG9completeness", client_secret="secret-completeness", username="sync-completeness@crmsync.example"
    )
    control.set_clock(T0 + timedelta(days=1), frozen=True)
    log_path = tmp_path_factory.mktemp("completeness") / "local-stack.log"
    with pytest.MonkeyPatch.context() as patch, LocalStack(time_scale=0, log_path=log_path) as stack:
        patch.setenv("AWS_DEFAULT_REGION", stack.region)
        patch.setenv("CRMSYNC_RETRY_BASE_DELAY_SECONDS", "0")
        stack.client("secretsmanager").create_secret(
            Name="crmsync/sf-prod",
            SecretString=json.dumps({"client_id": "3MVG9completeness", "client_secret": "secret-completeness"}),
        )
        stack.client("secretsmanager").create_secret(
            Name="crmsync/dyn-prod",
            SecretString=json.dumps({"client_id": app["client_id"], "client_secret": "dyn-secret"}),
        )
        emulator = dynamics_server.app
        environ = {
            "CRMSYNC_SALESFORCE_URL": salesforce_server.url,
            "CRMSYNC_CA_BUNDLE": salesforce_server.ca_bundle,
            "CRMSYNC_DYNAMICS_URL": dynamics_server.url,
            "CRMSYNC_DYNAMICS_TENANT_ID": app["tenant_id"],
            "CRMSYNC_DYNAMICS_AUTHORITY": emulator.authority,
        }
        config = salesforce_example_config(salesforce_server.url, salesforce_server.ca_bundle, **environ)
        operator = Operator("crmsync")
        operator.apply(config)
        yield Env(operator, control, dynamics, environ)


@pytest.fixture
def fresh(env: Env) -> Env:
    """No contact in the CRM, no watermark for sf-contacts, no fault left by another test."""
    env.control.purge("Contact")
    env.control.clear_faults()
    env.operator.reset_watermark("sf-contacts")
    return env


def csv_of(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def rows_of(ids: list[str], tag: str, opted_out: list[str]) -> list[str]:
    """CSV rows of `ids`, an hour apart, with e-mail addresses `tag` makes unique and these opt-out cells."""
    return [
        f"{crm_id},2024-03-01T{9 + n:02d}:00:00Z,Ana{n},Lima,{tag}{n}@example.org,{cell}"
        for n, (crm_id, cell) in enumerate(zip(ids, opted_out, strict=True))
    ]


# ------------------------------------------------------------------------------------- transfers
def test_a_record_cut_from_the_transfer_file_is_re_read_by_id_and_loaded(fresh, tmp_path):
    ids = fresh.seed(3)
    (left_out,) = fresh.seed(1, HasOptedOutOfEmail=True, DoNotCall=True)  # the sync's filter leaves it out
    contacts = csv_of(
        tmp_path / "contacts.csv",
        [
            f"{ids[0]},2024-03-01T09:00:00Z,Ana0,Lima,a0@example.org,false",
            f"{ids[1]},2024-03-01T10:00:00Z,Ana1,Lima,a1@example.org,false",
        ],
    )

    summary = fresh.operator.transfer("sf-contacts", str(contacts))

    figures = summary.completeness
    assert figures is not None
    assert (figures.crm_ids, figures.loaded, figures.rejected, figures.filtered) == (4, 2, 0, 1)
    assert (figures.missing, figures.re_read, figures.still_missing, figures.created) == (1, 1, 0, 1)
    assert fresh.linked([*ids, left_out]) == set(ids)


def test_rows_the_transfer_rejected_are_accounted_for_and_not_re_read(fresh, tmp_path):
    ids = fresh.seed(3)
    contacts = csv_of(
        tmp_path / "bad.csv",
        [
            f"{ids[0]},2024-03-01T09:00:00Z,Ana0,Lima,b0@example.org,false",
            f"{ids[1]},2024-03-01T10:00:00Z,Ana1,Lima,b1@example.org,maybe",
            f"{ids[2]},2024-03-01T11:00:00Z,Ana2,Lima,b2@example.org,false,surplus",
        ],
    )

    summary = fresh.operator.transfer("sf-contacts", str(contacts))

    assert (summary.created, summary.rejected) == (1, 2)
    figures = summary.completeness
    assert figures is not None
    assert (figures.crm_ids, figures.loaded, figures.rejected, figures.missing, figures.re_read) == (3, 1, 2, 0, 0)
    rejects = fresh.operator.rejects("sf-contacts", run_id=summary.run_id)
    assert sorted(r["errorMessage"] for r in rejects) == [
        f"{contacts}: row 3, column 6 (HasOptedOutOfEmail): 'maybe' is not a boolean (true, false, 1, 0)",
        f"{contacts}: row 4, column 7: 7 cells for the header's 6 columns",
    ]


def test_15_character_salesforce_ids_in_the_file_reconcile_with_the_crms_18_character_ids(fresh, tmp_path):
    ids = fresh.seed(3)
    # A report or Data Loader export: the 15-character, case-sensitive form of each id.
    contacts = csv_of(tmp_path / "report.csv", rows_of([crm_id[:15] for crm_id in ids], "r", ["false"] * 3))

    summary = fresh.operator.transfer("sf-contacts", str(contacts))

    assert summary.created == 3
    figures = summary.completeness
    assert figures is not None
    assert (figures.crm_ids, figures.loaded, figures.missing, figures.re_read) == (3, 3, 0, 0)
    assert fresh.linked(ids) == set(ids)


def test_the_check_tells_what_this_run_loaded_from_what_an_earlier_run_left_held(fresh, tmp_path):
    ids = fresh.seed(3)
    fresh.operator.transfer("sf-contacts", str(csv_of(tmp_path / "all.csv", rows_of(ids, "h", ["false"] * 3))))
    supplement = csv_of(tmp_path / "one.csv", rows_of(ids[:1], "h", ["false"]))

    summary = fresh.operator.transfer("sf-contacts", str(supplement), check=True)

    figures = summary.completeness
    assert figures is not None
    assert (figures.loaded, figures.loaded_by_run, figures.already_held, figures.missing) == (3, 1, 2, 0)


@pytest.fixture
def unrouted(fresh: Env) -> Iterator[Env]:
    """sf-contacts with `rejects.route: false`: its rejects are logged and counted, never stored."""
    text = (ROOT / "examples/syncs.yaml").read_text()
    routed = "    schedule_timezone: Europe/Paris\n    rejects:\n      route: true\n\n  - id: sf-subscriptions\n"
    assert routed in text
    unrouted_text = text.replace(routed, routed.replace("route: true", "route: false"), 1)
    fresh.operator.apply(load_config(unrouted_text, environ=fresh.environ))
    try:
        yield fresh
    finally:
        fresh.operator.apply(load_config(text, environ=fresh.environ))


def test_rows_rejected_without_reject_routing_count_as_rejected_not_missing(unrouted, tmp_path):
    ids = unrouted.seed(2)
    contacts = csv_of(tmp_path / "unrouted.csv", rows_of(ids, "u", ["false", "maybe"]))  # the 2nd is refused

    summary = unrouted.operator.transfer("sf-contacts", str(contacts))

    assert (summary.created, summary.rejected) == (1, 1)
    assert unrouted.operator.rejects("sf-contacts", run_id=summary.run_id) == []
    figures = summary.completeness
    assert figures is not None
    assert (figures.crm_ids, figures.loaded, figures.rejected, figures.missing, figures.re_read) == (2, 1, 1, 0, 0)


def test_a_transfer_into_a_sync_that_imports_incrementally_is_not_checked_by_default(fresh, tmp_path):
    ids = fresh.seed(2)
    fresh.operator.set_watermark("sf-contacts", "2024/03/01 00:00:00")
    contacts = csv_of(tmp_path / "one.csv", [f"{ids[0]},2024-03-01T09:00:00Z,Ana0,Lima,c0@example.org,false"])

    summary = fresh.operator.transfer("sf-contacts", str(contacts))

    assert summary.completeness is None
    assert fresh.linked(ids) == {ids[0]}


def test_an_id_deleted_from_a_dataverse_part_file_is_re_read_by_id_and_loaded(env, tmp_path):
    tag = uuid.uuid4().hex[:6]
    stamp = T0.isoformat()
    ids = env.dynamics.put_records(
        "contacts",
        [
            {
                "firstname": f"Rui{i}",
                "lastname": tag,
                "emailaddress1": f"rui{i}.{tag}@example.net",
                "modifiedon": stamp,
            }
            for i in range(3)
        ],
    )
    part = tmp_path / "part-000001.jsonl"
    part.write_text(
        "".join(
            json.dumps({"contactid": i, "modifiedon": stamp, "lastname": tag, "emailaddress1": f"{i}@example.net"})
            + "\n"
            for i in ids[:2]  # the third line was lost
        ),
        encoding="utf-8",
    )

    summary = env.operator.transfer("dyn-contacts", str(part))

    figures = summary.completeness
    assert figures is not None
    assert (figures.crm_ids, figures.loaded, figures.missing, figures.re_read, figures.created) == (3, 2, 1, 1, 1)
    assert env.linked(ids) == set(ids)


# ------------------------------------------------------------------------------------- incremental imports
def test_a_window_read_short_of_its_count_is_read_again_and_the_missed_record_loaded(fresh, monkeypatch):
    ids = fresh.seed(3)
    original = SalesforceConnector.read_first_page
    lost: list[str] = []

    def first_page_losing_one_record(self, query):
        page = original(self, query)
        if query.window_field and not lost and page.records:
            lost.append(page.records[-1]["Id"])
            page.records.pop()
        return page

    monkeypatch.setattr(SalesforceConnector, "read_first_page", first_page_losing_one_record)

    summary = fresh.operator.wait(fresh.operator.start("sf-contacts"), timeout=120, poll=0.02)

    assert summary["status"] == "SUCCEEDED", summary.get("error")
    check = summary["window_check"]
    assert (check["counted"], check["read"], check["shortfall"], check["re_read"]) == (3, 2, 1, 3)
    assert (check["recovered"], check["moved_out"], check["false_alarm"]) == (1, 0, False)
    assert fresh.linked(ids) == set(ids)
    assert summary["created"] == 3


def test_a_record_modified_during_the_run_is_reported_as_moved_out_not_lost(fresh):
    ids = fresh.seed(3)
    container = fresh.container
    state = start_import(
        StartImportEvent(sync_id="sf-contacts", run_id=f"moved-{uuid.uuid4().hex[:8]}"), container
    )
    assert state.window_check is not None
    assert state.window_check.counted == 3
    # Modified after the count and before the read: its new SystemModstamp is past the window's end.
    fresh.control.seed(
        "Contact", [{"Id": ids[1], "FirstName": "Changed", "SystemModstamp": (T0 + timedelta(days=1)).isoformat()}]
    )
    while not state.page.done:
        state = import_page(state, container)
    summary = finish_import(state, container)

    check = summary.window_check
    assert check is not None
    assert (check.shortfall, check.re_read, check.recovered, check.moved_out, check.false_alarm) == (
        1,
        2,
        0,
        1,
        True,
    )
    assert "false alarm, not a loss" in check.note
    assert fresh.linked(ids) == {ids[0], ids[2]}


def test_a_filtered_window_counts_what_the_filter_leaves_out(fresh):
    fresh.seed(2)
    fresh.seed(1, HasOptedOutOfEmail=True, DoNotCall=True)

    summary = fresh.operator.wait(fresh.operator.start("sf-contacts"), timeout=120, poll=0.02)

    check = summary["window_check"]
    assert (check["counted"], check["filtered"], check["read"], check["shortfall"]) == (2, 1, 2, 0)
