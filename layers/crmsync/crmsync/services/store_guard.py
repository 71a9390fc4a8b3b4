"""A record the marketing store cannot hold becomes a reject; the rest of its page is applied (SPEC R1).

One poison record must not block a sync: without this, a CRM record with a field of 10 MB made every
run fail on DynamoDB's `Item size has exceeded the maximum allowed size`, the good records of its page
were not applied, and the watermark could never pass it. Two guards:

- before writing, a record whose attributes cannot fit in one DynamoDB item (400 KB, of which the profile
  item spends a share on the change time and source of each attribute and on its own bookkeeping) is
  refused as `RECORD_TOO_LARGE`, with its estimated size in the message and nothing else of it;
- when the store refuses a write for a reason that belongs to one record (DynamoDB's `ValidationException`,
  or a transaction cancelled with a `ValidationError`), the page is applied again in halves until the
  refused record is alone: it becomes `RECORD_NOT_STORED` with DynamoDB's error code and message.
  Applying records is idempotent, so a half written before the refusal is written again as unchanged
  (the page's totals then count it as unchanged rather than created: nothing is lost or doubled).

Either reject counts as handled for the watermark rule (SPEC I3: applied or rejected), like any other; the
record is kept with the reject (in S3 when large) and `crmsync rejects replay` reads it again once fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ..domain.records import LocalRecord, Reject, RejectCode
from ..stores.dynamo import is_throttling
from ..stores.profiles import ApplyResult

ITEM_LIMIT_BYTES = 400 * 1024
PER_ATTRIBUTE_OVERHEAD = 64
"""An attribute's name twice more (its change time and its source) with a timestamp and a source each."""
ITEM_OVERHEAD = 4 * 1024
"""Keys, links, versions and dates of the profile item."""


def stored_size(record: LocalRecord) -> int:
    """An upper estimate of the bytes the record's attributes take in a profile item."""
    size = ITEM_OVERHEAD
    for name, value in record.attributes.items():
        encoded = json.dumps(value, ensure_ascii=False, default=str).encode()
        size += 3 * len(name.encode()) + len(encoded) + PER_ATTRIBUTE_OVERHEAD
    return size


def too_large(records: Sequence[LocalRecord]) -> tuple[list[LocalRecord], list[Reject]]:
    """The records that fit, and a `RECORD_TOO_LARGE` reject for each one that cannot."""
    fitting: list[LocalRecord] = []
    rejects: list[Reject] = []
    for record in records:
        size = stored_size(record)
        if size <= ITEM_LIMIT_BYTES:
            fitting.append(record)
            continue
        largest = max(record.attributes, key=lambda n: len(json.dumps(record.attributes[n], default=str)))
        rejects.append(
            Reject(
                RejectCode.RECORD_TOO_LARGE.value,
                f"the record needs about {size // 1024} KB in the profile store, which holds "
                f"{ITEM_LIMIT_BYTES // 1024} KB a record; its largest field is {largest}",
                record.source,
                crm_id=record.crm_id,
                fields=(largest,),
            )
        )
    return fitting, rejects


def _refused_by_record(error: ClientError) -> bool:
    """A refusal that one record of the write caused (as opposed to throttling, a missing table, access)."""
    if is_throttling(error):
        return False
    code = error.response.get("Error", {}).get("Code")
    if code == "ValidationException":
        return True
    reasons = error.response.get("CancellationReasons") or []
    return code == "TransactionCanceledException" and any(r.get("Code") == "ValidationError" for r in reasons)


def _merge(first: ApplyResult, second: ApplyResult) -> ApplyResult:
    return ApplyResult(
        created=first.created + second.created,
        updated=first.updated + second.updated,
        unchanged=first.unchanged + second.unchanged,
        rejects=[*first.rejects, *second.rejects],
        profile_ids={**first.profile_ids, **second.profile_ids},
    )


def apply_isolating(
    records: list[LocalRecord], apply: Callable[[list[LocalRecord]], ApplyResult]
) -> tuple[ApplyResult, list[Reject]]:
    """`apply(records)`; when the store refuses a record, the others are applied and it is rejected."""
    try:
        return apply(records), []
    except ClientError as error:
        if not _refused_by_record(error):
            raise
        if len(records) == 1:
            (record,) = records
            details: dict[str, Any] = error.response.get("Error", {})
            return ApplyResult(), [
                Reject(
                    RejectCode.RECORD_NOT_STORED.value,
                    f"the profile store refused the record: {details.get('Code')}: {details.get('Message')}",
                    record.source,
                    crm_id=record.crm_id,
                )
            ]
    middle = len(records) // 2
    first, first_rejects = apply_isolating(records[:middle], apply)
    second, second_rejects = apply_isolating(records[middle:], apply)
    return _merge(first, second), first_rejects + second_rejects
