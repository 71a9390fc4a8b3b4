"""E-mail events benchmark: N events through the events queue onto each CRM's timeline (SPEC M1).

The events go onto the template's events queue (`crmsync events send`, SendMessageBatch 10 a call) and
are delivered to the real push function by the local stack the way Lambda's poller does it: the
event-source mapping's `BatchSize` from template.yaml (its batching window only matters for a trickle;
here the queue is full before delivery starts, so every batch is full). 20% of the events are sent twice
(duplicates) and 5% belong to profiles with no CRM record (retried, so they stay in the queue).

Printed per CRM: events delivered, wall time and events/s of the delivery (moto's SQS, S3 and DynamoDB
in this process, the CRM emulator over HTTPS), CRM calls (the emulator's own count, token calls
excluded) and CRM calls per 1,000 events, against the minimum for the CRM's batch size (Salesforce:
1,000 / 200 = 5; Dynamics: 1,000 / parts per `$batch`). For Dynamics each `--parts` value is a run, and
the emulator's milliseconds per `$batch` call are printed, to choose the default within Dataverse's
limits (1,000 parts, a 2-minute request).

    python bench/events_bench.py                          # 5,000 events, Dynamics parts 100 and 1000
    python bench/events_bench.py --events 2000 --parts 50,100,200,500,1000 --latency-ms 20

Numbers describe this machine and an emulator; compare the rows, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers/crmsync"), str(ROOT / "local"), str(ROOT)]

from crmsync.config import EventsSync, load_config  # noqa: E402
from crmsync.connectors.dynamics.connector import DynamicsConnector  # noqa: E402
from crmsync.services.events import EventPusher  # noqa: E402
from crmsync.services.operations import Operator  # noqa: E402
from crmsync.stores.profiles import ExportedProfile, ExportLink  # noqa: E402
from crmsync_local.environment import LocalEnvironment  # noqa: E402
from crmsync_local.marketing import marketing_profiles  # noqa: E402

EXAMPLE = ROOT / "examples" / "syncs.yaml"
DUPLICATES = 0.20
UNLINKED = 0.05
PROFILES = 500


def events(count: int, linked: list[str], unlinked: list[str], *, seed: int = 7) -> list[str]:
    """`count` messages: unique events, 20% of them sent twice, 5% for unlinked profiles."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    unique = round(count / (1 + DUPLICATES))
    lines = []
    for number in range(unique):
        kind = rng.choice(["send", "open", "open", "click", "bounce"])
        profile = rng.choice(unlinked) if rng.random() < UNLINKED else rng.choice(linked)
        event: dict[str, Any] = {
            "event_id": f"bench-{number:07d}",
            "type": kind,
            "profile_id": profile,
            "campaign_id": f"CMP-{number % 12}",
            "campaign_name": "Winter sale",
            "delivery_id": f"DLV-{number % 40}",
            "delivery_name": "Winter sale - wave",
            "at": (now - timedelta(minutes=rng.randint(1, 600))).isoformat(),
            "mirror_page_url": f"https://marketing.example.com/mirror/{number}",
        }
        if kind == "click":
            event["url"] = f"https://shop.example.com/p/{number}"
        lines.append(json.dumps(event))
    lines += rng.sample(lines, count - unique)
    rng.shuffle(lines)
    return lines


def link_profiles(env: LocalEnvironment, operator: Operator, kind: str) -> tuple[list[str], list[str]]:
    profiles = marketing_profiles(operator.container)
    ids = [
        str(i) for i in profiles.create_local_many([{"email": f"bench{i}@example.com"} for i in range(PROFILES)])
    ]
    if kind == "salesforce":
        crm_ids = env.salesforce_control.seed("Contact", [{"LastName": f"Bench{i}"} for i in range(PROFILES)])
        connection, obj = "sf-prod", "Contact"
    else:
        crm_ids = env.dynamics_control.put_records(
            "contacts", [{"lastname": f"Bench{i}"} for i in range(PROFILES)]
        )
        connection, obj = "dyn-prod", "contact"
    linked = ids[: int(PROFILES * 0.9)]
    profiles.record_exported(
        "bench-setup",
        [
            ExportedProfile(p, link=ExportLink(p, connection, obj, c))
            for p, c in zip(linked, crm_ids, strict=False)
        ],
    )
    return linked, ids[len(linked) :]


def only(config: Any, sync_id: str, **changes: Any) -> Any:
    syncs = []
    for sync in config.syncs:
        if isinstance(sync, EventsSync):
            update = {**sync.model_dump(), "enabled": sync.id == sync_id}
            if sync.id == sync_id:
                update.update(changes)
            sync = EventsSync.model_validate(update)
        syncs.append(sync)
    return config.model_copy(update={"syncs": syncs})


def empty_archive(env: LocalEnvironment, operator: Operator) -> None:
    assert env.stack is not None
    s3 = env.stack.client("s3")
    bucket = operator.container.settings.data_bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="events/archive/"):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"])


BATCH_SECONDS: list[float] = []
PUSH_SECONDS: list[float] = []
_REQUEST = DynamicsConnector.request
_PUSH = EventPusher.push


def _timed_push(self: EventPusher, messages: Any) -> Any:
    """The push function's own work on each batch (the handler runs in this process), apart from the
    local stack's receive and delete calls around it (moto scans its whole queue on each of them)."""
    began = time.perf_counter()
    try:
        return _PUSH(self, messages)
    finally:
        PUSH_SECONDS.append(time.perf_counter() - began)


EventPusher.push = _timed_push  # type: ignore[method-assign]


def _timed_request(self: DynamicsConnector, method: str, url: str, **kwargs: Any) -> Any:
    """The time of each `$batch` call the push function makes (handlers run in this process)."""
    began = time.perf_counter()
    try:
        return _REQUEST(self, method, url, **kwargs)
    finally:
        if url.endswith("/$batch"):
            BATCH_SECONDS.append(time.perf_counter() - began)


DynamicsConnector.request = _timed_request  # type: ignore[method-assign]


def crm_calls(stats: dict[str, Any], pattern: str) -> int:
    return sum(n for key, n in stats["calls"].items() if pattern in key)


def run(
    env: LocalEnvironment,
    operator: Operator,
    kind: str,
    count: int,
    parts: int | None,
    linked: list[str],
    unlinked: list[str],
) -> dict[str, Any]:
    sync_id = "sf-email-events" if kind == "salesforce" else "dyn-email-events"
    empty_archive(env, operator)  # each run starts from an empty archive: switching a sync on back-fills it
    config = load_config(EXAMPLE.read_text(encoding="utf-8"), environ=env.config_environ())
    operator.apply(only(config, sync_id, **({"batch_size": parts} if parts else {})))
    control = env.salesforce_control if kind == "salesforce" else env.dynamics_control
    if kind == "salesforce":
        control.purge("Marketing_Event__c")
    else:
        for row in control.records("cr_marketingevents"):
            control.delete_record("cr_marketingevents", row["activityid"])
    lines = events(count, linked, unlinked)
    began = time.perf_counter()
    sent = operator.send_events(lines)
    queued = time.perf_counter()
    say(f"{sent.sent} queued in {queued - began:.1f}s")
    control.reset_stats()
    BATCH_SECONDS.clear()
    PUSH_SECONDS.clear()
    delivered = succeeded = 0
    batches = 0
    while True:
        result = env.deliver_events()
        if result.delivered == 0:
            break
        delivered += result.delivered
        succeeded += result.succeeded
        batches += result.batches
    ended = time.perf_counter()
    stats = control.stats()
    calls = crm_calls(stats, "composite/sobjects" if kind == "salesforce" else "$batch")
    records = (
        control.records("Marketing_Event__c") if kind == "salesforce" else control.records("cr_marketingevents")
    )
    per_call_ms = sum(BATCH_SECONDS) * 1000 / len(BATCH_SECONDS) if BATCH_SECONDS else None
    return {
        "crm": kind,
        "parts": parts or 200,
        "sent": sent.sent,
        "unique": len({json.loads(line)["event_id"] for line in lines}),
        "delivered": delivered,
        "settled": succeeded,
        "lambda_batches": batches,
        "on_timeline": len(records),
        "send_seconds": queued - began,
        "deliver_seconds": ended - queued,
        "crm_calls": calls,
        "per_call_ms": per_call_ms,
        "push_seconds": sum(PUSH_SECONDS),
    }


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000, help="messages sent (duplicates included)")
    parser.add_argument(
        "--parts", default="100,1000", help="Dynamics parts per $batch to measure, comma-separated"
    )
    parser.add_argument("--crm", choices=["salesforce", "dynamics", "both"], default="both")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay the emulators add to each CRM call")
    args = parser.parse_args()
    with LocalEnvironment(time_scale=0, log_path=Path(".crmsync/bench-events.log")) as env:
        assert env.stack is not None
        operator = Operator("crmsync")
        mapping = env.stack.client("lambda").list_event_source_mappings(FunctionName="crmsync-events-push")[
            "EventSourceMappings"
        ][0]
        print(
            f"event-source mapping of the template: BatchSize {mapping['BatchSize']}, "
            f"MaximumBatchingWindowInSeconds {mapping.get('MaximumBatchingWindowInSeconds')}; "
            f"{args.events:,} messages, {DUPLICATES:.0%} sent twice, {UNLINKED:.0%} for profiles without a CRM record"
        )
        config = load_config(EXAMPLE.read_text(encoding="utf-8"), environ=env.config_environ())
        say("applying examples/syncs.yaml")
        operator.apply(config)
        if args.latency_ms:
            env.salesforce_control.add_fault(".*", latency_ms=args.latency_ms, times=None)
            env.dynamics_control.add_fault(".*", latency_ms=args.latency_ms, times=None)
        plans: list[tuple[str, int | None]] = []
        if args.crm in ("salesforce", "both"):
            plans.append(("salesforce", None))
        if args.crm in ("dynamics", "both"):
            plans += [("dynamics", int(p)) for p in args.parts.split(",")]
        linked: dict[str, tuple[list[str], list[str]]] = {}
        for kind, parts in plans:
            if kind not in linked:
                say(f"linking {PROFILES} profiles to {kind} records")
                linked[kind] = link_profiles(env, operator, kind)
            say(f"{kind}: sending and delivering")
            row = run(env, operator, kind, args.events, parts, *linked[kind])
            minimum = 1000 / row["parts"]
            per_thousand = row["crm_calls"] * 1000 / row["delivered"] if row["delivered"] else 0.0
            per_written = row["crm_calls"] * 1000 / row["on_timeline"] if row["on_timeline"] else 0.0
            timing = f", {row['per_call_ms']:.0f} ms a $batch call" if row["per_call_ms"] else ""
            print(
                f"{kind:10s} {row['parts']:>5} a call | {row['delivered']:>7,} messages delivered in "
                f"{row['lambda_batches']:>3} Lambda batches, {row['deliver_seconds']:6.1f}s = "
                f"{row['delivered'] / row['deliver_seconds']:5.0f} events/s (the push function's own time "
                f"{row['push_seconds']:.1f}s = {row['delivered'] / row['push_seconds']:5.0f} events/s) | on the timeline {row['on_timeline']:,} "
                f"of {row['unique']:,} distinct events | CRM calls {row['crm_calls']:>4} = {per_thousand:5.2f} per "
                f"1,000 events delivered, {per_written:5.2f} per 1,000 written (minimum {minimum:g}){timing} | "
                f"queueing {row['send_seconds']:.1f}s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
