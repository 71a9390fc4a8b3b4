"""Initial transfer benchmark (SPEC T1, N3): N emulator contacts through crmsync's transfer path, by files.

Runs the service steps the Lambda handlers run - start (count, route) -> extract steps (Salesforce Bulk
API 2.0 query pages / Dataverse change-tracking pages into JSON Lines parts in S3) -> one load per part ->
finish - against the Salesforce and Dynamics 365 emulators over HTTPS and the local stack's moto (DynamoDB,
S3). The parts are loaded one after the other here (the Map runs them side by side on AWS). Each extract
step is cut to one part, so the steps stay comparable as N grows.

Prints, per CRM and size: wall time, records/s (on the untraced steps), CRM calls, DynamoDB calls, items
written and WCU per 1,000 records, and the peak memory a step allocates (tracemalloc, on every 10th step
of each kind, or every `--trace-every`th; the first extract step and the first part load are always traced).
That peak must stay flat as N grows: one part is in memory at a time. tracemalloc counts every allocation of its process, so by
default the emulators and the local stack (moto) are served by a `crmsync local up` child process, and
the benchmark's process holds only what a step's Lambda would: crmsync, boto3 and the HTTP clients. The
peak is then crmsync's own; `--in-process` runs everything in one process as before (the Dataverse
emulator sorts the whole table for the first page of a query, which shows in the first extract step).

    python bench/transfer_bench.py                       # both CRMs, 20,000 records, parts of 5,000
    python bench/transfer_bench.py --crm salesforce --records 20000 100000 --part-records 10000

Numbers describe this machine and moto, not AWS; compare runs, not absolutes. Write capacity is counted as
bench/import_bench.py counts it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT), str(ROOT / "bench")]

from import_bench import CRMS, WriteMeter, seed  # noqa: E402

from crmsync.config import InitialTransferSync, load_config  # noqa: E402
from crmsync.services import initial_transfers  # noqa: E402
from crmsync.services.initial_transfers import (  # noqa: E402
    StartTransferEvent,
    TransferPartEvent,
    extract_transfer,
    finish_transfer,
    load_transfer_part,
    start_transfer,
)
from crmsync.services.operations import Operator  # noqa: E402
from crmsync.wiring import Container  # noqa: E402
from crmsync_local.emulators.dynamics import DynamicsControl  # noqa: E402
from crmsync_local.emulators.salesforce import SalesforceControl  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402

TRACE_EVERY = 10
TRANSFERS = {"salesforce": "sf-contacts-transfer", "dynamics": "dyn-contacts-transfer"}


class Steps:
    """Times the untraced steps, traces every 10th step of a kind (the first always) for its peak."""

    def __init__(self, trace_every: int = TRACE_EVERY) -> None:
        self.trace_every = trace_every
        self.seconds = 0.0
        self.peaks: dict[str, list[int]] = {"extract": [], "part": []}
        self.count: dict[str, int] = {"extract": 0, "part": 0}

    def run(self, kind: str, step: Callable[[], Any]) -> Any:
        number = self.count[kind]
        self.count[kind] += 1
        if number % self.trace_every:
            began = time.perf_counter()
            result = step()
            self.seconds += time.perf_counter() - began
            return result
        tracemalloc.start()
        try:
            return step()
        finally:
            self.peaks[kind].append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()


def run_steps(container: Container, sync_id: str, steps: Steps) -> dict[str, Any]:
    state = start_transfer(StartTransferEvent(sync_id=sync_id, run_id=f"bench-{time.time_ns()}"), container)
    while not state.run.extracted:
        state = steps.run("extract", lambda s=state: extract_transfer(s, container))
    for number in range(1, state.run.batches + 1):
        event = TransferPartEvent(run=state.run, plan=state.plan, number=number)
        steps.run("part", lambda e=event: load_transfer_part(e, container))
    return finish_transfer(state, container).model_dump()


class ServedEnvironment:
    """What `bench` needs of a `LocalEnvironment`, for one served by a `crmsync local up` child process."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    @property
    def salesforce_control(self) -> SalesforceControl:
        return SalesforceControl(self.state["salesforce"]["url"], self.state["ca_bundle"])

    @property
    def dynamics_control(self) -> DynamicsControl:
        return DynamicsControl(self.state["dynamics"]["url"], self.state["ca_bundle"])

    def config_environ(self) -> dict[str, str]:
        return {**os.environ, **self.state["environment"]}


@contextmanager
def served_environment(timeout: float = 600) -> Iterator[ServedEnvironment]:
    """A `crmsync local up` child process (emulators and local stack), this process pointed at it; stopped
    (SIGTERM to that child only) on exit."""
    with (
        tempfile.TemporaryDirectory(prefix="transfer-bench-") as directory,
        open(Path(directory) / "local-up.err", "w+") as errors,
    ):
        state_file = Path(directory) / "local.json"
        command = [sys.executable, "-c", "from crmsync_local.cli import main; main()", "local", "up"]
        child = subprocess.Popen(  # noqa: S603 - this interpreter running our own CLI
            [*command, "--state-file", str(state_file)],
            cwd=ROOT,
            env={**os.environ, "CRMSYNC_RETRY_BASE_DELAY_SECONDS": "0"},
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        saved = dict(os.environ)
        try:
            deadline = time.monotonic() + timeout
            while not state_file.exists():
                if child.poll() is not None:
                    errors.seek(0)
                    raise RuntimeError(f"`crmsync local up` ended ({child.returncode}): {errors.read()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError("`crmsync local up` wrote no state file")
                time.sleep(0.5)
            state = json.loads(state_file.read_text())
            os.environ.update(state["environment"])
            yield ServedEnvironment(state)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextmanager
def environment(in_process: bool) -> Iterator[Any]:
    if in_process:
        with LocalEnvironment(log_path=ROOT / ".crmsync" / "bench-lambda.log") as env:
            yield env
    else:
        with served_environment() as served:
            yield served


def bench(
    crm_name: str, count: int, part_records: int, *, in_process: bool = False, trace_every: int = TRACE_EVERY
) -> dict[str, Any]:
    crm = CRMS[crm_name]
    now = datetime.now(UTC).replace(microsecond=0)
    with environment(in_process) as env:
        control = crm.control(env)
        control.set_clock(now, frozen=True)
        os.environ["CRMSYNC_RETRY_BASE_DELAY_SECONDS"] = "0"
        seed(crm, control, count, now)
        config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=env.config_environ())
        contacts = config.sync(crm.sync_id).model_copy(update={"filter": None})
        transfer = config.sync(TRANSFERS[crm_name])
        assert isinstance(transfer, InitialTransferSync)
        transfer = transfer.model_copy(update={"threshold": 1, "part_records": part_records})
        operator = Operator("crmsync")
        operator.apply(config.model_copy(update={"syncs": [contacts, transfer]}))
        container = operator.container
        meter = WriteMeter(container.aws.client("dynamodb"))
        control.reset_stats()
        dynamo_before = container.aws.calls["dynamodb"]
        steps = Steps(trace_every)
        started = time.perf_counter()
        summary = run_steps(container, transfer.id, steps)
        elapsed = time.perf_counter() - started
        read = max(1, summary["read"])
        items, wcu = meter.snapshot()
        crm_calls = control.stats()["total"]
        dynamo_calls = container.aws.calls["dynamodb"] - dynamo_before
        traced_parts = len(steps.peaks["part"]) * part_records
        untraced_records = max(1, summary["read"] - traced_parts)
        return {
            "status": summary["status"],
            "mode": summary["mode"],
            "read": summary["read"],
            "created": summary["created"],
            "parts": summary["parts"],
            "seconds": round(elapsed, 2),
            "records_per_second": round(untraced_records / max(steps.seconds, 1e-9), 1),
            "crm_calls": crm_calls,
            "crm_calls_per_1000": round(crm_calls * 1000 / read, 2),
            "dynamodb_calls": dynamo_calls,
            "dynamodb_calls_per_1000": round(dynamo_calls * 1000 / read, 1),
            "items_written_per_1000": round(items * 1000 / read, 1),
            "wcu_per_1000": round(wcu * 1000 / read, 1),
            "peak_extract_step_mib": round(max(steps.peaks["extract"]) / 2**20, 2),
            "peak_part_load_mib": round(max(steps.peaks["part"], default=0) / 2**20, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crm", choices=[*CRMS, "both"], default="both", help="which emulator to read")
    parser.add_argument("--records", type=int, nargs="+", default=[20_000], help="e.g. 20000 100000")
    parser.add_argument(
        "--part-records", type=int, default=5_000, help="records per part (the sync's default 50,000)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the emulators and moto in this process (the peak memory then includes theirs)",
    )
    parser.add_argument(
        "--trace-every",
        type=int,
        default=TRACE_EVERY,
        help="trace every Nth step of a kind (a traced step runs ~4x slower; fewer for the largest sizes)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    initial_transfers.EXTRACT_STEP_SECONDS = 0.0  # one part per extract step
    report: dict[str, dict[int, dict]] = {}
    for name in CRMS if args.crm == "both" else [args.crm]:
        report[name] = {}
        for count in args.records:
            row = report[name][count] = bench(
                name, count, args.part_records, in_process=args.in_process, trace_every=args.trace_every
            )
            if args.json:
                continue
            print(
                f"{name:<10} {count:>9,} records: {row['status']} {row['mode']}, {row['parts']} parts, read "
                f"{row['read']:,} in {row['seconds']:.1f}s wall | {row['records_per_second']:,.0f} records/s "
                f"(untraced steps) | CRM calls {row['crm_calls']} ({row['crm_calls_per_1000']}/1,000) | DynamoDB "
                f"calls {row['dynamodb_calls']:,} ({row['dynamodb_calls_per_1000']}/1,000) | items written "
                f"{row['items_written_per_1000']}/1,000, WCU {row['wcu_per_1000']}/1,000 | peak memory: extract "
                f"step {row['peak_extract_step_mib']} MiB, part load {row['peak_part_load_mib']} MiB"
                f"{' (emulators and moto included)' if args.in_process else ' (crmsync only)'}",
                flush=True,
            )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
