"""Schema drift on every run (SPEC S3): the start step compares what the CRM describes now with what the
sync's last run saw, before anything is read.

- A mapped field the CRM no longer has is refused by the plan's own checks (with a hint).
- A mapped field whose type changed is refused here, naming the field and both types: the records of a
  retyped field would land in an attribute of the old type. Re-applying the sync (after fixing its
  mapping, or to confirm it still holds) accepts the new type.
- Fields the CRM added are reported in the run summary (`new_fields`) and as a metric.

The description the last run saw is kept in the runs table. On Salesforce the describe is sent with
`If-Modified-Since` the time of that description: an unchanged object answers 304 without a body, and
the kept description is used.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from ..config import SyncDefinition
from ..connectors.port import CrmConnector, ObjectDescription, SchemaConnector
from ..domain.filters import filter_conditions
from ..domain.schema import Drift, compare, description_from_json, description_to_json
from ..errors import ConfigurationError
from ..stores.runs import RunLedger

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DescribedForRun:
    description: ObjectDescription
    drift: Drift
    unchanged: bool = False
    """The CRM answered 304 Not Modified: the kept description was used."""

    @property
    def new_fields(self) -> list[str]:
        return list(self.drift.added)

    def connector(self, connector: CrmConnector) -> CrmConnector:
        """`connector`, describing the sync's object from this description instead of asking again."""
        return cast(CrmConnector, _Described(connector, self.description))


class _Described:
    """A connector whose `describe` of one object is already known; every other call goes through."""

    def __init__(self, connector: CrmConnector, description: ObjectDescription) -> None:
        self._connector = connector
        self._description = description

    def describe(self, object_name: str, *, values: bool = False) -> ObjectDescription:
        if not values and object_name.lower() == self._description.name.lower():
            return self._description
        return self._connector.describe(object_name, values=values)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connector, name)


def mapped_fields(sync: SyncDefinition) -> list[str]:
    """The CRM fields a sync reads or writes by name: its mapping, watermark, filter, sort, keys."""
    names: list[str] = [m.remote for m in getattr(sync, "fields", ())]
    watermark = getattr(getattr(sync, "watermark", None), "field", None)
    if isinstance(watermark, str):
        names.append(watermark)
    filter_tree = getattr(sync, "filter", None)
    if filter_tree is not None:
        names += [c.field for c in filter_conditions(filter_tree)]
    names += [o.field for o in getattr(sync, "order_by", ())]
    for setting in ("correlation_field",):
        value = getattr(sync, setting, None)
        if isinstance(value, str):
            names.append(value)
    external = getattr(sync, "external_id", None)
    if external is not None:
        names.append(external.remote)
    return names


def definition_fingerprint(sync: SyncDefinition) -> str:
    return hashlib.sha256(sync.model_dump_json(exclude_none=True).encode()).hexdigest()[:16]


def describe_for_run(
    ledger: RunLedger, sync: SyncDefinition, connector: CrmConnector, mapped: Iterable[str]
) -> DescribedForRun:
    """The object's description for a starting run; `ConfigurationError` when a mapped field (one of
    `mapped`, any case) changed type since the sync's last run under the same definition."""
    seen = ledger.schema_seen(sync.id)
    previous = description_from_json(seen["description"]) if seen else None
    if previous is not None and previous.name.lower() != sync.object.lower():
        previous = None  # the sync now reads another object: nothing to compare
    fingerprint = definition_fingerprint(sync)
    if (
        previous is not None
        and seen is not None
        and seen.get("describedAt")
        and isinstance(connector, SchemaConnector)
    ):
        fresh = connector.describe_if_modified(sync.object, str(seen["describedAt"]))
        if fresh is None:
            return DescribedForRun(previous, Drift(), unchanged=True)
        now = fresh
    else:
        now = connector.describe(sync.object)
    if previous is None:
        ledger.remember_schema(sync.id, description_to_json(now), now.last_modified, fingerprint)
        return DescribedForRun(now, Drift())
    drift = compare(previous, now)
    wanted = {name.lower() for name in mapped}
    retyped = [change for change in drift.retyped if change[0].lower() in wanted]
    if retyped and seen is not None and seen.get("definition") == fingerprint:
        raise ConfigurationError(
            [
                f"sync {sync.id}: {sync.object}.{name} changed type in the CRM since the last run: {before} -> "
                f"{after}; nothing was read. Check the mapping of {name}, then apply the sync again (rule S3)"
                for name, before, after in retyped
            ]
        )
    if drift.added:
        logger.info(
            "new CRM fields since the last run",
            extra={"sync_id": sync.id, "object": now.name, "fields": drift.added},
        )
    ledger.remember_schema(sync.id, description_to_json(now), now.last_modified, fingerprint)
    return DescribedForRun(now, drift)
