"""A first import from a file (SPEC T2): `crmsync transfer SYNC FILE|s3://...`.

The file holds CRM records - CSV with a header of CRM field names, or JSON Lines with one record object
a line - and is loaded through the import's own load path (`imports.load_records`): the sync's mapping
and conversions, reconciliation by CRM id then by the unique key, rejects into the reject store. Only
the reading differs, so a record loads the same whether it came from the CRM's API or from a file.

Two passes over the file, both streamed (a large file is never held whole): the first only checks that
it is UTF-8 and that its header names the sync's id and watermark fields, so a file that is refused
has loaded nothing; the second loads it page by page. A row that cannot be read - a CSV row with too
many or too few cells, a JSON Lines line that is not an object, a cell that is not of its field's CRM
type - is not a reason to refuse the file: it becomes a reject naming the row and the column.

The run is recorded in the run ledger as an import run with trigger `transfer`, under the sync's lease
(a transfer never overlaps a scheduled run). It does not move the watermark: the file says nothing about
what changed in the CRM since it was written, so the next incremental import reads from where the
watermark stands (set it with `crmsync watermark set` to the file's extract time when that is known).

A transfer ends with the completeness check (`services/completeness.py`): every id of the object in the
CRM is accounted for as loaded, rejected or left out by the sync's filter, and a record missing from the
file is re-read by id and loaded. By default it runs for a first import - the sync's watermark is not set,
so the file is meant to hold the whole object; a file loaded into a sync that imports incrementally
already is taken as a supplement and not checked. `check=True` / `False` decides either way.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any, Literal

from ..config import ImportSync
from ..domain.records import Reject, RejectCode
from ..domain.types import typed_text
from ..errors import ConfigurationError
from ..inputs import text_lines
from ..stores.runs import RunKey
from ..wiring import Container
from .completeness import Completeness, check_completeness
from .import_plan import ImportPlan, resolve_import_plan
from .imports import ImportSummary, load_records
from .runs import FailedRunSummary, close_run, leased, normalize_started_at

logger = logging.getLogger(__name__)

TRANSFER_PAGE = 500
"""Records loaded per page: what one import page of the CRM's API holds at most by default."""

FileFormat = Literal["csv", "jsonl"]
Opener = Callable[[], IO[bytes]]


class TransferSummary(ImportSummary):
    """The result of `crmsync transfer`: an import run's counts, plus where the records came from."""

    source: str
    format: FileFormat
    rows: int = 0
    completeness: Completeness | None = None
    """The completeness check's figures; None when it did not run (`check` false, or not a first import)."""


@dataclass(frozen=True)
class Row:
    """One row of a transfer file: its number (as an editor shows it) and the record, or why not."""

    number: int
    record: dict[str, Any] | None
    problem: Reject | None = None


def file_format(source: str, given: str | None = None) -> FileFormat:
    """The format `given`, else the one the file's name says (.csv; .jsonl, .ndjson, .json)."""
    name = (given or source.rsplit("/", 1)[-1].rsplit(".", 1)[-1]).lower()
    if name == "csv":
        return "csv"
    if name in ("jsonl", "ndjson", "json"):
        return "jsonl"
    raise ConfigurationError(
        f"{source}: cannot tell the format from the name; pass --format csv or --format jsonl"
    )


def _malformed(number: int, message: str, record: dict[str, Any], plan: ImportPlan, column: str = "") -> Row:
    crm_id = record.get(plan.id_field)
    return Row(
        number,
        None,
        Reject(
            RejectCode.MALFORMED_ROW.value,
            message,
            record,
            crm_id=str(crm_id) if crm_id else None,
            fields=(column,) if column else (),
        ),
    )


def _canonical(plan: ImportPlan) -> dict[str, str]:
    """CRM field names as the sync's plan spells them, by their lower-case form."""
    names = [plan.id_field, plan.watermark_field, *plan.field_types]
    return {name.lower(): name for name in names}


def csv_rows(lines: Iterable[str], source: str, plan: ImportPlan) -> Iterator[Row]:
    """The rows of a CSV file whose first row names CRM fields. Row numbers count the header as row 1."""
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise ConfigurationError(f"{source}: row 1 (the header): {error}") from None
    canonical = _canonical(plan)
    columns = [canonical.get(name.strip().lower(), name.strip()) for name in header]
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield _malformed(number, f"{source}: row {number}: {error}", {}, plan)
            continue
        if not cells:
            continue
        raw = dict(zip(columns, cells, strict=False))
        if len(cells) != len(columns):
            first = min(len(cells), len(columns)) + 1
            name = columns[first - 1] if first <= len(columns) else ""
            what = f"column {first}" + (f" ({name})" if name else "")
            yield _malformed(
                number,
                f"{source}: row {number}, {what}: {len(cells)} cells for the header's {len(columns)} columns",
                raw,
                plan,
                name,
            )
            continue
        record: dict[str, Any] = {}
        problem: Row | None = None
        for index, (column, text) in enumerate(zip(columns, cells, strict=True), start=1):
            try:
                record[column] = typed_text(text, plan.field_types.get(column))
            except ValueError as why:
                problem = _malformed(
                    number, f"{source}: row {number}, column {index} ({column}): {text!r} {why}", raw, plan, column
                )
                break
        yield problem or Row(number, record)


def jsonl_rows(lines: Iterable[str], source: str, plan: ImportPlan) -> Iterator[Row]:
    """The records of a JSON Lines file, one object a line; blank lines are skipped."""
    canonical = _canonical(plan)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield _malformed(
                number, f"{source}: row {number}, column {error.colno}: not JSON ({error.msg})", {}, plan
            )
            continue
        if not isinstance(value, dict):
            yield _malformed(number, f"{source}: row {number}, column 1: not a JSON object", {}, plan)
            continue
        yield Row(number, {canonical.get(str(k).lower(), str(k)): v for k, v in value.items()})


def read_rows(lines: Iterable[str], source: str, fmt: FileFormat, plan: ImportPlan) -> Iterator[Row]:
    return (csv_rows if fmt == "csv" else jsonl_rows)(lines, source, plan)


def check_file(opener: Opener, source: str, fmt: FileFormat, plan: ImportPlan) -> None:
    """Refuse, before anything is loaded, a file that is not UTF-8 (naming the first bad byte's line and
    column) or a CSV file whose header lacks the sync's id or watermark field."""
    with opener() as stream:
        lines = text_lines(stream, source)
        if fmt == "csv":
            first = next(lines, "")
            try:
                header = next(csv.reader([first], strict=True), [])
            except csv.Error as error:
                raise ConfigurationError(f"{source}: row 1 (the header): {error}") from None
            present = {name.strip().lower() for name in header}
            missing = [f for f in (plan.id_field, plan.watermark_field) if f.lower() not in present]
            if missing:
                raise ConfigurationError(
                    f"{source}: the header has no column {', '.join(missing)}; every record needs the CRM id and "
                    f"the watermark field ({plan.object}'s {plan.id_field} and {plan.watermark_field})"
                )
        for _ in lines:
            pass


def with_crm_ids(rows: Iterable[Row], plan: ImportPlan, normalize_id: Callable[[str], str]) -> Iterator[Row]:
    """The rows with their CRM id as the CRM answers it (the connector's `normalize_id`): a Salesforce
    report or Data Loader export may hold 15-character ids, the store and the CRM's id list 18-character
    ones. So a record reconciles with the profile it already has, and the completeness check finds it."""
    for row in rows:
        record, problem = row.record, row.problem
        if record is not None and isinstance(record.get(plan.id_field), str):
            record = {**record, plan.id_field: normalize_id(record[plan.id_field])}
        if problem is not None and problem.crm_id:
            problem = replace(problem, crm_id=normalize_id(problem.crm_id))
        yield Row(row.number, record, problem)


def _pages(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    page: list[Row] = []
    for row in rows:
        page.append(row)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def transfer_file(
    container: Container,
    sync_id: str,
    opener: Opener,
    *,
    source: str,
    fmt: FileFormat,
    run_id: str,
    check: bool | None = None,
) -> TransferSummary:
    """Load the records of a file into the sync's target, with the import's rules, then check that every
    CRM record arrived (`check`; by default on a first import only); the run's summary."""
    stored = container.definitions.sync(sync_id)
    sync = stored.sync
    if not isinstance(sync, ImportSync):
        raise ConfigurationError(
            f"sync {sync_id!r} is an {sync.operation}; only import syncs take a transfer file"
        )
    connection = stored.connection
    connector = container.connector(connection)
    plan = resolve_import_plan(sync, connector.describe(sync.object), connection.kind)
    check_file(opener, source, fmt, plan)
    if check is None:
        check = container.watermarks.get(sync.watermark_option(stored.instance)) is None

    key = RunKey(sync_id, run_id, normalize_started_at(None))
    totals: dict[str, int] = {"read": 0, "created": 0, "updated": 0, "unchanged": 0, "rejected": 0, "pages": 0}
    rows = 0
    rejected_ids: set[str] = set()
    loaded_ids: set[str] = set()
    with leased(container, sync, run_id):
        container.runs.record_start(
            key,
            operation="import",
            trigger="transfer",
            details={"object": plan.object, "connection": connection.name, "mode": "file", "format": fmt},
        )
    try:
        with opener() as stream:
            rows_read = with_crm_ids(
                read_rows(text_lines(stream, source), source, fmt, plan), plan, connector.normalize_id
            )
            for page in _pages(rows_read, TRANSFER_PAGE):
                container.runs.renew(sync_id, run_id, container.settings.lease_seconds)
                records = [row.record for row in page if row.record is not None]
                rejects = [row.problem for row in page if row.problem is not None]
                loaded = load_records(
                    container, plan, records, rejects, sync_id=sync_id, run_id=run_id, connection=connection.name
                )
                rows += len(page)
                totals["read"] += len(records)
                totals["created"] += loaded.created
                totals["updated"] += loaded.updated
                totals["unchanged"] += loaded.unchanged
                totals["rejected"] += loaded.rejected
                rejected_ids.update(loaded.rejected_ids)
                loaded_ids.update(loaded.loaded_ids)
                totals["pages"] += 1
                logger.info(
                    "transfer page loaded",
                    extra={"sync_id": sync_id, "run_id": run_id, "page": totals["pages"], "rows": len(page)},
                )
        completeness = (
            check_completeness(
                container,
                plan,
                sync_id=sync_id,
                run_id=run_id,
                connection=connection.name,
                connector=connector,
                rejected_ids=rejected_ids,
                loaded_ids=loaded_ids,
            )
            if check
            else None
        )
    except Exception as error:
        failed = FailedRunSummary(
            sync_id=sync_id,
            run_id=run_id,
            status="FAILED",
            operation="import",
            error={"type": type(error).__name__, "message": str(error)[:2000]},
            **totals,
        )
        container.runs.record_end(key, "FAILED", failed.model_dump(mode="json"))
        container.runs.release(sync_id, run_id)
        raise
    summary = TransferSummary(
        sync_id=sync_id,
        run_id=run_id,
        source=source,
        format=fmt,
        rows=rows,
        api_calls=connector.api_calls,
        completeness=completeness,
        **totals,
    )
    close_run(container, key, summary, operation="import", window=None)
    return summary


__all__ = ["Row", "TransferSummary", "check_file", "file_format", "read_rows", "transfer_file", "with_crm_ids"]
