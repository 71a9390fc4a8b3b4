"""Enumeration sync (SPEC S2): picklist values (Salesforce) and option sets, local and global, and Boolean
labels (Dataverse) into the Enumerations table.

One step does the whole run - take the lease, read each enumeration, write what changed, close the run -
because an object has a handful of picklists of at most a few thousand values: one Lambda invocation
reads and writes them in seconds. The state machine around it gives the schedule, the retries and the
error path every operation has. A multi-select picklist is refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..config import EnumerationSync
from ..connectors.port import ObjectDescription, SchemaConnector
from ..domain.mapping import ResolvedField
from ..domain.types import CrmFieldType
from ..errors import ConfigurationError
from ..stores.runs import RunKey
from ..wiring import Container
from .runs import StartRunEvent, close_run, leased, normalize_started_at, sync_to_start
from .schema import enumeration_fields

logger = logging.getLogger(__name__)
OPERATION = "enumerations"


class StartEnumerationsEvent(StartRunEvent):
    """What the state machine hands the enumeration step: the execution's input and identity."""


class EnumerationResult(BaseModel):
    name: str
    source: str
    values: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    kept: int = 0
    replace: bool = False


class EnumerationSummary(BaseModel):
    """The result of an enumeration run, as `crmsync run --wait --json` prints it."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str = OPERATION
    enumerations: list[EnumerationResult] = Field(default_factory=list)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    api_calls: int = 0
    watermark_moved: bool = False


def through_enumerations(
    fields: tuple[ResolvedField, ...], container: Container, direction: Literal["import", "export"]
) -> tuple[ResolvedField, ...]:
    """Fields converted through an enumeration get its values as replacement rules, read once at the run's
    start: an import turns the CRM's value into its label, an export a label back into the value. The
    field's own `replace` rules win over the enumeration's."""
    if not any(f.enumeration for f in fields):
        return fields
    store = container.enumerations
    out: list[ResolvedField] = []
    for field in fields:
        if not field.enumeration:
            out.append(field)
            continue
        values = store.values(field.enumeration)
        if not values:
            raise ConfigurationError(
                f"fields: {field.remote} is converted through enumeration {field.enumeration!r}, which has no "
                "values yet: run the enumeration sync that fills it first (rule S2)"
            )
        rules: dict[str, Any] = {}
        for value in values:
            if direction == "import":
                rules[value.value] = value.label
                if field.crm_type is CrmFieldType.BOOLEAN and value.value in ("0", "1"):
                    rules["true" if value.value == "1" else "false"] = value.label
            elif field.crm_type is CrmFieldType.BOOLEAN and value.value in ("0", "1"):
                rules[value.label] = value.value == "1"
            else:
                rules[value.label] = value.value
        out.append(dataclasses.replace(field, replace={**rules, **field.replace}))
    return tuple(out)


def _schema_connector(connector: object, kind: str) -> SchemaConnector:
    if not isinstance(connector, SchemaConnector):
        raise ConfigurationError(f"{kind} connections cannot read picklist values")
    return connector


def sync_enumerations(event: StartEnumerationsEvent, container: Container) -> EnumerationSummary:
    """Read every enumeration of the sync from the CRM and bring the Enumerations table in step."""
    sync, connection, _ = sync_to_start(container, event, EnumerationSync, OPERATION, "enumeration syncs")
    key = RunKey(sync.id, event.run_id, normalize_started_at(event.started_at))
    with leased(container, sync, event.run_id):
        connector = _schema_connector(container.connector(connection), connection.kind)
        calls_before = connector.api_calls
        description: ObjectDescription | None = None
        if any(spec.field is not None for spec in sync.enumerations):
            description = connector.describe(sync.object, values=True)
        found_fields, problems = enumeration_fields(sync, description, f"sync {sync.id}", connection.kind)
        if problems:
            raise ConfigurationError(problems)
        container.runs.record_start(
            key,
            operation=OPERATION,
            trigger=event.trigger,
            details={"object": sync.object, "connection": connection.name, "enumerations": len(found_fields)},
        )
        results: list[EnumerationResult] = []
        for spec, found_field in zip(sync.enumerations, found_fields, strict=True):
            if found_field is None:
                assert spec.option_set is not None
                source = f"{connection.name}/option set {spec.option_set}"
                values = connector.global_enumeration(spec.option_set)
            else:
                source = f"{connection.name}/{description.name if description else sync.object}.{found_field.name}"
                # describe(values=True) brought every value; a record type narrows them (UI API).
                values = found_field.picklist
                if spec.record_type:
                    source += f" (record type {spec.record_type})"
                    values = connector.enumeration(sync.object, found_field.name, spec.record_type)
            change = container.enumerations.apply(
                spec.name, values, replace=spec.replace, source=source, run_id=event.run_id
            )
            results.append(
                EnumerationResult(
                    source=source, values=len(values), replace=spec.replace, **dataclasses.asdict(change)
                )
            )
        summary = EnumerationSummary(
            sync_id=sync.id,
            run_id=event.run_id,
            enumerations=results,
            added=sum(r.added for r in results),
            updated=sum(r.updated for r in results),
            unchanged=sum(r.unchanged for r in results),
            removed=sum(r.removed for r in results),
            api_calls=connector.api_calls - calls_before,
        )
        close_run(container, key, summary, operation=OPERATION, window=None)
        return summary
