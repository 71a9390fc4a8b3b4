"""Two-way benchmark: the CRM calls of one run over N linked records with 1% changed on each side - two
opt-out flags and a text field (`Title` / `jobtitle`, priority crm, update blank values: SPEC B1).

For each CRM emulator (Salesforce, Dynamics; over HTTPS): N contacts, each linked to a marketing profile
(in moto, the local stack), per-field change records on (Salesforce field history on both mapped fields;
Dataverse auditing on the contact table). A first run reads everything (and records what both sides hold
in the write ledger); then a person opts 1% of the contacts out of e-mail in the CRM and the marketing side
opts another 1% out of calls; both sides also change the text field of their records, and the measured
run syncs them: the service steps the Lambda handlers run
(start -> every batch -> finish), in this process.

Printed per CRM: the emulator's own count of calls (token calls excluded) by kind - pages of changed
records, history/audit reads, reads by id, writes, other (sign-in metadata, describe, the CRM's clock,
the integration user) - and what the run decided and wrote. Never asserts a time.

    python bench/two_way_bench.py                   # 10,000 records, 1% changed on each side
    python bench/two_way_bench.py --records 20000 --changed 0.01
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT)]

from crmsync.config import OptOutSettings, TwoWayField, TwoWaySync, WatermarkSettings, load_config  # noqa: E402
from crmsync.services.operations import Operator  # noqa: E402
from crmsync.services.two_way import (  # noqa: E402
    StartTwoWayEvent,
    TwoWayBatchEvent,
    finish_two_way,
    start_two_way,
    two_way_batch,
)
from crmsync.stores.profiles import ExportedProfile, ExportLink  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402
from crmsync_local.marketing import marketing_profiles  # noqa: E402

CRMS = {
    "salesforce": {
        "connection": "sf-prod",
        "object": "Contact",
        "fields": {"denyListEmail": "HasOptedOutOfEmail", "denyListPhone": "DoNotCall"},
        "text": "Title",
    },
    "dynamics": {
        "connection": "dyn-prod",
        "object": "contact",
        "fields": {"denyList": "donotbulkemail", "denyListFax": "donotfax"},
        "text": "jobtitle",
    },
}


LABELS = {
    "read_first_page": "pages of changed records",
    "read_next_page": "pages of changed records",
    "read_by_ids": "reads by id (the other side of marketing changes)",
    "field_changes": "history / audit reads",
    "field_tracking": "field tracking (per run)",
    "integration_user": "integration user",
    "server_time": "the CRM's clock",
    "describe": "describe",
    "write": "writes",
}


class CallCounter:
    """CRM calls by what they were for, measured around the connector's methods (the outermost one
    counts: a read by ids pages through `read_first_page` itself)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._depth = 0

    def wrap(self, cls: type, name: str) -> None:
        original = getattr(cls, name)
        counter = self

        def measured(this: Any, *args: Any, **kwargs: Any) -> Any:
            counter._depth += 1
            before = this.api_calls
            try:
                return original(this, *args, **kwargs)
            finally:
                counter._depth -= 1
                if counter._depth == 0:
                    counter.calls[LABELS[name]] += this.api_calls - before

        setattr(cls, name, measured)


def instrument() -> CallCounter:
    from crmsync.connectors.dynamics.connector import DynamicsConnector
    from crmsync.connectors.dynamics.writer import DynamicsWriter
    from crmsync.connectors.salesforce.connector import SalesforceConnector
    from crmsync.connectors.salesforce.writer import SalesforceWriter

    counter = CallCounter()
    for cls in (SalesforceConnector, DynamicsConnector):
        for name in (
            "read_first_page",
            "read_next_page",
            "read_by_ids",
            "field_changes",
            "field_tracking",
            "integration_user",
            "server_time",
            "describe",
        ):
            counter.wrap(cls, name)
    for cls in (SalesforceWriter, DynamicsWriter):
        counter.wrap(cls, "write")
    return counter


def run_once(operator: Operator, sync_id: str) -> dict[str, Any]:
    container = operator.container
    state = start_two_way(StartTwoWayEvent(sync_id=sync_id, run_id=f"bench-{time.time_ns()}"), container)
    for number in range(1, state.run.batches + 1):
        two_way_batch(TwoWayBatchEvent(run=state.run, number=number), container)
    return finish_two_way(state, container).model_dump()


def seed(env: LocalEnvironment, crm: str, count: int) -> list[str]:
    past = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    if crm == "salesforce":
        rows = [
            {"LastName": f"Bench{i}", "Email": f"b{i}@example.org", "CreatedDate": past, "LastModifiedDate": past}
            for i in range(count)
        ]
        return [
            i
            for start in range(0, count, 5000)
            for i in env.salesforce_control.seed("Contact", rows[start : start + 5000])
        ]
    rows = [
        {"lastname": f"Bench{i}", "emailaddress1": f"b{i}@example.net", "createdon": past, "modifiedon": past}
        for i in range(count)
    ]
    return [
        i
        for start in range(0, count, 5000)
        for i in env.dynamics_control.put_records("contacts", rows[start : start + 5000])
    ]


def bench(
    crm: str, env: LocalEnvironment, operator: Operator, count: int, share: float, counter: CallCounter
) -> dict[str, Any]:
    spec = CRMS[crm]
    sync_id = f"bench-{crm}-optouts"
    profiles = marketing_profiles(operator.container)
    crm_ids = seed(env, crm, count)
    profile_ids = [p for p in profiles.create_local_many([{"email": f"p{crm}{i}"} for i in range(count)]) if p]
    profiles.record_exported(
        "bench",
        [
            ExportedProfile(p, link=ExportLink(p, spec["connection"], spec["object"], c))
            for p, c in zip(profile_ids, crm_ids, strict=True)
        ],
    )
    if crm == "salesforce":
        env.salesforce_control.track_history("Contact", [*spec["fields"].values(), spec["text"]])
    else:
        env.dynamics_control.set_auditing(environment=True, tables={"contact": True})
    first = run_once(operator, sync_id)
    time.sleep(2)  # past the 1-second overlap: the measured run's windows hold the changes below only
    changed = max(1, int(count * share))
    now = datetime.now(UTC).replace(microsecond=0)
    (_, email_field), (phone_attribute, _) = spec["fields"].items()
    if crm == "salesforce":
        env.salesforce_control.set_clock(now, frozen=True)
        env.salesforce_control.seed(
            "Contact", [{"Id": i, email_field: True, spec["text"]: f"CRM title {i}"} for i in crm_ids[:changed]]
        )
        env.salesforce_control.set_clock(now + timedelta(minutes=1), frozen=True)
    else:
        env.dynamics_control.set_clock(now, frozen=True)
        env.dynamics_control.put_records(
            "contacts",
            [{"contactid": i, email_field: True, spec["text"]: f"CRM title {i}"} for i in crm_ids[:changed]],
        )
        env.dynamics_control.set_clock(now + timedelta(minutes=1), frozen=True)
    for profile_id in profile_ids[changed : 2 * changed]:
        profiles.update_local(profile_id, {phone_attribute: True, "title": f"Marketing title {profile_id}"})
    time.sleep(1.1)  # the change index is read up to our clock's last whole second
    counter.calls.clear()
    began = time.perf_counter()
    summary = run_once(operator, sync_id)
    elapsed = time.perf_counter() - began
    return {
        "crm": crm,
        "records": count,
        "changed_each_side": changed,
        "first_run_calls": first["api_calls"],
        "calls": dict(counter.calls),
        "total": summary["api_calls"],
        "summary": summary,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share changed on each side")
    parser.add_argument("--crm", choices=["salesforce", "dynamics", "both"], default="both")
    args = parser.parse_args()
    with LocalEnvironment(time_scale=0, log_path=ROOT / ".crmsync" / "bench-lambda.log") as env:
        os.environ["CRMSYNC_RETRY_BASE_DELAY_SECONDS"] = "0"
        config = load_config((ROOT / "examples/syncs.yaml").read_text(), environ=env.config_environ())
        syncs = [
            TwoWaySync(
                id=f"bench-{crm}-optouts",
                operation="two_way",
                connection=spec["connection"],  # type: ignore[arg-type]
                object=spec["object"],  # type: ignore[arg-type]
                opt_outs=OptOutSettings(fields=spec["fields"]),  # type: ignore[arg-type]
                fields=[TwoWayField(remote=spec["text"], local="title", priority="crm", update_blank_values=True)],  # type: ignore[arg-type]
                watermark=WatermarkSettings(lag_seconds=0, overlap_seconds=1),
            )
            for crm, spec in CRMS.items()
        ]
        operator = Operator("crmsync")
        operator.apply(config.model_copy(update={"syncs": syncs}))
        counter = instrument()
        for crm in ("salesforce", "dynamics") if args.crm == "both" else (args.crm,):
            result = bench(crm, env, operator, args.records, args.changed, counter)
            s = result["summary"]
            calls = result["calls"]
            print(
                f"{crm}: {result['records']:,} linked records, {result['changed_each_side']:,} changed on each "
                f"side -> {result['total']} CRM calls in the run (token calls included); CRM fields written "
                f"{s['crm']['fields_written']} on {s['crm']['records_written']} records, profile fields written "
                f"{s['marketing']['fields_written']}, consent rows {s['consent_rows']}, title {s['fields']['title']}; "
                f"{result['seconds']:.1f}s "
                f"in-process (the first run, which reads everything: {result['first_run_calls']} calls)",
                flush=True,
            )
            for label, n in sorted(calls.items(), key=lambda item: -item[1]):
                print(f"    {n:5}  {label}", flush=True)


if __name__ == "__main__":
    main()
