"""The `crmsync` command line, as an operator uses it: against a served local stack, from other processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crmsync_local.cli import app

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "syncs.yaml"
pytestmark = pytest.mark.slow


def crmsync(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "crmsync_local.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"crmsync {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_validate_accepts_the_example():
    result = CliRunner().invoke(app, ["config", "validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_refuses_bad_configuration_with_exit_2_and_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text()
        .replace("https://acme.my.salesforce.com", "http://acme.my.salesforce.com")
        .replace("{ field: DoNotCall, op: eq, value: 0 }", "{ field: Name, op: eq, value: \"x' OR Id != '\" }")
    )
    result = CliRunner().invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output
    assert "rule C1" in result.output
    assert "rule I5" in result.output


def test_missing_file_is_a_clear_error():
    result = CliRunner().invoke(app, ["config", "validate", "/nonexistent/syncs.yaml"])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_a_configuration_that_is_not_utf8_exits_2_naming_the_line(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    text = EXAMPLE.read_text().replace(
        "    object: Contact\n", "    object: Contact\n    description: Contacts crÃ©Ã©s\n", 1
    )
    latin1.write_bytes(text.encode("utf-8").replace("Ã©".encode(), b"\xe9"))
    line = text.splitlines().index("    description: Contacts crÃ©Ã©s") + 1
    result = CliRunner().invoke(app, ["config", "validate", str(latin1)])
    assert result.exit_code == 2, result.output
    assert f"{latin1}:{line}:" in result.output.replace("\n", "")
    assert "rule N4: input files are UTF-8 text" in result.output
    assert "Traceback" not in result.output


@contextmanager
def serve_local(directory: Path, *options: str):
    """`crmsync local up` in its own process, and the environment its state file tells clients to use."""
    state_file = directory / "local.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "crmsync_local.cli", "local", "up", "--state-file", str(state_file), *options],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/crmsync", "local", "."))},
    )
    deadline = time.monotonic() + 120
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"local up did not start: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.2)
    state = json.loads(state_file.read_text())
    env = {**os.environ, **state["environment"], "CRMSYNC_RETRY_BASE_DELAY_SECONDS": "0"}
    try:
        yield state, env
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def served(tmp_path):
    with serve_local(tmp_path) as served:
        yield served


def test_local_up_writes_endpoints_and_every_resource(served):
    state, _ = served
    assert state["aws_endpoint"].startswith("http://127.0.0.1:")
    assert state["salesforce"]["url"].startswith("https://127.0.0.1:")
    assert state["salesforce"]["control"] == state["salesforce"]["url"] + "/__emulator"
    assert Path(state["ca_bundle"]).is_file()
    assert state["secrets"]["salesforce"] == "crmsync/sf-prod"
    assert state["dynamics"]["url"].startswith("https://127.0.0.1:")
    assert state["dynamics"]["control"] == state["dynamics"]["url"] + "/__emulator"
    assert state["dynamics"]["authority"] == f"{state['dynamics']['url']}/{state['dynamics']['tenant_id']}"
    assert state["secrets"]["dynamics"] == "crmsync/dyn-prod"
    assert state["environment"]["CRMSYNC_DYNAMICS_AUTHORITY"] == state["dynamics"]["authority"]
    assert state["resources"]["ProfilesTable"] == "crmsync-profiles"
    assert state["resources"]["ImportStateMachine"].endswith(":stateMachine:crmsync-import")


def test_apply_run_and_inspect_through_the_standard_aws_chain(served):
    state, env = served
    from crmsync_local.emulators.salesforce import SalesforceControl

    crm = SalesforceControl(state["salesforce"]["url"], state["ca_bundle"])
    crm.seed(
        "Contact",
        [
            {
                "FirstName": "Zoé",
                "LastName": "Mégret",
                "Email": "zoe@example.org",
                "SystemModstamp": "2024-01-01T10:00:00Z",
            },
            {
                "FirstName": "伟",
                "LastName": "王",
                "Email": "wei@example.org",
                "SystemModstamp": "2024-01-01T11:00:00Z",
            },
            {
                "FirstName": "Too",
                "LastName": "L" * 90,
                "Email": "long@example.org",
                "SystemModstamp": "2024-01-01T12:00:00Z",
            },
        ],
    )
    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)

    result = crmsync("run", "sf-contacts", "--wait", "--json", env=env)
    summary = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert set(summary) >= {
        "sync_id",
        "run_id",
        "status",
        "window",
        "read",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "api_calls",
    }
    assert (summary["status"], summary["read"], summary["created"], summary["rejected"]) == ("SUCCEEDED", 3, 2, 1)
    assert summary["window"]["option"] == "LASTIMPORT_acme_sf-contacts"

    watermark = crmsync("watermark", "get", "sf-contacts", env=env, check=True).stdout
    assert watermark.startswith("LASTIMPORT_acme_sf-contacts = 20")

    rejects = json.loads(crmsync("rejects", "list", "sf-contacts", "--json", env=env, check=True).stdout)
    assert [r["errorSymbol"] for r in rejects] == ["STRING_TOO_LONG"]

    assert crmsync("watermark", "reset", "sf-contacts", env=env).returncode == 0
    assert "(none" in crmsync("watermark", "get", "sf-contacts", env=env).stdout


def test_running_an_unknown_sync_fails_with_exit_2(served):
    _, env = served
    result = crmsync("run", "nope", "--wait", env=env)
    assert result.returncode == 2
    assert "no sync named 'nope'" in result.stderr


def test_connection_test_signs_in_lists_objects_and_limits_for_both_crms(served):
    _, env = served
    from_file = crmsync("connection", "test", "dyn-prod", "--config", str(EXAMPLE), "--json", env=env, check=True)
    dynamics = json.loads(from_file.stdout)
    assert (dynamics["kind"], dynamics["source"]) == ("dynamics", "the configuration file")
    assert {"contact", "new_subscription"} <= {o["name"] for o in dynamics["objects"]}
    assert dynamics["limits"]["details"]["requests_remaining"] > 0

    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)
    applied = crmsync("connection", "test", "sf-prod", env=env, check=True).stdout
    assert "connection sf-prod (salesforce, from stack crmsync): signed in" in applied
    assert "DailyApiRequests" in applied

    unknown = crmsync("connection", "test", "nope", "--config", str(EXAMPLE), env=env)
    assert unknown.returncode == 2
    assert "no connection named 'nope' in the file (defined: sf-prod, dyn-prod)" in unknown.stderr


def test_a_dynamics_import_runs_through_the_cli(served):
    state, env = served
    from crmsync_local.emulators.dynamics import DynamicsControl

    crm = DynamicsControl(state["dynamics"]["url"], state["ca_bundle"])
    crm.put_records("contacts", [{"firstname": "Zoé", "lastname": "Mégret", "emailaddress1": "zoe@example.net"}])
    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)

    summary = json.loads(crmsync("run", "dyn-contacts", "--wait", "--json", env=env, check=True).stdout)

    assert (summary["status"], summary["change_tracking"], summary["created"]) == ("SUCCEEDED", "initial", 1)


def test_a_deletion_period_end_without_a_start_is_refused_before_anything_starts():
    result = CliRunner().invoke(app, ["run", "sf-contacts-deleted", "--to", "2026-11-10T00:00:00Z"])
    assert result.exit_code == 2
    assert "--to needs --from" in result.output


def test_a_deletion_period_that_is_not_a_date_is_refused_before_anything_starts():
    result = CliRunner().invoke(app, ["run", "sf-contacts-deleted", "--from", "last tuesday"])
    assert result.exit_code == 2
    assert "--from/--to" in result.output


def test_a_two_way_opt_out_sync_reports_both_sides_and_its_consent_history(served, tmp_path):
    state, env = served
    from datetime import UTC, datetime, timedelta

    from crmsync_local.emulators.salesforce import SalesforceControl

    crm = SalesforceControl(state["salesforce"]["url"], state["ca_bundle"])
    created = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()  # the import's window ends 60 s back
    (contact,) = crm.seed(
        "Contact", [{"LastName": "Optout", "Email": "optout@example.org", "CreatedDate": created}]
    )
    crm.track_history("Contact", ["HasOptedOutOfEmail"])
    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)
    crmsync("run", "sf-contacts", "--wait", env=env, check=True)
    crmsync("run", "sf-optouts", "--wait", env=env, check=True)  # a first run: values at the record's time
    before_lag = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()  # the two-way window ends 60 s back
    crm.seed("Contact", [{"Id": contact, "HasOptedOutOfEmail": True, "LastModifiedDate": before_lag}])

    summary = json.loads(crmsync("run", "sf-optouts", "--wait", "--json", env=env, check=True).stdout)
    tracking = json.loads(crmsync("connection", "test", "sf-prod", "--json", env=env, check=True).stdout)

    assert set(summary) >= {"crm", "marketing", "conflicts", "decided_by", "time_sources", "tracking"}
    assert summary["marketing"]["fields_written"] == 1
    assert summary["time_sources"] == {"history": 1}
    assert {(t["field"], t["times_from"]) for t in tracking["field_tracking"] if t["sync"] == "sf-optouts"} == {
        ("HasOptedOutOfEmail", "history"),
        ("DoNotCall", "record_timestamp"),
        ("HasOptedOutOfFax", "record_timestamp"),
        ("Title", "record_timestamp"),  # the example's two-way fields (SPEC B1) are reported too
        ("Department", "record_timestamp"),
    }
    exported = tmp_path / "consent.csv"
    crmsync("consent", "export", "-o", str(exported), env=env, check=True)
    header, row = exported.read_text().splitlines()
    assert header.startswith("profileId,channel,value,sourceSide,sourceRecord,changedAt,author,timeSource")
    profile_id = row.split(",")[0]
    history = json.loads(crmsync("consent", "history", profile_id, "--json", env=env, check=True).stdout)
    assert [(h["channel"], h["value"], h["sourceRecord"]) for h in history] == [("denyListEmail", True, contact)]


def test_config_apply_dry_run_prints_the_plan_then_apply_removes_what_the_file_dropped(served, tmp_path):
    _, env = served
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["syncs"] = [s for s in raw["syncs"] if s["id"] != "sf-contacts-compare"]
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)

    dry = crmsync("config", "apply", str(smaller), "--dry-run", env=env, check=True).stdout
    assert "removed" in dry
    assert "sf-contacts-compare" in dry
    assert "dry run: nothing was changed" in dry
    assert crmsync("watermark", "get", "sf-contacts-compare", env=env).returncode == 0

    applied = crmsync("config", "apply", str(smaller), env=env, check=True).stdout
    assert "sf-contacts-compare" in applied
    gone = crmsync("watermark", "get", "sf-contacts-compare", env=env)
    assert gone.returncode == 2, gone.stderr
    assert "no sync named 'sf-contacts-compare' was applied" in gone.stderr


def test_a_transfers_reject_lines_stay_off_the_terminal_and_are_found_by_crmsync_logs(served, tmp_path):
    _, env = served
    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "Id,SystemModstamp,FirstName,LastName,Email,HasOptedOutOfEmail\n"
        "003000000000001AAA,2024-01-01T10:00:00Z,Zoé,Mégret,zoe@example.org,maybe\n",
        encoding="utf-8",
    )

    transfer = crmsync("transfer", "sf-contacts", str(contacts), "--no-check", "--json", env=env)

    assert transfer.returncode == 0, transfer.stderr
    assert transfer.stderr == ""
    run_id = json.loads(transfer.stdout)["run_id"]
    logs = crmsync("logs", run_id, env=env, check=True).stdout
    assert "[cli]" in logs
    assert "reject MALFORMED_ROW on HasOptedOutOfEmail" in logs
    assert "Mégret" not in logs
    shown = crmsync("--log-level", "warning", "transfer", "sf-contacts", str(contacts), "--no-check", env=env)
    assert "WARNING crmsync.stores.rejects: reject MALFORMED_ROW on HasOptedOutOfEmail" in shown.stderr


def test_transfer_loads_a_csv_file_through_the_import_rules_and_refuses_one_not_utf8(served, tmp_path):
    _, env = served
    crmsync("config", "apply", str(EXAMPLE), env=env, check=True)
    header = "Id,SystemModstamp,FirstName,LastName,Email,HasOptedOutOfEmail\n"
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        header
        + "003000000000001AAA,2024-01-01T10:00:00Z,Zoé,Mégret,zoe@example.org,false\n"
        + "003000000000002AAA,2024-01-01T11:00:00Z,Wei,Wang,wei@example.org,true\n"
        + "003000000000003AAA,2024-01-01T12:00:00Z,Ann,Extra,ann@example.org,false,surplus\n"
        + "003000000000004AAA,2024-01-01T13:00:00Z,Bob,Bool,bob@example.org,maybe\n",
        encoding="utf-8",
    )

    first = crmsync("transfer", "sf-contacts", str(contacts), "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["status"], summary["rows"], summary["read"], summary["created"], summary["rejected"]) == (
        "SUCCEEDED",
        4,
        2,
        2,
        2,
    )
    assert summary["watermark_moved"] is False
    rejects = json.loads(crmsync("rejects", "list", "sf-contacts", "--json", env=env, check=True).stdout)
    assert sorted((r["errorSymbol"], r["errorMessage"]) for r in rejects) == [
        ("MALFORMED_ROW", f"{contacts}: row 4, column 7: 7 cells for the header's 6 columns"),
        (
            "MALFORMED_ROW",
            f"{contacts}: row 5, column 6 (HasOptedOutOfEmail): 'maybe' is not a boolean (true, false, 1, 0)",
        ),
    ]

    again = json.loads(crmsync("transfer", "sf-contacts", str(contacts), "--json", env=env, check=False).stdout)
    assert (again["created"], again["unchanged"]) == (0, 2)  # reconciled by CRM id: no second profile

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        (header + "003000000000005AAA,2024-01-01T10:00:00Z,José,Lima,jose@example.org,false\n").encode("latin-1")
    )
    refused = crmsync("transfer", "sf-contacts", str(latin1), env=env)
    assert refused.returncode == 2
    assert f"{latin1}:2:44: byte 0xe9 is not UTF-8" in refused.stderr.replace("\n", "")
    assert "(none" in crmsync("watermark", "get", "sf-contacts", env=env).stdout
