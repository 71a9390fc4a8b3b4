"""What the services need from a CRM, whichever it is (Salesforce, Dynamics)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from ..domain.filters import Filter, OrderBy
from ..domain.types import CrmFieldType


@dataclass(frozen=True)
class PicklistValue:
    """One value of a picklist or option set (SPEC S1, S2): what is stored, what people read, whether it
    is offered, whether it is the default, and its place in the list."""

    value: str
    label: str
    active: bool = True
    default: bool = False


@dataclass(frozen=True)
class FieldDescription:
    name: str
    crm_type: CrmFieldType
    label: str = ""
    length: int | None = None
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    filterable: bool = True
    sortable: bool = True
    picklist_values: tuple[str, ...] = ()
    raw_type: str = ""
    picklist: tuple[PicklistValue, ...] = ()
    """Every value with its label, inactive ones included (`picklist_values` keeps the active values)."""
    option_set: str | None = None
    """Dataverse: the option set's name; `option_set_global` when it is a global (shared) one."""
    option_set_global: bool = False
    compound: str | None = None
    """Salesforce: the compound field this one is part of (MailingCity -> MailingAddress)."""
    compound_of: tuple[str, ...] = ()
    """A compound field's parts; a compound field is read and written through them."""


@dataclass(frozen=True)
class ObjectDescription:
    name: str
    id_field: str
    fields: dict[str, FieldDescription]
    label: str = ""
    custom: bool = False
    entity_set: str | None = None
    change_tracking: bool = False
    key_prefix: str | None = None
    """Salesforce: the first three characters of every id of the object (a Contact id starts 003)."""
    record_types: tuple[tuple[str, str], ...] = ()
    """Salesforce: (record type id, name) of the object's record types, the master one included."""
    last_modified: str | None = None
    """The CRM's `Last-Modified` of this description (an HTTP date), for a later `If-Modified-Since`."""

    def field(self, name: str) -> FieldDescription | None:
        """Field names are case-insensitive in SOQL and OData; the canonical spelling comes back."""
        return self.fields.get(name.lower())


@dataclass(frozen=True)
class ObjectSummary:
    name: str
    label: str
    custom: bool
    queryable: bool = True
    createable: bool = True


@dataclass(frozen=True)
class RecordQuery:
    """One read of an object: a window on the watermark field, or given ids (SPEC I7, I8)."""

    object: str
    fields: tuple[str, ...]
    filter: Filter | None = None
    order_by: tuple[OrderBy, ...] = ()
    window_field: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    ids: tuple[str, ...] = ()
    page_size: int = 2000
    field_types: dict[str, CrmFieldType] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    """Fields read as their display label (formatted value) instead of their stored value."""


@dataclass(frozen=True)
class RecordPage:
    records: list[dict[str, Any]]
    next_cursor: str | None
    total_size: int | None = None
    deleted_ids: tuple[str, ...] = ()
    """Records the CRM reports deleted (change tracking)."""
    delta_link: str | None = None
    """On the last page of a change-tracking read: where the next read of changes starts."""


@dataclass(frozen=True)
class ApiLimits:
    """What the CRM says is left of its API allowance (SPEC C3)."""

    used: int | None = None
    maximum: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def remaining(self) -> int | None:
        if self.used is None or self.maximum is None:
            return None
        return self.maximum - self.used


class CrmConnector(Protocol):
    """The port every CRM adapter implements."""

    kind: str

    @property
    def api_calls(self) -> int:
        """HTTP calls made to the CRM by this connector, token calls included."""

    def server_time(self) -> datetime:
        """The CRM's own clock (the import window ends relative to it, never to ours)."""

    def describe(self, object_name: str, *, values: bool = False) -> ObjectDescription:
        """The object's fields. `values` also reads every picklist's / option set's values and labels
        where the CRM needs extra calls for them (Dataverse's typed attribute casts)."""

    def list_objects(self) -> list[ObjectSummary]: ...

    def limits(self) -> ApiLimits: ...

    bulk_deletes: bool
    """Large deletions go through a bulk API (a job per batch) rather than record collections."""

    def is_record_id(self, value: str) -> bool:
        """`value` is written as this CRM writes a record id."""

    def normalize_id(self, value: str) -> str:
        """A record id as the CRM answers it (Dataverse: lower case; Salesforce: the 18-character, case-safe
        form), so ids a person gives compare equal to the CRM's. Refusing what is not an id is `is_record_id`'s."""

    def id_of_object(self, value: str, description: ObjectDescription) -> bool:
        """A record id of `description`'s object, where the CRM's ids tell their object apart."""

    def api_usage(self) -> ApiLimits | None:
        """The allowance the CRM reported with its last answer (Salesforce `Sforce-Limit-Info`), no call made."""

    def read_first_page(self, query: RecordQuery) -> RecordPage: ...

    def read_next_page(self, cursor: str) -> RecordPage: ...

    def read_by_ids(self, query: RecordQuery, *, filtered: bool = False) -> list[dict[str, Any]]:
        """The records among `query.ids` that exist; ids the CRM does not know are simply absent.
        `query.filter` is left out (given ids replace a filter, SPEC I8) unless `filtered`: then only the
        records the filter selects come back (the completeness check tells a filtered record apart)."""


@runtime_checkable
class ChangeTrackingConnector(CrmConnector, Protocol):
    """A CRM that reports changes and deletions since a delta link (Dataverse change tracking)."""

    def read_changes(self, query: RecordQuery, delta_link: str | None) -> RecordPage:
        """The first page of changes since `delta_link`, or of every record (an initial load) when None;
        the last page carries the next delta link. `DeltaTokenExpired` when the CRM forgot the link."""

    def check_delta_link(self, delta_link: str, object_name: str) -> None:
        """Refuse a delta link that is not the org's, or that reads another table than `object_name`."""


@runtime_checkable
class SchemaConnector(CrmConnector, Protocol):
    """What schema discovery, enumeration sync and drift checks read beyond `describe` (SPEC S1-S3)."""

    def describe_if_modified(self, object_name: str, since: str) -> ObjectDescription | None:
        """The description, or None when the CRM says the object's metadata did not change since
        `since` (an HTTP date: Salesforce's `If-Modified-Since` answered 304)."""

    def enumeration(
        self, object_name: str, field_name: str, record_type: str | None = None
    ) -> tuple[PicklistValue, ...]:
        """Every value of a picklist / option set field, with labels, in the CRM's order; for Salesforce a
        record type narrows it to that record type's values (UI API)."""

    def global_enumeration(self, name: str) -> tuple[PicklistValue, ...]:
        """Every value of a global option set (Dataverse) by its name."""


# ------------------------------------------------------------------------------------- deletions
@dataclass(frozen=True)
class DeletedRecord:
    crm_id: str
    deleted_at: datetime


@dataclass(frozen=True)
class DeletedRecords:
    """What the CRM reports deleted in a period (Salesforce `getDeleted`, SPEC D1).

    `latest_covered` is the last moment the CRM vouches for: the next period starts there.
    `earliest_available` is the oldest start the CRM still accepts (its recycle-bin retention).
    """

    records: list[DeletedRecord]
    earliest_available: datetime | None
    latest_covered: datetime | None


@runtime_checkable
class DeletedRecordsConnector(CrmConnector, Protocol):
    """A CRM that lists the records deleted in a period (Salesforce `sobjects/{Type}/deleted`)."""

    def read_deleted(self, object_name: str, start: datetime, end: datetime) -> DeletedRecords:
        """Records of `object_name` deleted between `start` and `end`, both included.

        `DeletionPeriodRefused` when `start` is older than the CRM keeps deletions
        (`INVALID_REPLICATION_DATE`, its message names the earliest date available);
        `TooManyDeletedIds` when the period holds more ids than one answer may (`EXCEEDED_ID_LIMIT`):
        the caller splits the period.
        """


@dataclass(frozen=True)
class IdPage:
    ids: list[str]
    next_cursor: str | None


@runtime_checkable
class IdSetConnector(CrmConnector, Protocol):
    """Every id of an object, page by page, read the cheapest way the CRM has (Salesforce Bulk API 2.0
    query, Dataverse 5,000-row pages of the key alone): the id-set comparison of SPEC D1."""

    def read_ids_first(self, object_name: str) -> IdPage: ...

    def read_ids_next(self, cursor: str) -> IdPage: ...


@runtime_checkable
class CountingConnector(CrmConnector, Protocol):
    """A CRM that counts what a query selects, exactly and in one call (Salesforce `SELECT COUNT()`): the
    incremental import's check that it read its whole window."""

    def count(self, query: RecordQuery) -> int:
        """How many records `query` (its window, ids and filter) selects now; fields and order ignored."""


# ------------------------------------------------------------------------------------- initial transfer
@runtime_checkable
class ExtractConnector(CrmConnector, Protocol):
    """A CRM that counts an object and extracts all of it the cheapest way it has (SPEC T1): Salesforce a
    Bulk API 2.0 query job read in result pages (`Sforce-Locator`), Dataverse a change-tracking read in
    pages of 5,000 whose last page carries the delta link the incremental runs follow."""

    def count_records(self, object_name: str) -> int:
        """How many records the object holds (Salesforce `COUNT()`; Dataverse `RetrieveTotalRecordCount`,
        a snapshot up to a day old): enough to choose between files and the ordinary import."""

    def extract_page(self, query: RecordQuery, cursor: str | None, *, records: int, tracking: bool) -> RecordPage:
        """One page of the extract of `query`'s object (its window ignored): the first when `cursor` is
        None, else the page at `cursor`; at most `records` records (Dataverse: at most 5,000). A page may
        hold no records and a cursor (a query job still running: ask again). With `tracking`, the read is
        a change-tracking one and its last page carries the delta link. Values are typed as the ordinary
        read types them, so the import's mapping reads both alike."""


# ------------------------------------------------------------------------------------- field history
@dataclass(frozen=True)
class FieldChange:
    """One change of one field as the CRM recorded it (a history row, an audit detail)."""

    record_id: str
    field: str
    value: Any
    at: datetime
    author: str | None


@dataclass(frozen=True)
class FieldTracking:
    """Which fields the CRM records per-field changes of, and through what (SPEC O3)."""

    source: Literal["history", "audit"]
    tracked: dict[str, bool]
    """Field (as asked) -> whether each change of it is recorded with its time and author."""
    note: str = ""
    """Why nothing is tracked when a switch above the field is off (environment, table)."""


@dataclass(frozen=True)
class HistoryQuery:
    """What an adapter reads of its CRM's field history: the changes of `columns` of `object` made in
    [start, end) - at least those of `record_ids` (ids as `normalize_id` writes them)."""

    object: str
    columns: tuple[str, ...]
    record_ids: tuple[str, ...]
    start: datetime | None
    end: datetime


@runtime_checkable
class FieldHistoryConnector(CrmConnector, Protocol):
    """A CRM that can say who changed a field and when: Salesforce field history, Dataverse auditing.

    An adapter subclasses this protocol: it reads its CRM's rows (`recorded_changes`), and `field_changes`
    - what the answer is - is written once, here."""

    def integration_user(self) -> str:
        """The id of the user crmsync acts as (Salesforce: the OAuth identity; Dataverse: WhoAmI)."""

    def field_tracking(self, object_name: str, fields: Iterable[str]) -> FieldTracking: ...

    def field_changes(
        self,
        object_name: str,
        fields: Iterable[str],
        record_ids: Iterable[str],
        start: datetime | None,
        end: datetime,
    ) -> list[FieldChange]:
        """The recorded changes of `fields` on `record_ids` made in [start, end) (every one when start is
        None), oldest first, each under its field's name as asked."""
        names = {f.lower(): f for f in fields}
        ids = tuple(dict.fromkeys(self.normalize_id(i) for i in record_ids))
        if not names or not ids:
            return []
        wanted = set(ids)
        found = [
            replace(change, field=names[change.field.lower()])
            for change in self.recorded_changes(HistoryQuery(object_name, tuple(names.values()), ids, start, end))
            if change.field.lower() in names and change.record_id in wanted
        ]
        return sorted(found, key=lambda change: change.at)

    def recorded_changes(self, query: HistoryQuery) -> Iterator[FieldChange]:
        """The CRM's rows of `query`, each under the CRM's spelling of its field."""


# ------------------------------------------------------------------------------------- writes
WriteKind = Literal["insert", "update", "upsert", "delete", "insert_once"]
"""`insert_once`: a new record under a key the caller derives from its own data, safe to send again
(e-mail events, SPEC M1). Salesforce upserts it by the external-id `key_field`; Dataverse creates the
record id `key_field` with `If-None-Match: *`, and a 412 (already there) is done, not refused."""


@dataclass(frozen=True)
class WriteError:
    """Why the CRM refused one record: its own code (Salesforce `statusCode`), message and fields."""

    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordWrite:
    """One record to write. `ref` is the caller's name for it (a profile id), echoed in its result."""

    ref: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class WriteRequest:
    """Records of one object written the same way (SPEC E1, E2).

    `key_field` is the CRM id field for an update or a delete and the external-id field (or alternate
    key) for an upsert; each record carries its value (a delete's record holds nothing else). `match_field` holds a value unique to each record - the
    correlation value of an insert - so results can be matched to records whatever order they come
    back in. `bulk` asks for the CRM's asynchronous bulk API where it has one.
    """

    object: str
    kind: WriteKind
    records: tuple[RecordWrite, ...]
    key_field: str | None = None
    match_field: str | None = None
    bulk: bool = False


@dataclass(frozen=True)
class WriteResult:
    ref: str
    crm_id: str | None
    created: bool
    errors: tuple[WriteError, ...] = ()
    gone: bool = False
    """A delete of a record the CRM no longer has (Salesforce `ENTITY_IS_DELETED`, Dataverse 404): done,
    not refused (SPEC D3)."""

    @property
    def success(self) -> bool:
        return not self.errors


class WriteJournal(Protocol):
    """Where a writer keeps what it must find again after a crash (the id of a bulk job it started)."""

    @property
    def job_id(self) -> str | None: ...

    def record_job(self, job_id: str | None) -> None: ...


class CrmWriter(Protocol):
    """The port an export (and a deletion) writes through; one adapter per CRM.

    `write` answers one result per record. A call whose outcome is unknown raises `CrmOutcomeUnknown`
    with the results known so far in its `completed`; the caller resolves the rest before sending it
    again.
    """

    kind: str

    @property
    def api_calls(self) -> int: ...

    def write(self, request: WriteRequest, journal: WriteJournal) -> list[WriteResult]: ...

    def find(
        self, object_name: str, field: str, values: Iterable[str], fields: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Records whose `field` equals one of `values`, batched; never one call per value."""
