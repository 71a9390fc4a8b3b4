"""Peer clients against our emulators: do clients we did not write accept them, and how fast do we read?

Seeds N contacts in the Salesforce and the Dynamics 365 emulators (the same generated data the import
benchmark uses), then reads them, one client at a time, each in its own process (the emulators serve from
this one):

- crmsync's extract + convert: the connector and the import mapping of `sf-contacts` / `dyn-contacts`
  (examples/syncs.yaml, filter off), no store - the read path of an import page step;
- tap-salesforce (REST), airbyte-source-salesforce, airbyte-source-microsoft-dataverse: discovery, then a
  full read of Contact / contact, run unchanged from their own virtual environments;
- powerplatform-dataverse-client (Microsoft's Dataverse SDK): the same 13 columns, pages of 5,000.

The peers are given only what a user gives them: the instance URL, credentials (a refresh token the
emulator's control API issued, as the web-server flow would), the test CA (REQUESTS_CA_BUNDLE), and their
hard-coded login host pointed at the emulator (bench/peers/sitecustomize.py). A peer that fails is
reported with the end of its error output; the run goes on.

Prints records, wall seconds of the read (discovery apart) and records/s, side by side, and each peer's rate
relative to crmsync's; also the read's CPU seconds in the client's process (for the peers run as
commands, their read process's, start-up included), which the machine's load does not stretch. Numbers describe this machine; compare within one run. Never asserts time.

    make bench-peers                          # builds .venv-peers/ once (~3-6 minutes), 10,000 records
    python bench/peers_bench.py --records 20000 --only salesforce
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT)]

PEERS_DIR = ROOT / ".venv-peers"
SHIM_DIR = ROOT / "bench" / "peers"
# The peers' pinned versions (Makefile: bench-peers installs exactly these, one venv each).
PEER_PACKAGES = {
    "tap-salesforce": "tap-salesforce==2.8.1",
    "airbyte-source-salesforce": "airbyte-source-salesforce==2.10.3",
    "airbyte-source-microsoft-dataverse": "airbyte-source-microsoft-dataverse==1.0.2",
}
SALESFORCE_LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")
MICROSOFT_LOGIN_HOST = "https://login.microsoftonline.com"
START_DATE = "2020-01-01T00:00:00Z"


@dataclass
class Result:
    client: str
    crm: str
    records: int | None
    seconds: float | None
    discovery_seconds: float | None = None
    error: str | None = None
    cpu_seconds: float | None = None  # the read's CPU time (a peer's: its read process, start-up included)

    @property
    def rate(self) -> float | None:
        if not self.records or not self.seconds:
            return None
        return self.records / self.seconds


def peer_bin(package: str, command: str) -> Path:
    return PEERS_DIR / package / "bin" / command


def peer_env(ca_bundle: str, redirects: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRMSYNC_", "PYTHONPATH"))}
    env.update(
        REQUESTS_CA_BUNDLE=ca_bundle,
        SSL_CERT_FILE=ca_bundle,
        CURL_CA_BUNDLE=ca_bundle,
        PYTHONPATH=str(SHIM_DIR),
        CRMSYNC_PEER_REDIRECTS=" ".join(f"{k}={v}" for k, v in redirects.items()),
        DEPLOYMENT_MODE="oss",
    )
    return env


def run(cmd: list[str], env: dict[str, str], stdout_path: Path, timeout: float) -> tuple[float, str | None, float]:
    """Runs a peer's command, its messages to a file; answers the wall seconds, an error if any, and the CPU
    seconds of the command's process (its start-up included)."""
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    errors = stdout_path.with_suffix(".stderr")
    with stdout_path.open("wb") as out, errors.open("wb") as err:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=err, timeout=timeout, check=False)  # noqa: S603
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        return elapsed, f"exit {done.returncode}: " + errors.read_text(errors="replace")[-1500:], cpu
    return elapsed, None, cpu


def count_messages(path: Path, kind: str, stream: str) -> int:
    """RECORD messages of one stream, Singer (`{"type": "RECORD"}`) or Airbyte (`{"type": "RECORD",
    "record": {...}}`) style."""
    count = 0
    with path.open("rb") as lines:
        for line in lines:
            if b'"RECORD"' not in line:
                continue
            message = json.loads(line)
            if message.get("type") != "RECORD":
                continue
            name = message.get("stream") if kind == "singer" else message.get("record", {}).get("stream")
            count += name == stream
    return count


def airbyte_errors(path: Path) -> str | None:
    """The first error an Airbyte source reported in its TRACE messages (it may still exit 0)."""
    with path.open("rb") as lines:
        for line in lines:
            if b'"TRACE"' in line and b'"ERROR"' in line:
                trace = json.loads(line).get("trace", {}).get("error", {})
                return str(trace.get("message") or trace)[:500]
    return None


# -- the peers ------------------------------------------------------------------------------------------------
def tap_salesforce(work: Path, sf: dict[str, str], timeout: float) -> Result:
    command = peer_bin("tap-salesforce", "tap-salesforce")
    if not command.exists():
        return Result(
            "tap-salesforce 2.8.1 (REST)", "salesforce", None, None, error="not installed: make bench-peers"
        )
    config = work / "tap-config.json"
    config.write_text(
        json.dumps(
            {
                "client_id": sf["client_id"],
                "client_secret": sf["client_secret"],
                "refresh_token": sf["refresh_token"],
                "start_date": START_DATE,
                "api_type": "REST",
                "select_fields_by_default": True,
            }
        )
    )
    env = peer_env(sf["ca_bundle"], dict.fromkeys(SALESFORCE_LOGIN_HOSTS, sf["url"]))
    catalog_path = work / "tap-catalog.json"
    discovery, error, _ = run([str(command), "--config", str(config), "--discover"], env, catalog_path, timeout)
    result = Result("tap-salesforce 2.8.1 (REST)", "salesforce", None, None, discovery)
    if error:
        result.error = "discover: " + error
        return result
    catalog = json.loads(catalog_path.read_text())
    catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == "Contact"]
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == []:
            entry["metadata"]["selected"] = True
    catalog_path.write_text(json.dumps(catalog))
    output = work / "tap-output.jsonl"
    seconds, error, cpu = run(
        [str(command), "--config", str(config), "--properties", str(catalog_path)], env, output, timeout
    )
    result.seconds, result.error, result.cpu_seconds = seconds, error, cpu
    result.records = count_messages(output, "singer", "Contact")
    return result


def airbyte(
    name: str, package: str, command_name: str, stream: str, config: dict[str, Any], env: dict[str, str], work: Path,
    timeout: float, crm: str,
) -> Result:  # fmt: skip
    command = peer_bin(package, command_name)
    if not command.exists():
        return Result(name, crm, None, None, error="not installed: make bench-peers")
    config_path = work / f"{package}-config.json"
    config_path.write_text(json.dumps(config))
    discovered = work / f"{package}-discover.jsonl"
    discovery, error, _ = run([str(command), "discover", "--config", str(config_path)], env, discovered, timeout)
    result = Result(name, crm, None, None, discovery)
    if error:
        result.error = "discover: " + error
        return result
    catalog = None
    for line in discovered.read_text().splitlines():
        if line.startswith("{") and '"CATALOG"' in line:
            catalog = json.loads(line)["catalog"]
    found = [s for s in (catalog or {}).get("streams", []) if s["name"] == stream]
    if not found:
        result.error = f"discover: no {stream} stream; {airbyte_errors(discovered) or 'no catalog'}"
        return result
    configured = {
        "streams": [
            {
                "stream": found[0],
                "sync_mode": "full_refresh",
                "destination_sync_mode": "overwrite",
                "primary_key": found[0].get("source_defined_primary_key") or [],
            }
        ]
    }
    catalog_path = work / f"{package}-catalog.json"
    catalog_path.write_text(json.dumps(configured))
    output = work / f"{package}-read.jsonl"
    seconds, error, cpu = run(
        [str(command), "read", "--config", str(config_path), "--catalog", str(catalog_path)], env, output, timeout
    )
    result.seconds, result.error, result.cpu_seconds = seconds, error or airbyte_errors(output), cpu
    result.records = count_messages(output, "airbyte", stream)
    return result


def airbyte_salesforce(work: Path, sf: dict[str, str], timeout: float) -> Result:
    config = {
        "client_id": sf["client_id"],
        "client_secret": sf["client_secret"],
        "refresh_token": sf["refresh_token"],
        "start_date": START_DATE,
        "is_sandbox": False,
        "force_use_bulk_api": False,
        "streams_criteria": [{"criteria": "exacts", "value": "Contact"}],
    }
    env = peer_env(sf["ca_bundle"], dict.fromkeys(SALESFORCE_LOGIN_HOSTS, sf["url"]))
    return airbyte(
        "airbyte-source-salesforce 2.10.3", "airbyte-source-salesforce", "source-salesforce", "Contact", config, env,
        work, timeout, "salesforce",
    )  # fmt: skip


def airbyte_dataverse(work: Path, dyn: dict[str, str], timeout: float) -> Result:
    config = {
        "url": dyn["url"],
        "tenant_id": dyn["tenant_id"],
        "client_id": dyn["client_id"],
        "client_secret_value": dyn["client_secret"],
        "odata_maxpagesize": 5000,
    }
    env = peer_env(dyn["ca_bundle"], {MICROSOFT_LOGIN_HOST: dyn["url"]})
    return airbyte(
        "airbyte-source-microsoft-dataverse 1.0.2", "airbyte-source-microsoft-dataverse",
        "source-microsoft-dataverse", "contact", config, env, work, timeout, "dynamics",
    )  # fmt: skip


def child(kind: str, args: list[str], env_extra: dict[str, str], timeout: float) -> Result:
    """This script again, as `--child KIND`, in a process of its own: crmsync's read or Microsoft's SDK."""
    env = {**os.environ, **env_extra}
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - this script, with arguments of ours
        [sys.executable, __file__, "--child", kind, *args],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    name = {
        "crmsync-salesforce": ("crmsync extract + convert", "salesforce"),
        "crmsync-dynamics": ("crmsync extract + convert", "dynamics"),
        "dataverse-sdk": ("powerplatform-dataverse-client 1.1.0", "dynamics"),
    }[kind]
    if done.returncode != 0:
        return Result(*name, None, wall, error=done.stderr.decode(errors="replace")[-1500:])
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return Result(
        *name, report["records"], report["seconds"], report.get("setup_seconds"), cpu_seconds=report["cpu_seconds"]
    )


# -- the children: run in their own process -------------------------------------------------------------------
def _crmsync_read(crm: str) -> dict[str, Any]:
    from crmsync.config import load_config
    from crmsync.connectors.retry import RetryPolicy
    from crmsync.services.import_plan import resolve_import_plan
    from crmsync.wiring import build_connector

    started = time.perf_counter()
    config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=dict(os.environ))
    sync = config.sync("sf-contacts" if crm == "salesforce" else "dyn-contacts").model_copy(
        update={"filter": None}
    )
    connection = config.connection(sync.connection)
    secret = json.loads(os.environ["CRMSYNC_BENCH_SECRET"])
    connector = build_connector(connection, secret, RetryPolicy())
    plan = resolve_import_plan(sync, connector.describe(sync.object), connection.kind)
    setup = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    mapper = plan.mapper()
    query = plan.query()
    page = (
        connector.read_changes(query, None)  # type: ignore[attr-defined]
        if plan.change_tracking
        else connector.read_first_page(query)
    )
    count = 0
    while True:
        for record in page.records:
            mapper.map(record)
            count += 1
        if not page.next_cursor:
            break
        page = connector.read_next_page(page.next_cursor)
    return {
        "records": count,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "setup_seconds": setup,
    }


def _dataverse_sdk() -> dict[str, Any]:
    from azure.identity import ClientSecretCredential
    from PowerPlatform.Dataverse.client import DataverseClient

    from crmsync.config import load_config
    from crmsync.connectors.dynamics import odata
    from crmsync.connectors.retry import RetryPolicy
    from crmsync.services.import_plan import resolve_import_plan
    from crmsync.wiring import build_connector

    url = os.environ["CRMSYNC_DYNAMICS_URL"]
    secret = json.loads(os.environ["CRMSYNC_BENCH_SECRET"])
    config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=dict(os.environ))
    sync = config.sync("dyn-contacts")
    connection = config.connection(sync.connection)
    connector = build_connector(connection, secret, RetryPolicy())
    plan = resolve_import_plan(sync, connector.describe(sync.object), "dynamics")
    columns = odata.select(plan.query()).split(",")  # the same 13 columns, lookups as _x_value
    started = time.perf_counter()
    credential = ClientSecretCredential(
        os.environ["CRMSYNC_DYNAMICS_TENANT_ID"],
        secret["client_id"],
        secret["client_secret"],
        authority=url,
        disable_instance_discovery=True,
    )
    count = 0
    with DataverseClient(url, credential) as client:
        setup = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        for page in client.records.list_pages("contact", select=columns, page_size=5000):
            count += len(page)
    return {
        "records": count,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "setup_seconds": setup,
        "columns": columns,
    }


def install() -> None:
    """One virtual environment per peer under .venv-peers/ (their pins conflict with each other and with
    ours), built side by side; an environment already holding its pin is kept."""

    def build(name: str) -> str | None:
        pin, target = PEER_PACKAGES[name], PEERS_DIR / name
        stamp = target / f".installed-{pin}"
        if stamp.exists():
            return None
        log = PEERS_DIR / f"{name}.log"
        with log.open("wb") as out:
            for step in (
                [sys.executable, "-m", "venv", "--clear", str(target)],
                [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", pin],
            ):
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False).returncode:  # noqa: S603
                    return f"FAILED, see {log}"
        stamp.touch()
        return None

    PEERS_DIR.mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(PEER_PACKAGES)) as pool:
        outcomes = dict(zip(PEER_PACKAGES, pool.map(build, PEER_PACKAGES), strict=True))
    for name, failure in outcomes.items():
        print(f"{name}: {failure or 'installed'}")
    if any(outcomes.values()):
        raise SystemExit(1)


# -- the run --------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--only", choices=["salesforce", "dynamics", "both"], default="both")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one client may take")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--install", action="store_true", help="build .venv-peers/ and stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.install:
        install()
        return
    if args.child:
        report = _dataverse_sdk() if args.child == "dataverse-sdk" else _crmsync_read(args.child.split("-")[1])
        print(json.dumps(report))
        return

    from crmsync_local import demo_data
    from crmsync_local.emulators.common import EmulatorServer
    from crmsync_local.emulators.dynamics import DynamicsControl, DynamicsEmulator
    from crmsync_local.emulators.salesforce import SalesforceControl, SalesforceEmulator
    from crmsync_local.emulators.salesforce.org import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="crmsync-peers-") as tmp:
        work = Path(os.environ.get("CRMSYNC_PEERS_WORK") or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.only in ("salesforce", "both"):
            with EmulatorServer(SalesforceEmulator()) as server:
                control = SalesforceControl(server.url, server.ca_bundle)
                for start in range(0, args.records, 10_000):
                    rows = demo_data.contacts(
                        min(10_000, args.records - start), now=now, seed=start + 1, rejects=False
                    )
                    control.seed("Contact", list(rows))
                sf = {
                    "url": server.url,
                    "ca_bundle": server.ca_bundle,
                    "client_id": DEFAULT_CLIENT_ID,
                    "client_secret": DEFAULT_CLIENT_SECRET,
                    "refresh_token": control.issue_refresh_token(DEFAULT_CLIENT_ID),
                }
                env = {
                    "CRMSYNC_SALESFORCE_URL": server.url,
                    "CRMSYNC_CA_BUNDLE": server.ca_bundle,
                    "CRMSYNC_BENCH_SECRET": json.dumps(
                        {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
                    ),
                }
                results.append(child("crmsync-salesforce", [], env, args.timeout))
                results.append(tap_salesforce(work, sf, args.timeout))
                results.append(airbyte_salesforce(work, sf, args.timeout))
        if args.only in ("dynamics", "both"):
            app = DynamicsEmulator()
            with EmulatorServer(app) as server:
                control = DynamicsControl(server.url, server.ca_bundle)
                client_id, client_secret = "5f1c2e3d-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "crmsync~bench~peers"
                control.register_app(client_id=client_id, client_secret=client_secret, display_name="peers")
                for start in range(0, args.records, 10_000):
                    rows = demo_data.dynamics_contacts(min(10_000, args.records - start), now=now, seed=start + 1)
                    control.put_records("contacts", list(rows))
                dyn = {
                    "url": app.base_url,
                    "ca_bundle": server.ca_bundle,
                    "tenant_id": app.tenant_id,
                    "client_id": client_id,
                    "client_secret": client_secret,
                }
                env = {
                    "CRMSYNC_DYNAMICS_URL": app.base_url,
                    "CRMSYNC_DYNAMICS_TENANT_ID": app.tenant_id,
                    "CRMSYNC_DYNAMICS_AUTHORITY": app.authority,
                    "CRMSYNC_CA_BUNDLE": server.ca_bundle,
                    "REQUESTS_CA_BUNDLE": server.ca_bundle,
                    "CRMSYNC_BENCH_SECRET": json.dumps({"client_id": client_id, "client_secret": client_secret}),
                }
                results.append(child("crmsync-dynamics", [], env, args.timeout))
                results.append(child("dataverse-sdk", [], env, args.timeout))
                results.append(airbyte_dataverse(work, dyn, args.timeout))
    if args.json:
        print(json.dumps([{**r.__dict__, "rate": r.rate} for r in results]))
        return
    ours = {r.crm: r.rate for r in results if r.client.startswith("crmsync") and r.rate}
    print(f"{args.records:,} contacts per CRM; each client in its own process; read time excludes discovery/setup")
    for r in results:
        if r.error and not r.records:
            print(
                f"{r.crm:<10} {r.client:<42} FAILED: {r.error.strip().splitlines()[-1] if r.error.strip() else r.error}"
            )
            continue
        ratio = (
            f"crmsync = {ours[r.crm] / r.rate:5.2f}x"
            if r.rate and ours.get(r.crm) and not r.client.startswith("crmsync")
            else ""
        )
        setup = f"setup/discovery {r.discovery_seconds:6.1f}s" if r.discovery_seconds is not None else ""
        cpu = f"client CPU {r.cpu_seconds:5.2f}s" if r.cpu_seconds is not None else ""
        print(
            f"{r.crm:<10} {r.client:<42} {r.records or 0:>8,} records in {r.seconds or 0:7.2f}s "
            f"= {r.rate or 0:>8,.0f} rec/s  {setup:<24} {cpu:<18} {ratio}"
            + (f"  (warning: {r.error.strip()[:200]})" if r.error else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
