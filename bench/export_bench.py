"""Export benchmark: N marketing profiles to Salesforce Leads, with a latency injected on every CRM call.

Three ways to write the same people into the Salesforce emulator (over HTTPS, each call delayed by the
emulator's `latency_ms` fault), each from an empty org:

(a) crmsync's export: the service steps the Lambda handlers run (start -> every batch -> finish), in
    this process, with the profile store in moto (the local stack). The population is above the bulk
    threshold, so batches go through Bulk API 2.0 jobs; (a') forces sObject Collections instead.
    Batches run one after another here; the state machine runs `max_concurrency` of them at once.
(b) a per-record REST client: one `sf.Lead.create()` per record (simple-salesforce). With the latency
    that takes N x latency at least, so it is measured on a sample and extrapolated; the output says so.
(c) simple-salesforce's own Bulk API 2.0 helper, `sf.bulk2.Lead.insert(records=...)`.

Printed for each: CRM calls (the emulator's own count, token calls excluded), wall time, and the ratios
to (a). For (a) the wall time is also split: the start step (reading the changed profiles from the store
and writing the snapshot - moto's DynamoDB here, not AWS) and the batch steps, and those into the time
DynamoDB calls were in flight (the store: write-backs, ledger; moto here) and the rest (the CRM and
crmsync's own work), with the write capacity the store spent (2 WCU an item in a transaction, 1 otherwise).

    python bench/export_bench.py                    # 10,000 records, 20 ms per call
    python bench/export_bench.py --records 50000
    python bench/export_bench.py --records 5000 --latency-ms 20 --sample 500

Numbers describe this machine and an emulator; compare the rows, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT)]

from simple_salesforce.api import Salesforce  # noqa: E402

from crmsync.config import ExportSync, FieldMapping, load_config  # noqa: E402
from crmsync.services.exports import (  # noqa: E402
    ExportBatchEvent,
    StartExportEvent,
    export_batch,
    finish_export,
    start_export,
)
from crmsync.services.operations import Operator  # noqa: E402
from crmsync_local import demo_data  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402
from crmsync_local.marketing import marketing_profiles  # noqa: E402

SYNC = "bench-leads"
PROFILE_FIELD = "Marketing_Profile_Id__c"


def people(count: int) -> list[dict[str, Any]]:
    rows = demo_data.marketing_people(count, seed=count)
    for index, row in enumerate(rows):
        row["email"] = f"bench.{index}@example.net"
    return rows


def lead(row: dict[str, Any], profile_id: str) -> dict[str, Any]:
    return {
        "FirstName": row["firstName"],
        "LastName": row["lastName"],
        "Email": row["email"],
        "Phone": row["phone"],
        "Country": row["country"],
        "Company": row["company"],
        PROFILE_FIELD: profile_id,
    }


def api_calls(env: LocalEnvironment) -> int:
    calls = env.salesforce_control.stats()["calls"]
    return sum(n for key, n in calls.items() if "/oauth2/" not in key)


def empty_org(env: LocalEnvironment) -> None:
    control = env.salesforce_control
    control.purge("Lead")
    control.reset_stats()


class StoreClock:
    """Wall time during which at least one DynamoDB call is in flight (calls may overlap in threads), and
    the write capacity of what was written."""

    def __init__(self, client: Any) -> None:
        self.seconds = 0.0
        self.wcu = 0
        self._busy = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._events = client.meta.events
        self._events.register("before-call.dynamodb", self._enter)
        self._events.register("after-call.dynamodb", self._leave)
        self._events.register("after-call-error.dynamodb", self._leave)

    def close(self) -> None:
        self._events.unregister("before-call.dynamodb", self._enter)
        self._events.unregister("after-call.dynamodb", self._leave)
        self._events.unregister("after-call-error.dynamodb", self._leave)

    def _enter(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        request = json.loads(body) if isinstance(body, bytes | str) else {}
        if model.name == "TransactWriteItems":
            self.wcu += 2 * sum(1 for a in request.get("TransactItems", []) if "ConditionCheck" not in a)
        elif model.name == "BatchWriteItem":
            self.wcu += sum(len(r) for r in request.get("RequestItems", {}).values())
        elif model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.wcu += 1
        with self._lock:
            if self._busy == 0:
                self._since = time.perf_counter()
            self._busy += 1

    def _leave(self, **_: Any) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self.seconds += time.perf_counter() - self._since


def crmsync_export(env: LocalEnvironment, operator: Operator, sync_id: str) -> dict[str, Any]:
    container = operator.container
    empty_org(env)
    began = time.perf_counter()
    state = start_export(StartExportEvent(sync_id=sync_id, run_id=f"bench-{time.time_ns()}"), container)
    started = time.perf_counter()
    store = StoreClock(container.aws.client("dynamodb"))
    for number in range(1, state.run.batches + 1):
        export_batch(ExportBatchEvent(run=state.run, plan=state.plan, number=number), container)
    batches = time.perf_counter()
    store.close()
    summary = finish_export(state, container).model_dump()
    ended = time.perf_counter()
    return {
        "crm_calls": api_calls(env),
        "seconds": ended - began,
        "start_seconds": started - began,
        "batch_seconds": batches - started,
        "batch_store_seconds": store.seconds,
        "batch_wcu": store.wcu,
        "created": summary["created"],
        "rejected": summary["rejected"],
        "batches": summary["batches"],
        "leads": len(env.salesforce_control.records("Lead")),
    }


def salesforce_client(env: LocalEnvironment) -> Salesforce:
    assert env.salesforce is not None
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = env.salesforce.ca_bundle
    token = env.salesforce_control.issue_token()
    return Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], session=session, version="62.0"
    )


def per_record(env: LocalEnvironment, rows: list[tuple[dict[str, Any], str]], sample: int) -> dict[str, Any]:
    empty_org(env)
    sf = salesforce_client(env)
    measured = rows[:sample]
    began = time.perf_counter()
    for row, profile_id in measured:
        sf.Lead.create(lead(row, profile_id))
    elapsed = time.perf_counter() - began
    calls = api_calls(env)
    scale = len(rows) / len(measured)
    return {
        "crm_calls": round(calls * scale),
        "seconds": elapsed * scale,
        "measured_on": len(measured),
        "measured_calls": calls,
        "measured_seconds": elapsed,
        "leads": len(env.salesforce_control.records("Lead")),
    }


def simple_salesforce_bulk(env: LocalEnvironment, rows: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    empty_org(env)
    sf = salesforce_client(env)
    records = [lead(row, profile_id) for row, profile_id in rows]
    began = time.perf_counter()
    results = sf.bulk2.Lead.insert(records=records, batch_size=10_000, wait=1)
    elapsed = time.perf_counter() - began
    return {
        "crm_calls": api_calls(env),
        "seconds": elapsed,
        "created": sum(int(r["numberRecordsProcessed"]) - int(r["numberRecordsFailed"]) for r in results),
        "leads": len(env.salesforce_control.records("Lead")),
    }


def bench(count: int, latency_ms: int, sample: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each way's figures, as soon as it has run."""
    with LocalEnvironment(time_scale=0, log_path=ROOT / ".crmsync" / "bench-lambda.log") as env:
        os.environ["CRMSYNC_RETRY_BASE_DELAY_SECONDS"] = "0"
        control = env.salesforce_control
        control.define_object("Lead", fields=[{"name": PROFILE_FIELD, "type": "string", "length": 64}])
        config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=env.config_environ())
        # One connection per crmsync variant: links to CRM records are kept per connection, so each
        # variant starts from profiles that are linked to nothing.
        connection = config.connections[0]
        connections = [connection.model_copy(update={"name": f"sf-{kind}"}) for kind in ("bulk", "collections")]
        bulk = ExportSync(
            id=f"{SYNC}-bulk",
            operation="export",
            connection="sf-bulk",
            object="Lead",
            correlation_field=PROFILE_FIELD,
            fields=[
                FieldMapping(remote=remote, local=local)
                for remote, local in (
                    ("FirstName", "firstName"),
                    ("LastName", "lastName"),
                    ("Email", "email"),
                    ("Phone", "phone"),
                    ("Country", "country"),
                    ("Company", "company"),
                )
            ],
            batch_size=2000,
            bulk_threshold=1,
        )
        collections = bulk.model_copy(
            update={"id": f"{SYNC}-collections", "connection": "sf-collections", "bulk_threshold": 10_000_000}
        )
        operator = Operator("crmsync")
        operator.apply(
            config.model_copy(
                update={"connections": [*config.connections, *connections], "syncs": [bulk, collections]}
            )
        )
        rows = people(count)
        seeded = time.perf_counter()
        ids = marketing_profiles(operator.container).create_local_many(rows)
        print(f"seeded {count:,} marketing profiles in moto in {time.perf_counter() - seeded:.0f}s", flush=True)
        pairs = [(row, profile_id) for row, profile_id in zip(rows, ids, strict=True) if profile_id]
        control.add_fault(".*", latency_ms=latency_ms, times=None)
        yield "a_crmsync_bulk", crmsync_export(env, operator, bulk.id)
        yield "a_crmsync_collections", crmsync_export(env, operator, collections.id)
        yield "b_per_record_rest", per_record(env, pairs, sample)
        yield "c_simple_salesforce_bulk2", simple_salesforce_bulk(env, pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--sample", type=int, default=1_000, help="records (b) is measured on")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    labels = {
        "a_crmsync_bulk": "(a)  crmsync export, Bulk API 2.0",
        "a_crmsync_collections": "(a') crmsync export, sObject Collections",
        "b_per_record_rest": "(b)  per-record REST client",
        "c_simple_salesforce_bulk2": "(c)  simple-salesforce bulk2 helper",
    }
    results: dict[str, dict[str, Any]] = {}
    if not args.json:
        print(f"{args.records:,} records to Salesforce Leads, {args.latency_ms} ms latency injected per CRM call")
    for key, row in bench(args.records, args.latency_ms, args.sample):
        results[key] = row
        if not args.json:
            print(describe(labels[key], row, results["a_crmsync_bulk"]), flush=True)
    if args.json:
        print(json.dumps(results))


def describe(label: str, row: dict[str, Any], base: dict[str, Any]) -> str:
    line = (
        f"{label:<42} CRM calls {row['crm_calls']:>7,} ({row['crm_calls'] / base['crm_calls']:>7.1f}x (a)) | "
        f"wall {row['seconds']:>8.1f}s ({row['seconds'] / base['seconds']:>5.2f}x (a))"
    )
    if "start_seconds" in row:
        return line + (
            f" = start {row['start_seconds']:.1f}s (profile store + snapshot, moto) + batches "
            f"{row['batch_seconds']:.1f}s (store {row['batch_store_seconds']:.1f}s, CRM and the rest "
            f"{row['batch_seconds'] - row['batch_store_seconds']:.1f}s, store WCU "
            f"{row['batch_wcu'] * 1000 / max(1, row['created']):.0f}/1,000) | {row['batches']} batches, "
            f"{row['created']:,} created, {row['leads']:,} leads in the CRM"
        )
    if "measured_on" in row:
        return line + (
            f" | EXTRAPOLATED from {row['measured_on']:,} records: {row['measured_calls']:,} calls in "
            f"{row['measured_seconds']:.1f}s"
        )
    return line + f" | {row['created']:,} created, {row['leads']:,} leads in the CRM"


if __name__ == "__main__":
    main()
