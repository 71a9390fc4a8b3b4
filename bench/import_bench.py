"""Import benchmark: N emulator contacts through crmsync's import path, first run then an incremental one.

Runs the same service steps the Lambda handlers run (start -> page... -> finish) against the Salesforce
and Dynamics 365 emulators over HTTPS and DynamoDB in moto (the local stack): `sf-contacts` reads a
SystemModstamp window, `dyn-contacts` Dataverse change tracking (every record, then the delta link).
The incremental run changes 1% of the records. Prints, per CRM and size: records/s (wall, and per CPU-second of this process: the rate on an idle core), CRM calls and
DynamoDB calls per 1,000 records, and the peak memory one page step allocates (tracemalloc, on every
10th page; the time tracing adds is taken out), which must stay flat as the record count grows. That
peak includes moto's in-process DynamoDB, which a Lambda would not carry. `--state-machine` runs the real ASL instead (end to end,
including Step Functions overhead; no per-page memory figure then).

    python bench/import_bench.py                 # both CRMs, 20,000 records (--records 20000 100000 for more)
    python bench/import_bench.py --crm dynamics --records 10000
    python bench/import_bench.py --records 20000 --state-machine

Numbers describe this machine and moto's in-process DynamoDB, not AWS; compare runs, not absolutes.
Write capacity is counted from the requests: an item written in a transaction costs 2 WCU, a plain or
batched write 1 (DynamoDB's rule for items up to 1 KB; the largest item put is printed to check that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT)]

from crmsync.config import load_config  # noqa: E402
from crmsync.services.imports import StartImportEvent, finish_import, import_page, start_import  # noqa: E402
from crmsync.services.operations import Operator  # noqa: E402
from crmsync.wiring import Container  # noqa: E402
from crmsync_local import demo_data  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402

SEED_BATCH = 10_000


SIZE_SAMPLE = 50  # the largest item is looked for among every 50th item written


class WriteMeter:
    """Items written and write capacity, counted on a DynamoDB client's requests."""

    def __init__(self, client: Any) -> None:
        self.items = 0
        self.wcu = 0
        self.largest = 0
        events = client.meta.events
        events.register("provide-client-params.dynamodb.TransactWriteItems", self._transact)
        events.register("provide-client-params.dynamodb.BatchWriteItem", self._batch)
        for operation in ("PutItem", "UpdateItem", "DeleteItem"):
            events.register(f"provide-client-params.dynamodb.{operation}", self._single)

    def _count(self, cost: int, item: dict | None = None) -> None:
        self.items += 1
        self.wcu += cost
        if item is not None and self.items % SIZE_SAMPLE == 1:  # json.dumps of every item was ~5% of a run
            self.largest = max(self.largest, len(json.dumps(item, default=str)))  # binary values (B) as text

    def _transact(self, params: dict, **_: Any) -> None:
        for action in params["TransactItems"]:
            if "ConditionCheck" not in action:
                self._count(2, action.get("Put", {}).get("Item"))

    def _batch(self, params: dict, **_: Any) -> None:
        for requests_ in params["RequestItems"].values():
            for request in requests_:
                self._count(1, request.get("PutRequest", {}).get("Item"))

    def _single(self, params: dict, **_: Any) -> None:
        self._count(1, params.get("Item"))

    def snapshot(self) -> tuple[int, int]:
        return self.items, self.wcu


@dataclass(frozen=True)
class Crm:
    """How the benchmark seeds and changes one emulator, and which sync of examples/syncs.yaml reads it."""

    sync_id: str
    control: Callable[[LocalEnvironment], Any]
    rows: Callable[[int, datetime], Any]
    write: Callable[[Any, list[dict]], list[str]]
    change: Callable[[str], dict]


CRMS = {
    "salesforce": Crm(
        sync_id="sf-contacts",
        control=lambda env: env.salesforce_control,
        rows=lambda count, now: demo_data.contacts(count, now=now, seed=count, rejects=False),
        write=lambda control, rows: control.seed("Contact", rows),
        change=lambda crm_id: {"Id": crm_id, "Title": "changed"},
    ),
    "dynamics": Crm(
        sync_id="dyn-contacts",
        control=lambda env: env.dynamics_control,
        rows=lambda count, now: demo_data.dynamics_contacts(count, now=now, seed=count),
        write=lambda control, rows: control.put_records("contacts", rows),
        change=lambda crm_id: {"contactid": crm_id, "jobtitle": "changed"},
    ),
}


def seed(crm: Crm, control: Any, count: int, now: datetime) -> list[str]:
    ids: list[str] = []
    batch: list[dict] = []
    for row in crm.rows(count, now):
        batch.append(row)
        if len(batch) == SEED_BATCH:
            ids += crm.write(control, batch)
            batch = []
    if batch:
        ids += crm.write(control, batch)
    return ids


TRACE_EVERY = 10


def run_steps(container: Container, sync_id: str) -> tuple[dict, list[int], float, float, int]:
    """The handlers' steps in order. Every 10th page step from the second runs under tracemalloc,
    which slows it ~4x, so throughput is measured on the other steps only. Returns the summary, the
    traced steps' peak allocations (bytes), and the wall seconds, CPU seconds and records of the
    untraced steps. The CPU seconds are this process's (the emulators and moto run in it too), so
    records per CPU-second is the rate the steps would reach on an idle core, whatever else loads the
    machine."""
    state = start_import(StartImportEvent(sync_id=sync_id, run_id=f"bench-{time.time_ns()}"), container)
    peaks: list[int] = []
    plain_seconds, plain_cpu, plain_records = 0.0, 0.0, 0
    while not state.page.done:
        read_before = state.totals.read
        if state.page.number % TRACE_EVERY != 1:
            began, began_cpu = time.perf_counter(), time.process_time()
            state = import_page(state, container)
            plain_seconds += time.perf_counter() - began
            plain_cpu += time.process_time() - began_cpu
            plain_records += state.totals.read - read_before
            continue
        tracemalloc.start()
        state = import_page(state, container)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return finish_import(state, container).model_dump(), peaks, plain_seconds, plain_cpu, plain_records


def bench(crm: Crm, count: int, *, state_machine: bool, page_size: int | None) -> dict:
    now = datetime.now(UTC).replace(microsecond=0)
    with LocalEnvironment(log_path=ROOT / ".crmsync" / "bench-lambda.log") as env:
        control = crm.control(env)
        control.set_clock(now, frozen=True)
        os.environ["CRMSYNC_RETRY_BASE_DELAY_SECONDS"] = "0"
        ids = seed(crm, control, count, now)
        config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=env.config_environ())
        update: dict[str, Any] = {"filter": None} | ({"page_size": page_size} if page_size else {})
        contacts = config.sync(crm.sync_id).model_copy(update=update)
        config = config.model_copy(update={"syncs": [contacts]})
        operator = Operator("crmsync")
        operator.apply(config)
        container = operator.container
        meter = WriteMeter(container.aws.client("dynamodb"))
        results = {}
        for phase in ("first", "incremental"):
            if phase == "incremental":
                control.set_clock(now + timedelta(minutes=10), frozen=True)
                crm.write(control, [crm.change(i) for i in ids[: max(1, count // 100)]])
                control.set_clock(now + timedelta(minutes=12), frozen=True)
            control.reset_stats()
            dynamo_before = container.aws.calls["dynamodb"]
            items_before, wcu_before = meter.snapshot()
            started = time.perf_counter()
            if state_machine:
                run = operator.start(contacts.id)
                summary, peaks = operator.wait(run, timeout=7200, poll=0.2), []
                dynamo_calls = None  # the handlers' container counts them, in the stack's function environment
            else:
                summary, peaks, plain_seconds, plain_cpu, plain_records = run_steps(container, contacts.id)
                dynamo_calls = container.aws.calls["dynamodb"] - dynamo_before
            elapsed = time.perf_counter() - started
            if state_machine or not plain_records:
                plain_seconds, plain_cpu, plain_records = elapsed, None, summary["read"]
            read = max(1, summary["read"])
            items, wcu = (
                n - before for n, before in zip(meter.snapshot(), (items_before, wcu_before), strict=True)
            )
            crm_calls = control.stats()["total"]
            results[phase] = {
                "status": summary["status"],
                "read": summary["read"],
                "created": summary["created"],
                "updated": summary["updated"],
                "unchanged": summary["unchanged"],
                "seconds": round(elapsed, 2),
                "records_per_second": round(plain_records / max(plain_seconds, 1e-9), 1),
                "records_per_cpu_second": None if not plain_cpu else round(plain_records / plain_cpu, 1),
                "throughput_measured_on": plain_records,
                "crm_calls": crm_calls,
                "crm_calls_per_1000": round(crm_calls * 1000 / read, 2),
                "dynamodb_calls": dynamo_calls,
                "dynamodb_calls_per_1000": None if dynamo_calls is None else round(dynamo_calls * 1000 / read, 1),
                "items_written_per_1000": None if state_machine else round(items * 1000 / read, 1),
                "wcu_per_1000": None if state_machine else round(wcu * 1000 / read, 1),
                "largest_item_bytes": meter.largest,
                "pages": summary["pages"],
                "peak_page_memory_mib": round(max(peaks) / 2**20, 2) if peaks else None,
            }
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crm", choices=[*CRMS, "both"], default="both", help="which emulator to read")
    parser.add_argument("--records", type=int, nargs="+", default=[20_000], help="e.g. 20000 100000")
    parser.add_argument("--page-size", type=int, default=None, help="default: the sync's (the CRM's maximum)")
    parser.add_argument("--state-machine", action="store_true", help="run the real ASL in the local stack")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report: dict[str, dict[int, dict]] = {}
    for name in CRMS if args.crm == "both" else [args.crm]:
        report[name] = {}
        for count in args.records:
            report[name][count] = bench(
                CRMS[name], count, state_machine=args.state_machine, page_size=args.page_size
            )
            if args.json:
                continue
            for phase, row in report[name][count].items():
                print(
                    f"{name:<10} {count:>7,} records, {phase:<11}: read {row['read']:>7,} in {row['seconds']:>6.1f}s wall "
                    f"| {row['records_per_second']:>6,.0f} records/s, "
                    f"{row['records_per_cpu_second'] or 0:>6,.0f} per CPU-second (on {row['throughput_measured_on']:,} untraced) | CRM calls {row['crm_calls']:>4} "
                    f"({row['crm_calls_per_1000']:.2f}/1,000) | DynamoDB calls "
                    f"{row['dynamodb_calls'] if row['dynamodb_calls'] is not None else '-':>6} "
                    f"({row['dynamodb_calls_per_1000'] if row['dynamodb_calls_per_1000'] is not None else '-'}/1,000)"
                    f" | WCU {row['wcu_per_1000'] if row['wcu_per_1000'] is not None else '-'}/1,000"
                    f" | pages {row['pages']} | peak memory per page step "
                    f"{row['peak_page_memory_mib'] if row['peak_page_memory_mib'] is not None else '-'} MiB",
                    flush=True,
                )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
