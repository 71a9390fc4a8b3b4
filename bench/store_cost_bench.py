"""Store cost benchmark: what the profile store's writes cost per record on the local stack, split between
moto (the in-process DynamoDB) and the client side (botocore and crmsync), in CPU seconds.

The import and export benchmarks time whole runs; this one isolates the store, the part that dominates
them, and answers how fast the store could go on the embedded default at all: the CPU moto spends per
record bounds the rate whatever the client does. Each phase calls the stores the service steps call, on
the real template's tables (`ProfileStore.apply_import`, `record_exported`), with N records in pages:

- import, new records: each record's `X#`/`K#` lookups in transactions (their conditions, SPEC I10), the
  profile by BatchWriteItem;
- import, unchanged: the same records again (reads only);
- import, one attribute changed on each: an update transaction per record;
- export write-back, first export: each profile linked to a new CRM record (profile + `X#` lookup in a
  transaction);
- export write-back, re-export: the exported version only (one conditional UpdateItem each).

Printed per phase: records per CPU-second of this process, the share and milliseconds per record moto
spent per DynamoDB operation, the rate moto alone would allow, DynamoDB calls and WCU per 1,000 records
(2 WCU an item in a transaction, 1 otherwise). CPU seconds, not wall time: the machine's load does not
stretch them. Never asserts time.

    python bench/store_cost_bench.py                # 5,000 records
    python bench/store_cost_bench.py --records 20000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT)]

from moto.core.botocore_stubber import BotocoreStubber  # noqa: E402

from crmsync.domain.records import LocalRecord  # noqa: E402
from crmsync.services.operations import Operator  # noqa: E402
from crmsync.stores.profiles import ExportedProfile, ExportLink  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402

PAGE = 2_000  # records per call of the store, as an import page step of Salesforce's size
MODIFIED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


class MotoClock:
    """CPU seconds spent inside moto per DynamoDB operation (moto answers a request in the caller's thread)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._original = BotocoreStubber.__call__
        self._local = threading.local()
        clock = self

        def timed(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return clock._original(stubber, event_name, request, **kwargs)
            finally:
                clock.seconds[event_name.rsplit(".", 1)[-1]] += time.thread_time() - began

        BotocoreStubber.__call__ = timed  # type: ignore[method-assign]

    def close(self) -> None:
        BotocoreStubber.__call__ = self._original  # type: ignore[method-assign]


class Requests:
    """DynamoDB calls and write capacity, counted on the client's requests."""

    def __init__(self, client: Any) -> None:
        self.calls = 0
        self.wcu = 0
        events = client.meta.events
        events.register("provide-client-params.dynamodb", self._count)

    def _count(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls += 1
        name = model.name
        if name == "TransactWriteItems":
            self.wcu += 2 * sum(1 for a in params["TransactItems"] if "ConditionCheck" not in a)
        elif name == "BatchWriteItem":
            self.wcu += sum(len(r) for r in params["RequestItems"].values())
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.wcu += 1


def contact(index: int, *, title: str = "Buyer", modified: datetime = MODIFIED) -> LocalRecord:
    return LocalRecord(
        crm_id=f"003{index:015d}",
        modified_at=modified,
        attributes={
            "firstName": "Zoë",
            "lastName": f"Dupont-{index}",
            "email": f"zoe.{index}@example.net",
            "phone": "+33 1 23 45 67 89",
            "country": "France",
            "birthDate": "1984-02-29",
            "source": "web",
            "title": title,
        },
    )


def measure(
    name: str, count: int, work: Callable[[], Any], moto: MotoClock, requests_: Requests
) -> dict[str, Any]:
    moto.seconds.clear()
    calls, wcu = requests_.calls, requests_.wcu
    began = time.process_time()
    work()
    cpu = time.process_time() - began
    in_moto = sum(moto.seconds.values())
    return {
        "phase": name,
        "records": count,
        "cpu_seconds": round(cpu, 2),
        "records_per_cpu_second": round(count / cpu, 1),
        "moto_share": round(in_moto / cpu, 3),
        "moto_ms_per_record": {op: round(s * 1000 / count, 3) for op, s in moto.seconds.most_common()},
        "moto_alone_records_per_cpu_second": round(count / in_moto, 1) if in_moto else None,
        "dynamodb_calls_per_1000": round((requests_.calls - calls) * 1000 / count, 1),
        "wcu_per_1000": round((requests_.wcu - wcu) * 1000 / count, 1),
    }


def bench(count: int) -> list[dict[str, Any]]:
    with LocalEnvironment(time_scale=0, log_path=ROOT / ".crmsync" / "bench-lambda.log"):
        os.environ["CRMSYNC_RETRY_BASE_DELAY_SECONDS"] = "0"
        profiles = Operator("crmsync").container.profiles
        moto, requests_ = MotoClock(), Requests(profiles.client)
        records = [contact(i) for i in range(count)]
        changed = [contact(i, title="Director", modified=MODIFIED + timedelta(hours=1)) for i in range(count)]
        ids: dict[str, str] = {}

        def imported(batch: list[LocalRecord]) -> Callable[[], None]:
            def run() -> None:
                for start in range(0, len(batch), PAGE):
                    result = profiles.apply_import(
                        batch[start : start + PAGE],
                        connection="sf-prod",
                        object_name="Contact",
                        key_attribute="email",
                        case_insensitive=True,
                        run_id=f"bench-{uuid.uuid4()}",
                    )
                    ids.update(result.profile_ids)

            return run

        def exported(link: bool) -> Callable[[], None]:
            def run() -> None:
                rows = [
                    ExportedProfile(
                        profile_id=ids[r.crm_id],
                        version=3 if link else 4,
                        link=ExportLink(ids[r.crm_id], "sf-leads", "Lead", f"00Q{i:015d}") if link else None,
                    )
                    for i, r in enumerate(records)
                ]
                for start in range(0, len(rows), PAGE):
                    profiles.record_exported("bench-leads", rows[start : start + PAGE])

            return run

        try:
            return [
                measure("import, new records", count, imported(records), moto, requests_),
                measure("import, unchanged", count, imported(records), moto, requests_),
                measure("import, one attribute changed", count, imported(changed), moto, requests_),
                measure("export write-back, first export (links)", count, exported(True), moto, requests_),
                measure("export write-back, re-export (version)", count, exported(False), moto, requests_),
            ]
        finally:
            moto.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = bench(args.records)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{args.records:,} records, pages of {PAGE:,}; CPU seconds of this process (moto runs in it)")
    for row in rows:
        split = ", ".join(f"{op} {ms:.3f}" for op, ms in row["moto_ms_per_record"].items())
        alone = row["moto_alone_records_per_cpu_second"]
        print(
            f"{row['phase']:<42} {row['records_per_cpu_second']:>7,.0f} records per CPU-second | moto "
            f"{row['moto_share']:.0%} of it ({split} ms/record), alone {alone or 0:,.0f}/CPU-s | DynamoDB calls "
            f"{row['dynamodb_calls_per_1000']}/1,000 | WCU {row['wcu_per_1000']}/1,000",
            flush=True,
        )


if __name__ == "__main__":
    main()
