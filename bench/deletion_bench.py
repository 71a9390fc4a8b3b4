"""Deletion benchmark: what the id-set comparison of a deletion import costs (SPEC D1), on both CRMs.

The comparison has two halves, measured apart so each is measured at a size that says something:

(1) reading every id of the object from the CRM - `--crm-records` records (default 100,000), no local
    records: the CRM calls it takes are the figure the issue asks for, per 100,000 records;
(2) sweeping the local records against those ids - `--local-records` contacts (default 10,000) first
    imported into the profile store (moto's DynamoDB, in process), a tenth of a percent of them then
    deleted in the CRM dated long ago (Salesforce's getDeleted no longer lists them): CRM calls,
    DynamoDB calls per 1,000 local records, records/s of the whole run, and the peak memory of one sweep step.

Both run the service steps the Lambda handlers run (start -> step... -> finish), in this process, against
the emulators over HTTPS: `sf-contacts-compare` (Bulk API 2.0 query of the ids) and `dyn-contacts-deleted`
(a first run: change tracking's full read of the keys, 5,000 a page).

    python bench/deletion_bench.py
    python bench/deletion_bench.py --crm salesforce --crm-records 200000 --local-records 5000

Numbers describe this machine, the emulators and moto, not AWS; compare rows, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT), str(ROOT / "bench")]

from import_bench import CRMS, Crm, run_steps, seed  # noqa: E402

from crmsync.config import load_config  # noqa: E402
from crmsync.services.deletion_imports import (  # noqa: E402
    StartDeletionImportEvent,
    deletion_import_page,
    finish_deletion_import,
    start_deletion_import,
)
from crmsync.services.operations import Operator  # noqa: E402
from crmsync.wiring import Container  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402

DELETION_SYNC = {"salesforce": "sf-contacts-compare", "dynamics": "dyn-contacts-deleted"}


def delete_long_ago(name: str, control: Any, crm_ids: list[str], now: datetime) -> None:
    for crm_id in crm_ids:
        if name == "salesforce":
            control.delete("Contact", crm_id, deleted_date=now - timedelta(days=60))
        else:
            control.delete_record("contacts", crm_id)


def compare(container: Container, sync_id: str) -> tuple[dict[str, Any], float]:
    """The deletion import's steps; the peak allocation of the sweep steps (bytes), traced one in four."""
    state = start_deletion_import(
        StartDeletionImportEvent(sync_id=sync_id, run_id=f"bench-{time.time_ns()}"), container
    )
    peak, step = 0, 0
    while not state.page.done:
        step += 1
        if state.page.phase == "sweep" and step % 4 == 0:
            tracemalloc.start()
            state = deletion_import_page(state, container)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        else:
            state = deletion_import_page(state, container)
    return finish_deletion_import(state, container).model_dump(), peak / 2**20


def bench(name: str, crm: Crm, *, crm_records: int, local_records: int) -> dict[str, dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, dict[str, Any]] = {}
    for half, count in (("crm ids", crm_records), ("local sweep", local_records)):
        with LocalEnvironment(log_path=ROOT / ".crmsync" / "bench-lambda.log") as env:
            control = crm.control(env)
            control.set_clock(now, frozen=True)
            os.environ["CRMSYNC_RETRY_BASE_DELAY_SECONDS"] = "0"
            ids = seed(crm, control, count, now)
            config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=env.config_environ())
            syncs = [config.sync(DELETION_SYNC[name])]
            if half == "local sweep":
                syncs.append(config.sync(crm.sync_id).model_copy(update={"filter": None}))
            operator = Operator("crmsync")
            operator.apply(config.model_copy(update={"syncs": syncs}))
            container = operator.container
            gone = 0
            if half == "local sweep":
                run_steps(container, crm.sync_id)
                gone = max(1, count // 1000)
                delete_long_ago(name, control, ids[:gone], now)
                control.set_clock(now + timedelta(minutes=5), frozen=True)
            control.reset_stats()
            dynamo_before = container.aws.calls["dynamodb"]
            began = time.perf_counter()
            summary, peak_mib = compare(container, DELETION_SYNC[name])
            seconds = time.perf_counter() - began
            crm_calls = control.stats()["total"]
            dynamo = container.aws.calls["dynamodb"] - dynamo_before
            results[half] = {
                "status": summary["status"],
                "crm_ids_read": summary["compared"],
                "local_checked": summary["checked"],
                "deleted_found": summary["deleted"],
                "deleted_made": gone,
                "seconds": round(seconds, 2),
                "crm_calls": crm_calls,
                "crm_calls_per_100000": round(crm_calls * 100_000 / max(1, summary["compared"]), 1),
                "dynamodb_calls": dynamo,
                "dynamodb_calls_per_1000_local": round(dynamo * 1000 / summary["checked"], 1)
                if summary["checked"]
                else None,
                "records_per_second": round(max(summary["compared"], summary["checked"]) / max(seconds, 1e-9), 1),
                "peak_sweep_step_mib": round(peak_mib, 2) if peak_mib else None,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crm", choices=[*CRMS, "both"], default="both")
    parser.add_argument("--crm-records", type=int, default=100_000)
    parser.add_argument("--local-records", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for name in CRMS if args.crm == "both" else [args.crm]:
        report[name] = bench(name, CRMS[name], crm_records=args.crm_records, local_records=args.local_records)
        if args.json:
            continue
        for half, row in report[name].items():
            print(
                f"{name:<10} {half:<11}: {row['status']} | CRM ids read {row['crm_ids_read']:>7,} | local checked "
                f"{row['local_checked']:>6,} | deletions found {row['deleted_found']}/{row['deleted_made']} | "
                f"{row['seconds']:>6.1f}s | {row['records_per_second']:>8,.0f} records/s | CRM calls {row['crm_calls']} "
                f"({row['crm_calls_per_100000']}/100,000 ids) | DynamoDB calls {row['dynamodb_calls']} "
                f"({row['dynamodb_calls_per_1000_local'] if row['dynamodb_calls_per_1000_local'] is not None else '-'}"
                f"/1,000 local) | peak sweep step "
                f"{row['peak_sweep_step_mib'] if row['peak_sweep_step_mib'] is not None else '-'} MiB",
                flush=True,
            )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
