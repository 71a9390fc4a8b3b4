"""The completeness check that ends a transfer (SPEC T1, T2; issue 16): did every CRM record arrive?

A transfer loads records that something other than the import's own read produced - a file an operator
exported, the parts of a bulk extract - so a record can go missing on the way (a row cut from a file, a
part lost, an extract that ended early). The check lists every id of the object with the pages the
deletion import's id-set comparison reads (`IdSetConnector`: a Bulk API 2.0 `SELECT Id` job on Salesforce,
5,000-row key-only pages on Dataverse) and accounts for each one:

- `loaded`: the local store holds a record of it (profiles linked to the connection's object, or the
  resource's rows): loaded by this transfer, or before. A run that names the ids it loaded (a transfer
  from a file) has it split into `loaded_by_run` and `already_held` (held from an earlier run, not in
  this one: what a supplement file lacks);
- `rejected`: this run rejected it - the run says which ids (`rejected_ids`: the reject store holds none
  when the sync routes no rejects, `rejects.route: false`), and the reject store's rejects of the run;
- `filtered`: the sync's filter leaves it out, so the sync never imports it;
- `missing`: none of these. Each missing id is re-read by id through the connector (ids are escaped into
  SOQL / OData there) and loaded with `imports.load_records`, the import's own load path: `re_read`
  counts those the CRM answered, `still_missing` those it no longer has (deleted since the id list was
  read: nothing was lost).

Which missing ids the filter leaves out is asked of the CRM: they are re-read with the filter, and only
those the filtered read does not answer are asked about once more without it - so a sync without a filter
costs one read per chunk of missing ids, and only missing ids are ever re-read.

The check runs one id page per step (`completeness_step`, with a cursor a state machine carries), or all
of them at once (`check_completeness`, what `crmsync transfer` runs). The local ids are read once per run
and kept while the function is warm, as the deletion import keeps the CRM's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from pydantic import BaseModel, Field

from ..connectors.port import CrmConnector, IdPage, IdSetConnector, RecordQuery
from ..errors import BulkJobInProgress, ConfigurationError
from ..wiring import Container
from .import_plan import ImportPlan
from .imports import load_records
from .local_deletions import local_crm_ids
from .runs import Counts

logger = logging.getLogger(__name__)

LOCAL_ID_PAGE = 2_000
_accounted: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str] | None]] = {}


class Completeness(Counts):
    """The figures of a completeness check, as the summary and `--json` report them."""

    crm_ids: int = Field(default=0, description="ids the CRM listed for the object")
    loaded: int = Field(default=0, description="of them, held by the local store (loaded by this run or before)")
    loaded_by_run: int = Field(
        default=0,
        description="of `loaded`, those this run loaded (created, updated or found unchanged); with "
        "`already_held` counted only when the run names the ids it loaded (a transfer from a file), else 0",
    )
    already_held: int = Field(
        default=0,
        description="of `loaded`, those the store held from an earlier run and this run did not load (a "
        "record a supplement file lacks); counted as `loaded_by_run` is",
    )
    rejected: int = Field(default=0, description="of them, rejected by this run")
    filtered: int = Field(default=0, description="of them, left out by the sync's filter")
    missing: int = Field(default=0, description="of them, neither loaded, rejected nor filtered")
    re_read: int = Field(default=0, description="missing ids re-read by id and loaded")
    still_missing: int = Field(
        default=0, description="missing ids the CRM no longer has (deleted since the id list was read)"
    )
    created: int = Field(default=0, description="local records the re-read created")
    updated: int = Field(default=0, description="local records the re-read updated")
    unchanged: int = 0
    re_read_rejected: int = Field(default=0, description="re-read records the load rejected")
    api_calls: int = 0
    pages: int = 0


class CompletenessCheck(BaseModel):
    """Where a completeness check stands: the next id page's cursor, and the figures so far. A state
    machine carries it between steps; each step is a function of it, so a retried step counts once."""

    cursor: str | None = None
    started: bool = False
    done: bool = False
    figures: Completeness = Field(default_factory=Completeness)


def _id_set(connector: CrmConnector) -> IdSetConnector:
    if not isinstance(connector, IdSetConnector):
        raise ConfigurationError(f"{connector.kind} connections cannot list every id; no completeness check")
    return connector


def _accounted_ids(
    container: Container,
    plan: ImportPlan,
    connector: CrmConnector,
    *,
    sync_id: str,
    run_id: str,
    connection: str,
    rejected_ids: Collection[str],
    loaded_ids: Collection[str] | None,
) -> tuple[frozenset[str], frozenset[str], frozenset[str] | None]:
    """The CRM ids the local store holds, those this run rejected, and of the held ones those this run
    loaded (None when it did not say): read once per warm function. The rejected ones are those the run
    itself knows (`rejected_ids`: with `rejects.route: false` the reject store holds none) and those the
    reject store holds under the run's id."""
    cached = _accounted.get(run_id)
    if cached is not None:
        return cached
    local: set[str] = set()
    after: str | None = None
    target = plan.target(connection)
    while True:
        ids, after = local_crm_ids(container, target, after=after, limit=LOCAL_ID_PAGE)
        local.update(connector.normalize_id(i) for i in ids)
        if after is None:
            break
    rejected = {connector.normalize_id(i) for i in rejected_ids}
    rejected.update(
        connector.normalize_id(str(r["crmId"]))
        for r in container.reject_store.rejects(sync_id, run_id=run_id, records=False)
        if r.get("crmId")
    )
    by_run = (
        None
        if loaded_ids is None
        else frozenset(local.intersection(connector.normalize_id(i) for i in loaded_ids))
    )
    _accounted.clear()
    _accounted[run_id] = (frozenset(local), frozenset(rejected - local), by_run)
    return _accounted[run_id]


def completeness_step(
    container: Container,
    plan: ImportPlan,
    check: CompletenessCheck,
    *,
    sync_id: str,
    run_id: str,
    connection: str,
    connector: CrmConnector | None = None,
    rejected_ids: Collection[str] = (),
    loaded_ids: Collection[str] | None = None,
) -> CompletenessCheck:
    """One page of the CRM's ids accounted for; missing ones re-read and loaded. `rejected_ids`: CRM ids the
    run rejected, as it knows them (the reject store's are added). `loaded_ids`: those it loaded, when it
    knows them (normalised as the CRM writes ids): `loaded` is then split into `loaded_by_run` and
    `already_held`. `BulkJobInProgress` while Salesforce's id job runs (retryable: the same check goes on
    where it stood)."""
    if check.done:
        return check
    connector = connector or container.connector(container.definitions.connection(connection))
    ids_of = _id_set(connector)
    calls_before = connector.api_calls
    page: IdPage = ids_of.read_ids_next(check.cursor) if check.cursor else ids_of.read_ids_first(plan.object)
    local, rejected, by_run = _accounted_ids(
        container,
        plan,
        connector,
        sync_id=sync_id,
        run_id=run_id,
        connection=connection,
        rejected_ids=rejected_ids,
        loaded_ids=loaded_ids,
    )
    ids = list(dict.fromkeys(connector.normalize_id(i) for i in page.ids))
    held = [i for i in ids if i in local]
    refused = [i for i in ids if i in rejected]
    candidates = [i for i in ids if i not in local and i not in rejected]
    figures = Completeness(crm_ids=len(ids), loaded=len(held), rejected=len(refused), pages=1)
    if by_run is not None:
        figures.loaded_by_run = sum(1 for i in held if i in by_run)
        figures.already_held = len(held) - figures.loaded_by_run
    if candidates:
        figures = figures.plus(
            _re_read(container, plan, connector, candidates, sync_id=sync_id, run_id=run_id, connection=connection)
        )
    figures.api_calls = connector.api_calls - calls_before
    done = page.next_cursor is None
    if done:
        _accounted.pop(run_id, None)
    return CompletenessCheck(cursor=page.next_cursor, started=True, done=done, figures=check.figures.plus(figures))


def _re_read(
    container: Container,
    plan: ImportPlan,
    connector: CrmConnector,
    candidates: list[str],
    *,
    sync_id: str,
    run_id: str,
    connection: str,
) -> Completeness:
    """Re-read ids nothing accounts for - with the sync's filter, so a record it leaves out is not loaded
    - and load what the CRM answers; ask once more, without the filter, about those it did not."""
    query = plan.query(ids=tuple(candidates))
    records = connector.read_by_ids(query, filtered=plan.filter is not None)
    answered = {connector.normalize_id(str(r.get(plan.id_field))) for r in records}
    unanswered = [i for i in candidates if i not in answered]
    filtered: set[str] = set()
    if unanswered and plan.filter is not None:
        exists = RecordQuery(object=plan.object, fields=(plan.id_field,), ids=tuple(unanswered))
        filtered = {connector.normalize_id(str(r.get(plan.id_field))) for r in connector.read_by_ids(exists)}
    gone = [i for i in unanswered if i not in filtered]
    loaded = load_records(container, plan, records, [], sync_id=sync_id, run_id=run_id, connection=connection)
    missing = len(candidates) - len(filtered)
    if missing:
        logger.warning(
            "completeness check: CRM records missing from the transfer, re-read by id",
            extra={
                "sync_id": sync_id,
                "run_id": run_id,
                "object": plan.object,
                "missing": missing,
                "re_read": len(records),
                "still_missing": len(gone),
                "missing_ids": [i for i in candidates if i not in filtered][:20],
            },
        )
    return Completeness(
        filtered=len(filtered),
        missing=missing,
        re_read=len(records),
        still_missing=len(gone),
        created=loaded.created,
        updated=loaded.updated,
        unchanged=loaded.unchanged,
        re_read_rejected=loaded.rejected,
    )


def check_completeness(
    container: Container,
    plan: ImportPlan,
    *,
    sync_id: str,
    run_id: str,
    connection: str,
    connector: CrmConnector | None = None,
    renew: bool = True,
    rejected_ids: Collection[str] = (),
    loaded_ids: Collection[str] | None = None,
) -> Completeness:
    """Every id page at once, renewing the sync's lease between pages: what a run that is not a state
    machine (`crmsync transfer`) calls at its end, with the CRM ids it rejected and loaded."""
    check = CompletenessCheck()
    try:
        while not check.done:
            if renew:
                container.runs.renew(sync_id, run_id, container.settings.lease_seconds)
            try:
                check = completeness_step(
                    container,
                    plan,
                    check,
                    sync_id=sync_id,
                    run_id=run_id,
                    connection=connection,
                    connector=connector,
                    rejected_ids=rejected_ids,
                    loaded_ids=loaded_ids,
                )
            except BulkJobInProgress:
                # The connector waited its polling budget already; the job is still running: ask again.
                logger.info("completeness check: the CRM's id job is still running", extra={"run_id": run_id})
    finally:
        _accounted.pop(run_id, None)
    return check.figures


__all__ = ["Completeness", "CompletenessCheck", "check_completeness", "completeness_step"]
