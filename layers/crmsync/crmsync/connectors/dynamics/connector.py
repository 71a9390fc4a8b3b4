"""Dataverse (Dynamics 365) adapter of the CRM port: the Web API v9.2 through our HTTPS session, with
MSAL tokens (SPEC C2, C3, I1-I8, D1).

Reads page with `Prefer: odata.maxpagesize` and follow `@odata.nextLink`; change tracking follows
`Prefer: odata.track-changes` and `@odata.deltaLink`. A label (`label: true`) of an option set, status or
yes/no column is read from the column's metadata once per connector and applied here; only a lookup's
label (the looked-up record's name) needs Dataverse's formatted-value annotations, which Dataverse then
adds to every date, number and option column of the page: they are asked for only then. A link is only ever followed on the org's own host
and for the table it was issued for, because following one sends the connection's bearer token.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from ...config import DynamicsConnection
from ...domain.conversions import parse_crm_datetime_or_none
from ...domain.types import CrmFieldType
from ...errors import (
    ConfigurationError,
    CrmAuthenticationFailed,
    CrmOutcomeUnknown,
    CrmRequestRejected,
    CrmsyncError,
    CrmUnavailable,
    DeltaTokenExpired,
)
from ..base import HttpConnector
from ..http import CrmHttpSession, refusal, unreachable, write_failure
from ..port import (
    ApiLimits,
    FieldChange,
    FieldDescription,
    FieldHistoryConnector,
    FieldTracking,
    HistoryQuery,
    IdPage,
    ObjectDescription,
    ObjectSummary,
    PicklistValue,
    RecordPage,
    RecordQuery,
)
from ..retry import RetryPolicy
from ..rules import DYNAMICS
from . import batch, odata
from .auth import DynamicsTokenProvider

logger = logging.getLogger(__name__)

ID_CHUNK = 100
MAX_PAGE_SIZE = 5000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
EXPIRED_VERSION_STAMP = "0x80044352"
NOT_AN_ORG_MEMBER = "0x80072560"
BURST_REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
SERVICE_PROTECTION_REQUESTS = 6000
SERVICE_PROTECTION_WINDOW_SECONDS = 300
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"
_CHALLENGE_PARAMETER = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')
_ENTITY_SELECT = "LogicalName,EntitySetName,PrimaryIdAttribute,IsCustomEntity,ChangeTrackingEnabled,DisplayName"
# Columns whose labels the metadata holds, by the attribute-metadata type that carries their options.
_OPTION_METADATA = {
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
}

TYPE_MAP: dict[str, CrmFieldType] = {
    "Uniqueidentifier": CrmFieldType.ID,
    "String": CrmFieldType.STRING,
    "Memo": CrmFieldType.STRING,
    "EntityName": CrmFieldType.STRING,
    "Integer": CrmFieldType.INTEGER,
    "BigInt": CrmFieldType.INTEGER,
    "Decimal": CrmFieldType.NUMBER,
    "Double": CrmFieldType.NUMBER,
    "Money": CrmFieldType.NUMBER,
    "Boolean": CrmFieldType.BOOLEAN,
    "DateTime": CrmFieldType.DATETIME,
    "Picklist": CrmFieldType.INTEGER,  # option sets are Edm.Int32 values; `label: true` reads their labels
    "State": CrmFieldType.INTEGER,
    "Status": CrmFieldType.INTEGER,
    "Lookup": CrmFieldType.REFERENCE,
    "Customer": CrmFieldType.REFERENCE,
    "Owner": CrmFieldType.REFERENCE,
}


def field_type(attribute: dict[str, Any]) -> CrmFieldType:
    """An `AttributeMetadata` reduced to our field types; date-only date-times are dates."""
    kind = str(attribute.get("AttributeType", ""))
    behavior = (attribute.get("DateTimeBehavior") or {}).get("Value")
    if kind == "DateTime" and (attribute.get("Format") == "DateOnly" or behavior == "DateOnly"):
        return CrmFieldType.DATE
    if (attribute.get("AttributeTypeName") or {}).get("Value") == "MultiSelectPicklistType":
        return CrmFieldType.MULTIPICKLIST
    return TYPE_MAP.get(kind, CrmFieldType.OTHER)


OPTION_CASTS: dict[str, str] = {
    "Picklist": "PicklistAttributeMetadata",
    "MultiSelectPicklist": "MultiSelectPicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
}
"""The typed attribute casts that carry option sets: the base `AttributeMetadata` has no OptionSet to expand."""


def option_kind(attribute: dict[str, Any]) -> str | None:
    """Which cast reads the attribute's options: a multi-select is `Virtual` with its own type name."""
    if (attribute.get("AttributeTypeName") or {}).get("Value") == "MultiSelectPicklistType":
        return "MultiSelectPicklist"
    kind = str(attribute.get("AttributeType", ""))
    return kind if kind in OPTION_CASTS else None


def option_values(option_set: dict[str, Any] | None, default: Any = None) -> tuple[PicklistValue, ...]:
    """An `OptionSetMetadata` (Options) or `BooleanOptionSetMetadata` (FalseOption, TrueOption) as values."""
    if not option_set:
        return ()
    if option_set.get("OptionSetType") == "Boolean" or "TrueOption" in option_set:
        pairs = [(option_set.get("FalseOption") or {}, "0"), (option_set.get("TrueOption") or {}, "1")]
        return tuple(
            PicklistValue(value=value, label=_label(option.get("Label")) or value, default=str(default) == value)
            for option, value in pairs
        )
    return tuple(
        PicklistValue(
            value=str(option["Value"]),
            label=_label(option.get("Label")) or str(option["Value"]),
            active=not bool(option.get("IsHidden", False)),
            default=default is not None and option["Value"] == default,
        )
        for option in option_set.get("Options") or []
    )


def _options_of(raw: dict[str, Any]) -> tuple[tuple[PicklistValue, ...], str | None, bool]:
    """Values, option set name and whether it is global, from an attribute read through its cast."""
    option_set = raw.get("GlobalOptionSet") or raw.get("OptionSet") or None
    default = raw.get("DefaultValue") if "DefaultValue" in raw else raw.get("DefaultFormValue")
    if isinstance(default, bool):
        default = int(default)
    values = option_values(option_set, default)
    if not option_set:
        return values, None, False
    return values, option_set.get("Name"), bool(option_set.get("IsGlobal", False))


def _label(value: Any) -> str:
    localized = (value or {}).get("UserLocalizedLabel") or {}
    return str(localized.get("Label") or "")


def _error(response: requests.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason or ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message", ""))
    return None, response.reason or ""


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().replace(".", "", 1).isdigit():
        return float(value)
    try:  # the other form RFC 9110 allows: an HTTP date
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify(failure: requests.Response | Exception) -> CrmsyncError:
    """Map a failed call onto the crmsync error classification (retryable / permanent / configuration)."""
    if isinstance(failure, CrmsyncError):
        return failure
    if isinstance(failure, Exception):
        return unreachable(failure, DYNAMICS.name)
    status = failure.status_code
    code, message = _error(failure)
    error = refusal(DYNAMICS.name, status, code, message, retry_after=_retry_after(failure))
    if type(error) is CrmRequestRejected:
        if status == 403 and code == NOT_AN_ORG_MEMBER:
            return CrmAuthenticationFailed(f"{error} (the app has no application user in this org)")
        if code == EXPIRED_VERSION_STAMP:
            return DeltaTokenExpired(str(error))
    return error


def classify_write(failure: requests.Response | Exception) -> CrmsyncError:
    """Like `classify`, for a call that changes data (`http.write_failure`): service protection (429) is
    refused before anything is done, so it is repeated as it is."""
    return write_failure(classify(failure), failure)


def _option_map(option_set: dict[str, Any]) -> dict[Any, str]:
    """Value -> label of an expanded OptionSet: `Options` of a choice, `TrueOption`/`FalseOption` of a
    yes/no column (whose values are JSON booleans)."""
    if option_set.get("TrueOption") or option_set.get("FalseOption"):
        return {
            flag: _label((option_set.get(key) or {}).get("Label"))
            for flag, key in ((True, "TrueOption"), (False, "FalseOption"))
        }
    return {option["Value"]: _label(option.get("Label")) for option in option_set.get("Options") or []}


def _is_deletion(row: dict[str, Any]) -> bool:
    return row.get("reason") == "deleted" or str(row.get("@odata.context", "")).endswith("/$deletedEntity")


@dataclass(frozen=True)
class Table:
    """A table's Web API identity: where its records live and what names them."""

    logical_name: str
    entity_set: str
    primary_id: str
    change_tracking: bool


@dataclass(frozen=True)
class _Cursor:
    """A link to follow and how to read it; the page cursor the import state carries between steps."""

    link: str
    entity_set: str
    page_size: int
    tracking: bool = False
    labels: tuple[str, ...] = ()
    table: str = ""  # the table's logical name: where the labels' option metadata is looked up

    def encode(self) -> str:
        return json.dumps(
            {
                "link": self.link,
                "entity_set": self.entity_set,
                "page_size": self.page_size,
                "tracking": self.tracking,
                "labels": list(self.labels),
                "table": self.table,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        try:
            raw = json.loads(text)
            return cls(
                link=str(raw["link"]),
                entity_set=odata.identifier(str(raw["entity_set"])),
                page_size=int(raw["page_size"]),
                tracking=bool(raw.get("tracking", False)),
                labels=tuple(odata.identifier(str(n)) for n in raw.get("labels", [])),
                table=odata.identifier(str(raw["table"])) if raw.get("table") else "",
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ConfigurationError("the page cursor is not a Dynamics next link") from None


class DynamicsConnector(HttpConnector[DynamicsConnection, DynamicsTokenProvider], FieldHistoryConnector):
    rules = DYNAMICS

    def __init__(
        self,
        connection: DynamicsConnection,
        tokens: DynamicsTokenProvider,
        session: CrmHttpSession,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(connection, tokens, session, retry)
        self.service_protection: dict[str, str] = {}
        self._base = f"{connection.instance_url}/api/data/v{connection.api_version}"
        self._host = urlsplit(connection.instance_url).netloc.lower()
        self._tables: dict[str, Table] = {}
        self._options: dict[tuple[str, str], dict[Any, str]] = {}
        self._slots = threading.BoundedSemaphore(connection.max_concurrency)
        self._user_id: str | None = None

    # -- id rules ----------------------------------------------------------------------------------
    def is_record_id(self, value: str) -> bool:
        """A GUID."""
        return odata.is_guid(value)

    def normalize_id(self, value: str) -> str:
        """Dataverse answers GUIDs in lower case and compares them in any case."""
        return value.lower()

    # -- plumbing ----------------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        url: str,
        token: str,
        prefer: Sequence[str],
        headers: Mapping[str, str] | None,
        body: bytes | None,
        classifier: Callable[[requests.Response | Exception], CrmsyncError],
    ) -> requests.Response:
        sent = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            **(headers or {}),
        }
        if prefer:
            sent["Prefer"] = ",".join(prefer)
        with self._slots:
            try:
                return self.session.request(method, url, headers=sent, data=body)
            except requests.RequestException as exc:
                raise classifier(exc) from None

    def request(
        self,
        method: str,
        url: str,
        *,
        prefer: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        """One Web API call with token renewal, service-protection bookkeeping and the retry policy.

        A call that is not idempotent (a `$batch` of writes) is never repeated once it may have been
        applied: its failure is `CrmOutcomeUnknown`, which the caller resolves before sending again.
        """
        classifier = classify if idempotent else classify_write

        def attempt() -> requests.Response:
            token = self.tokens.token()
            response = self._send(method, url, token, prefer, headers, body, classifier)
            if response.status_code == 401:
                logger.info("Dynamics refused the access token; renewing it for %s", self.connection.name)
                response = self._send(method, url, self.tokens.renew(token), prefer, headers, body, classifier)
                if response.status_code == 401:
                    raise self._token_refused(response)
            for header in (BURST_REMAINING, TIME_REMAINING):
                if header in response.headers:
                    self.service_protection[header] = response.headers[header]
            if response.status_code >= 400:
                raise classifier(response)
            return response

        return self.retried(attempt)

    def _get(self, url: str, prefer: Sequence[str] = ()) -> requests.Response:
        return self.request("GET", url, prefer=prefer)

    def _json(self, url: str, prefer: Sequence[str] = ()) -> dict[str, Any]:
        response = self._get(url, prefer)
        try:
            body = response.json()
        except ValueError:
            raise CrmUnavailable(f"Dynamics answered HTTP {response.status_code} without a JSON body") from None
        if not isinstance(body, dict):
            raise CrmUnavailable("Dynamics answered a JSON value that is not an object")
        return body

    def _token_refused(self, response: requests.Response) -> CrmAuthenticationFailed:
        """The org refused a fresh token too: say which scope it was for and which resource the org wants."""
        challenge = {
            name: quoted or bare
            for name, quoted, bare in _CHALLENGE_PARAMETER.findall(response.headers.get("WWW-Authenticate", ""))
        }
        text = (
            f"Dynamics refused the access token of connection {self.connection.name!r} for scope "
            f"{self.tokens.scope}, also after renewing it"
        )
        if challenge.get("error_description"):
            text += f" ({challenge['error_description']})"
        wanted = challenge.get("resource_id", "").rstrip("/")
        if wanted and wanted.lower() != self.tokens.scope.removesuffix("/.default").lower():
            text += (
                f"; the org accepts tokens for {wanted} (scope {wanted}/.default): check the connection's "
                "instance_url and resource"
            )
        return CrmAuthenticationFailed(text)

    def _check_link(self, link: str, entity_set: str, marker: str) -> None:
        """A next or delta link is followed with our token: only on the org's host, only for its table."""
        what = "delta link" if marker == "$deltatoken" else "next link"
        parts = urlsplit(link)
        if parts.scheme.lower() != "https" or parts.netloc.lower() != self._host:
            raise ConfigurationError(
                f"refusing a {what} to {parts.netloc or link[:40]!r}: only {self._host} receives this "
                "connection's token"
            )
        found = parts.path.rsplit("/", 1)[-1]
        if parts.path != f"{urlsplit(self._base).path}/{entity_set}":
            raise ConfigurationError(f"the {what} reads {found!r}, not {entity_set!r}")
        if marker not in parse_qs(parts.query, keep_blank_values=True):
            raise ConfigurationError(f"the {what} of {entity_set!r} carries no {marker}")

    def _definition(self, object_name: str, options: dict[str, str]) -> dict[str, Any]:
        name = odata.identifier(object_name).lower()
        url = f"{self._base}/EntityDefinitions(LogicalName={odata.string_literal(name)})?{odata.encode(options)}"
        try:
            body = self._json(url)
        except CrmRequestRejected as exc:
            if exc.status == 404:
                raise ConfigurationError(self._unknown_table(name)) from None
            raise
        self._tables[name] = Table(
            logical_name=str(body["LogicalName"]),
            entity_set=odata.identifier(str(body["EntitySetName"])),
            primary_id=odata.identifier(str(body["PrimaryIdAttribute"])),
            change_tracking=bool(body.get("ChangeTrackingEnabled", False)),
        )
        return body

    def _unknown_table(self, name: str) -> str:
        options = {"$select": "LogicalName", "$filter": f"EntitySetName eq {odata.string_literal(name)}"}
        found = self._json(f"{self._base}/EntityDefinitions?{odata.encode(options)}").get("value") or []
        hint = (
            f"; {name!r} is the entity set of table {found[0]['LogicalName']!r}: name the table by its logical name"
            if found
            else ""
        )
        return f"Dynamics has no table {name!r} visible to connection {self.connection.name!r}{hint}"

    def _table(self, object_name: str) -> Table:
        name = object_name.lower()
        if name not in self._tables:
            self._definition(name, {"$select": _ENTITY_SELECT})
        return self._tables[name]

    def table(self, object_name: str) -> Table:
        """The table's entity set and primary id attribute, read once per connector (the writer's URLs)."""
        return self._table(object_name)

    @property
    def api_url(self) -> str:
        """The Web API root of the org, `https://<org>/api/data/v9.2`."""
        return self._base

    # -- port --------------------------------------------------------------------------------------
    def _whoami(self) -> requests.Response:
        return self._get(f"{self._base}/WhoAmI")

    def server_time(self) -> datetime:
        self._whoami()
        return self.session.crm_clock("Dynamics")

    def limits(self) -> ApiLimits:
        """What the service-protection headers tell: requests and execution time left in the window."""
        self._whoami()
        return self.api_usage() or ApiLimits()

    def api_usage(self) -> ApiLimits | None:
        """The service-protection window as the last answer reported it (Dataverse documents 6,000
        requests per user per 300-second window)."""
        if not self.service_protection:
            return None
        details: dict[str, Any] = {"window_seconds": SERVICE_PROTECTION_WINDOW_SECONDS}
        used: int | None = None
        if BURST_REMAINING in self.service_protection:
            remaining = int(self.service_protection[BURST_REMAINING].replace(",", ""))
            details["requests_remaining"] = remaining
            used = max(0, SERVICE_PROTECTION_REQUESTS - remaining)
        if TIME_REMAINING in self.service_protection:
            details["execution_ms_remaining"] = float(self.service_protection[TIME_REMAINING].replace(",", ""))
        return ApiLimits(
            used=used, maximum=SERVICE_PROTECTION_REQUESTS if used is not None else None, details=details
        )

    def list_objects(self) -> list[ObjectSummary]:
        options = {"$select": "LogicalName,EntitySetName,DisplayName,IsCustomEntity,IsIntersect"}
        body = self._json(f"{self._base}/EntityDefinitions?{odata.encode(options)}")
        return sorted(
            (
                ObjectSummary(
                    name=str(e["LogicalName"]),
                    label=_label(e.get("DisplayName")) or str(e["LogicalName"]),
                    custom=bool(e.get("IsCustomEntity")),
                    queryable=bool(e.get("EntitySetName")),
                    createable=bool(e.get("EntitySetName")) and not e.get("IsIntersect", False),
                )
                for e in body.get("value", [])
            ),
            key=lambda o: o.name,
        )

    def describe(self, object_name: str, *, values: bool = False) -> ObjectDescription:
        """`EntityDefinitions` with Attributes and Keys (metadata answers are not paged). With `values`,
        one typed cast per option kind (Picklist, MultiSelectPicklist, State, Status, Boolean) expands the
        option sets, local and global, and Boolean labels."""
        body = self._definition(object_name, {"$select": _ENTITY_SELECT, "$expand": "Attributes,Keys"})
        options: dict[str, tuple[tuple[PicklistValue, ...], str | None, bool]] = {}
        if values:
            kinds = {option_kind(raw) for raw in body.get("Attributes", [])} - {None}
            for kind in sorted(k for k in kinds if k):
                for raw in self._option_attributes(str(body["LogicalName"]), kind):
                    options[str(raw["LogicalName"]).lower()] = _options_of(raw)
        table = self._tables[object_name.lower()]
        # A one-column alternate key is what an upsert can address a record by (SPEC E1).
        key_columns = {
            str(key["KeyAttributes"][0]).lower()
            for key in body.get("Keys", [])
            if len(key.get("KeyAttributes") or []) == 1
        }
        fields: dict[str, FieldDescription] = {}
        for raw in body.get("Attributes", []):
            if raw.get("AttributeOf") or not raw.get("IsValidForRead", True):
                continue
            required = (raw.get("RequiredLevel") or {}).get("Value", "None")
            description = FieldDescription(
                name=str(raw["LogicalName"]),
                crm_type=field_type(raw),
                label=_label(raw.get("DisplayName")),
                length=raw.get("MaxLength") or None,
                nillable=required not in ("SystemRequired", "ApplicationRequired"),
                createable=bool(raw.get("IsValidForCreate", False)),
                updateable=bool(raw.get("IsValidForUpdate", False)),
                external_id=str(raw["LogicalName"]).lower() in key_columns,
                unique=str(raw["LogicalName"]).lower() in key_columns,
                raw_type=option_kind(raw) or str(raw.get("AttributeType", "")),
            )
            found = options.get(description.name.lower())
            if found is not None:
                picklist, set_name, is_global = found
                description = replace(
                    description,
                    picklist=picklist,
                    picklist_values=tuple(p.value for p in picklist if p.active),
                    option_set=set_name,
                    option_set_global=is_global,
                )
            fields[description.name.lower()] = description
        return ObjectDescription(
            name=table.logical_name,
            id_field=table.primary_id,
            fields=fields,
            label=_label(body.get("DisplayName")),
            custom=bool(body.get("IsCustomEntity", False)),
            entity_set=table.entity_set,
            change_tracking=table.change_tracking,
        )

    def describe_if_modified(self, object_name: str, since: str) -> ObjectDescription | None:
        """Dataverse's `EntityDefinitions` answer no `If-Modified-Since`: always a full description (one
        metadata call). Its own change feed is `RetrieveMetadataChanges`, which this build does not use."""
        return self.describe(object_name)

    def _option_attributes(self, entity: str, kind: str, attribute: str | None = None) -> list[dict[str, Any]]:
        """The attributes of one option kind through its cast, option sets expanded."""
        cast = OPTION_CASTS[kind]
        expand = "OptionSet" if kind == "Boolean" else "OptionSet,GlobalOptionSet"
        options = {
            "$select": "LogicalName,DefaultFormValue" if kind == "Picklist" else "LogicalName",
            "$expand": expand,
        }
        if kind == "Boolean":
            options["$select"] = "LogicalName,DefaultValue"
        target = f"Attributes(LogicalName={odata.string_literal(attribute)})" if attribute else "Attributes"
        url = (
            f"{self._base}/EntityDefinitions(LogicalName={odata.string_literal(entity)})/{target}/"
            f"Microsoft.Dynamics.CRM.{cast}?{odata.encode(options)}"
        )
        body = self._json(url)
        return [body] if attribute else list(body.get("value") or [])

    def enumeration(
        self, object_name: str, field_name: str, record_type: str | None = None
    ) -> tuple[PicklistValue, ...]:
        """One option set column's values and labels: describe to learn its kind, then its typed cast."""
        if record_type is not None:
            raise ConfigurationError(
                "record types are Salesforce's; a Dataverse option set has one list of values"
            )
        description = self.describe(object_name)
        field = description.field(field_name)
        if field is None:
            raise ConfigurationError(f"Dynamics table {description.name} has no column {field_name!r}")
        if field.raw_type not in OPTION_CASTS:
            raise ConfigurationError(
                f"{description.name}.{field.name} is a {field.raw_type} column, not an option set or a Boolean"
            )
        raw = self._option_attributes(description.name, field.raw_type, field.name.lower())[0]
        return _options_of(raw)[0]

    def global_enumeration(self, name: str) -> tuple[PicklistValue, ...]:
        """A global option set by name: `GlobalOptionSetDefinitions(Name='...')`."""
        url = f"{self._base}/GlobalOptionSetDefinitions(Name={odata.string_literal(odata.identifier(name))})"
        try:
            body = self._json(url)
        except CrmRequestRejected as exc:
            if exc.status == 404:
                raise ConfigurationError(f"Dynamics has no global option set {name!r}") from None
            raise
        return option_values(body)

    # -- labels -----------------------------------------------------------------------------------
    def option_labels(self, object_name: str, columns: Iterable[str]) -> dict[str, dict[Any, str]]:
        """Value -> label of each option-set, status, state or yes/no column among `columns`, read from
        the table's metadata once per connector (one call for the columns' types, one per metadata type
        found). Columns of other types (lookups above all) are left out: their label is a record's name."""
        table = self._table(object_name).logical_name
        wanted = sorted(
            {odata.identifier(c).lower() for c in columns} - {c for t, c in self._options if t == table}
        )
        if wanted:
            entity = f"{self._base}/EntityDefinitions(LogicalName={odata.string_literal(table)})/Attributes"
            names = " or ".join(f"LogicalName eq {odata.string_literal(c)}" for c in wanted)
            typed = self._json(
                f"{entity}?{odata.encode({'$select': 'LogicalName,AttributeType', '$filter': names})}"
            )
            by_type: dict[str, list[str]] = {}
            for item in typed.get("value", []):
                kind = _OPTION_METADATA.get(str(item.get("AttributeType")))
                if kind is not None:
                    by_type.setdefault(kind, []).append(str(item["LogicalName"]))
            for column in wanted:
                self._options[(table, column)] = {}
            for kind, found in by_type.items():
                options = {
                    "$select": "LogicalName",
                    "$filter": " or ".join(f"LogicalName eq {odata.string_literal(c)}" for c in found),
                    "$expand": "OptionSet",
                }
                body = self._json(f"{entity}/Microsoft.Dynamics.CRM.{kind}?{odata.encode(options)}")
                for item in body.get("value", []):
                    self._options[(table, str(item["LogicalName"]))] = _option_map(item.get("OptionSet") or {})
        return {
            c: self._options[(table, c.lower())]
            for c in (odata.identifier(c) for c in columns)
            if self._options.get((table, c.lower()))
        }

    def _prefer(self, cursor: _Cursor, annotated: bool) -> list[str]:
        prefer = [f"odata.maxpagesize={cursor.page_size}"]
        if cursor.tracking:
            prefer.append("odata.track-changes")
        if annotated:
            prefer.append(f'odata.include-annotations="{FORMATTED}"')
        return prefer

    @staticmethod
    def _record(
        row: dict[str, Any],
        annotated: tuple[str, ...],
        options: dict[str, dict[Any, str]],
        columns: dict[str, str | None],
    ) -> dict[str, Any]:
        """Columns by logical name (`_x_value` lookups as `x`), annotations dropped, labels where asked:
        from the option metadata, or from the formatted-value annotation. `columns` caches each property's
        column (None for an annotation) over a page, whose rows share their properties."""
        record = {}
        for key, value in row.items():
            column = columns.get(key, "")
            if column == "":
                column = columns[key] = None if "@" in key else odata.column_of(key)
            if column is not None:
                record[column] = value
        for name, labels in options.items():
            value = record.get(name)
            if value is not None:
                record[name] = labels.get(value, str(value))
        for name in annotated:
            if record.get(name) is not None:
                record[name] = row.get(f"_{name}_value@{FORMATTED}", row.get(f"{name}@{FORMATTED}"))
        return record

    def _follow(self, cursor: _Cursor) -> RecordPage:
        options = self.option_labels(cursor.table, cursor.labels) if cursor.labels and cursor.table else {}
        annotated = tuple(n for n in cursor.labels if n not in options)
        body = self._json(cursor.link, self._prefer(cursor, bool(annotated)))
        records: list[dict[str, Any]] = []
        deleted: list[str] = []
        columns: dict[str, str | None] = {}
        for row in body.get("value", []):
            if _is_deletion(row):
                deleted.append(str(row["id"]).lower())
            else:
                records.append(self._record(row, annotated, options, columns))
        next_link = body.get("@odata.nextLink")
        if next_link:
            self._check_link(next_link, cursor.entity_set, "$skiptoken")
        delta_link = body.get("@odata.deltaLink")
        if delta_link:
            self._check_link(delta_link, cursor.entity_set, "$deltatoken")
        return RecordPage(
            records=records,
            next_cursor=replace(cursor, link=next_link).encode() if next_link else None,
            deleted_ids=tuple(deleted),
            delta_link=delta_link,
        )

    def _cursor(self, table: Table, link: str, query: RecordQuery, *, tracking: bool) -> _Cursor:
        size = max(1, min(query.page_size, MAX_PAGE_SIZE))
        labels = tuple(odata.identifier(n) for n in query.labels)
        return _Cursor(link, table.entity_set, size, tracking, labels, table.logical_name)

    def read_first_page(self, query: RecordQuery) -> RecordPage:
        table = self._table(query.object)
        options = odata.query_options(query, table.primary_id)
        link = f"{self._base}/{table.entity_set}?{odata.encode(options)}"
        return self._follow(self._cursor(table, link, query, tracking=False))

    def read_next_page(self, cursor: str) -> RecordPage:
        decoded = _Cursor.decode(cursor)
        self._check_link(decoded.link, decoded.entity_set, "$skiptoken")
        return self._follow(decoded)

    def read_changes(self, query: RecordQuery, delta_link: str | None) -> RecordPage:
        table = self._table(query.object)
        if delta_link is None:
            link = f"{self._base}/{table.entity_set}?{odata.encode({'$select': odata.select(query)})}"
        else:
            self._check_link(delta_link, table.entity_set, "$deltatoken")
            link = delta_link
        return self._follow(self._cursor(table, link, query, tracking=True))

    def check_delta_link(self, delta_link: str, object_name: str) -> None:
        self._check_link(delta_link, self._table(object_name).entity_set, "$deltatoken")

    def read_by_ids(self, query: RecordQuery, *, filtered: bool = False) -> list[dict[str, Any]]:
        """Chunks of ids read side by side, never more at once than the connection's max_concurrency."""
        ids = [odata.guid(i) for i in query.ids]
        chunks = [tuple(ids[start : start + ID_CHUNK]) for start in range(0, len(ids), ID_CHUNK)]

        def read(chunk: tuple[str, ...]) -> list[dict[str, Any]]:
            page = self.read_first_page(
                replace(
                    query, ids=chunk, window_field=None, order_by=(), filter=query.filter if filtered else None
                )
            )
            return self.every_record(page)

        if len(chunks) <= 1:
            return [record for chunk in chunks for record in read(chunk)]
        with ThreadPoolExecutor(max_workers=min(self.connection.max_concurrency, len(chunks))) as pool:
            return [record for records in pool.map(read, chunks) for record in records]

    # -- initial transfer (SPEC T1) ----------------------------------------------------------------
    def count_records(self, object_name: str) -> int:
        """`RetrieveTotalRecordCount(EntityNames=['<table>'])`: Dataverse's row count snapshot (up to a
        day old, which is close enough to choose between files and the ordinary import)."""
        table = self._table(object_name)
        names = f"['{odata.identifier(table.logical_name)}']"
        body = self._json(
            f"{self._base}/RetrieveTotalRecordCount(EntityNames=@names)?{odata.encode({'@names': names})}"
        )
        counts = body.get("EntityRecordCountCollection") or {}
        for key, value in zip(counts.get("Keys") or [], counts.get("Values") or [], strict=False):
            if str(key).lower() == table.logical_name.lower():
                return int(value)
        raise CrmUnavailable(f"RetrieveTotalRecordCount answered no count for {table.logical_name}")

    def extract_page(self, query: RecordQuery, cursor: str | None, *, records: int, tracking: bool) -> RecordPage:
        """The whole table in pages of at most 5,000 (`@odata.nextLink`): with `tracking` a change-tracking
        read (`Prefer: odata.track-changes`) whose last page carries the delta link, else the ordinary
        read with the window left out."""
        if cursor is not None:
            return self.read_next_page(cursor)
        whole = replace(
            query,
            window_field=None,
            window_start=None,
            window_end=None,
            ids=(),
            page_size=min(records, MAX_PAGE_SIZE),
        )
        return self.read_changes(whole, None) if tracking else self.read_first_page(whole)

    # -- id-set comparison (SPEC D1) ---------------------------------------------------------------
    def read_ids_first(self, object_name: str) -> IdPage:
        """Every id of a table, 5,000 a page and nothing but the key: what an expired delta token falls
        back to, so a deletion is found by its absence instead of being lost."""
        table = self._table(object_name)
        link = f"{self._base}/{table.entity_set}?{odata.encode({'$select': table.primary_id})}"
        return self._id_page(_Cursor(link, table.entity_set, MAX_PAGE_SIZE), table.primary_id)

    def read_ids_next(self, cursor: str) -> IdPage:
        try:
            raw = json.loads(cursor)
            id_attribute, page = odata.identifier(str(raw["id"])), _Cursor.decode(str(raw["page"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ConfigurationError("the id cursor is not a Dynamics id cursor") from None
        self._check_link(page.link, page.entity_set, "$skiptoken")
        return self._id_page(page, id_attribute)

    def _id_page(self, cursor: _Cursor, id_attribute: str) -> IdPage:
        page = self._follow(cursor)
        following = None
        if page.next_cursor is not None:
            following = json.dumps({"id": id_attribute, "page": page.next_cursor}, separators=(",", ":"))
        return IdPage(
            ids=[str(r[id_attribute]).lower() for r in page.records if r.get(id_attribute)],
            next_cursor=following,
        )

    # -- auditing (SPEC O3) ------------------------------------------------------------------------
    def integration_user(self) -> str:
        """The application user crmsync acts as (`WhoAmI`), read once per connector."""
        if self._user_id is None:
            body = self._whoami().json()
            self._user_id = str(body["UserId"]).lower()
        return self._user_id

    def field_tracking(self, object_name: str, fields: Iterable[str]) -> FieldTracking:
        """Auditing's three switches: the environment (`organizations.isauditenabled`), the table's and
        each column's `IsAuditEnabled` - all three must be on for a column's changes to be audited."""
        names = list(dict.fromkeys(fields))
        organization = self._json(f"{self._base}/organizations?{odata.encode({'$select': 'isauditenabled'})}")
        rows = organization.get("value") or [{}]
        if not rows[0].get("isauditenabled"):
            return FieldTracking("audit", dict.fromkeys(names, False), "auditing is off for the environment")
        table = self._definition(object_name, {"$select": _ENTITY_SELECT + ",IsAuditEnabled"})
        if not (table.get("IsAuditEnabled") or {}).get("Value"):
            return FieldTracking(
                "audit", dict.fromkeys(names, False), f"auditing is off for the table {object_name}"
            )
        name = odata.identifier(object_name).lower()
        link = (
            f"{self._base}/EntityDefinitions(LogicalName={odata.string_literal(name)})/Attributes?"
            f"{odata.encode({'$select': 'LogicalName,IsAuditEnabled'})}"
        )
        columns = {
            str(a["LogicalName"]).lower(): bool((a.get("IsAuditEnabled") or {}).get("Value"))
            for a in self._json(link).get("value", [])
        }
        return FieldTracking("audit", {n: columns.get(n.lower(), False) for n in names})

    def recorded_changes(self, query: HistoryQuery) -> Iterator[FieldChange]:
        """`RetrieveRecordChangeHistory` for each record - never `RetrieveAuditDetails` per audit row - sent
        up to 1,000 to a `$batch` (a function call is a GET, which a batch takes outside any change set),
        the batches side by side up to the connection's max_concurrency: 100 changed records cost one
        call, not 100. `Prefer: odata.continue-on-error` runs every request; one the batch answers with an
        error (or leaves unanswered) is sent again on its own, through the retry policy and the error
        classification every call has, so a record's history is read or the run fails as before."""
        table = self._table(query.object)
        ids = [odata.guid(i) for i in query.record_ids]
        start, end = query.start, query.end

        def url(record_id: str) -> str:
            target = "{'@odata.id':'" + f"{table.entity_set}({record_id})" + "'}"
            return f"{self._base}/RetrieveRecordChangeHistory(Target=@t)?{odata.encode({'@t': target})}"

        def changes_of(record_id: str, document: dict[str, Any]) -> list[FieldChange]:
            details = (document.get("AuditDetailCollection") or {}).get("AuditDetails") or []
            changes = []
            for detail in details:
                audit = detail.get("AuditRecord") or {}
                moment = parse_crm_datetime_or_none(audit.get("createdon"))
                if moment is None or moment >= end or (start is not None and moment < start):
                    continue
                # A column set to null is left out of NewValue (Dataverse omits null attributes): its old
                # value alone says it changed.
                new_values = detail.get("NewValue") or {}
                cleared = {k: None for k in (detail.get("OldValue") or {}) if k not in new_values}
                for column, value in {**new_values, **cleared}.items():
                    changes.append(FieldChange(record_id, column, value, moment, audit.get("_userid_value")))
            return changes

        def read(chunk: list[str]) -> list[FieldChange]:
            if len(chunk) == 1:
                return changes_of(chunk[0], self._json(url(chunk[0])))
            documents = self._batched_gets([url(record_id) for record_id in chunk])
            return [
                change
                for record_id, document in zip(chunk, documents, strict=True)
                for change in changes_of(
                    record_id, document if document is not None else self._json(url(record_id))
                )
            ]

        chunks = [ids[i : i + batch.MAX_REQUESTS] for i in range(0, len(ids), batch.MAX_REQUESTS)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=min(self.connection.max_concurrency, len(chunks))) as pool:
            yield from (change for changes in pool.map(read, chunks) for change in changes)

    def execute_batch(self, parts: list[batch.BatchPart], *, idempotent: bool) -> dict[str, batch.PartResponse]:
        """One `$batch` of top-level requests with `Prefer: odata.continue-on-error`: each answer by the
        Content-ID of its request (an answer without one, by the documented order of the answers). A part
        left unanswered is absent. An unreadable answer is `CrmUnavailable` for reads and
        `CrmOutcomeUnknown` for writes, which may have been applied."""
        content_type, body = batch.encode(parts)
        response = self.request(
            "POST",
            f"{self._base}/$batch",
            prefer=("odata.continue-on-error",),
            headers={"Content-Type": content_type},
            body=body,
            idempotent=idempotent,
        )
        try:
            decoded = batch.decode(response.headers.get("Content-Type", ""), response.content)
        except ValueError as exc:
            unreadable = CrmUnavailable if idempotent else CrmOutcomeUnknown
            raise unreadable(f"Dynamics answered a $batch unreadably: {exc}") from None
        wanted = {part.content_id for part in parts}
        answers: dict[str, batch.PartResponse] = {}
        for position, (content_id, answer) in enumerate(decoded):
            if content_id is None or content_id not in wanted:
                if position >= len(parts):
                    continue
                content_id = parts[position].content_id
            answers[content_id] = answer
        return answers

    def _batched_gets(self, urls: list[str]) -> list[dict[str, Any] | None]:
        """GET requests (1,000 at most) in one `$batch`: each one's JSON object in the order of `urls`, or
        None where the batch answered it with an error or not at all (the caller reads that one alone). A
        batch of reads changes nothing, so it is retried like any read."""
        parts = [
            batch.BatchPart(str(number), "GET", link, headers={"Accept": "application/json"})
            for number, link in enumerate(urls, start=1)
        ]
        answers = self.execute_batch(parts, idempotent=True)
        documents: list[dict[str, Any] | None] = []
        for part in parts:
            found = answers.get(part.content_id)
            document = found.json() if found is not None and found.status < 400 else None
            documents.append(document if isinstance(document, dict) else None)
        return documents

    def find(
        self, object_name: str, field: str, values: Iterable[str], fields: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Records of `object_name` whose `field` equals one of `values` (Dataverse compares text without
        regard to case), with their id and `fields`: one `In` query per chunk of values that fits a URL."""
        table = self._table(object_name)
        column = odata.identifier(field)
        select = ",".join(dict.fromkeys([table.primary_id, *(odata.identifier(f) for f in fields)]))
        records: list[dict[str, Any]] = []
        for chunk in odata.value_chunks(dict.fromkeys(str(v) for v in values)):
            options = {"$select": select, "$filter": odata.values_in(column, chunk)}
            link = f"{self._base}/{table.entity_set}?{odata.encode(options)}"
            records.extend(self.every_record(self._follow(_Cursor(link, table.entity_set, MAX_PAGE_SIZE))))
        return records
