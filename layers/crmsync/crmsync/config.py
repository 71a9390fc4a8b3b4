"""Configuration: connections and sync definitions, YAML in, validated models out (SPEC C1, I1-I12).

The operator writes YAML; `load_config` validates all of it and raises one `ConfigurationError` whose
`problems` hold one line per problem, each naming where it is and which rule it breaks. Secrets are
never in the file: a connection names its AWS Secrets Manager secret.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .domain.filters import AllOf, AnyOf, Condition, FilterNode, NotOf, OrderBy, check_field_name
from .domain.mapping import FieldMapping
from .domain.types import AttributeType
from .errors import ConfigurationError
from .inputs import decode_text

IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
OPTION_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
API_VERSION_SF = re.compile(r"^\d{2}\.0$")
API_VERSION_DYN = re.compile(r"^9\.[0-2]$")
TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\(([^()]+)\)$")
OBJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

RULE_HTTPS = "rule C1: only https:// URLs are accepted"

DEFAULT_WATERMARK_FIELD = {"salesforce": "SystemModstamp", "dynamics": "modifiedon"}
# The largest page each CRM serves (Salesforce query: 2,000 rows; Dataverse: 5,000), and an import's default:
# a page step costs a Lambda invocation and a CRM call whatever its size.
CRM_MAX_PAGE_SIZE = {"salesforce": 2000, "dynamics": 5000}


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() != "https":
        raise ValueError(f"{value!r} is not an https:// URL ({RULE_HTTPS})")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host name")
    if parts.username or parts.password:
        raise ValueError("credentials must not be written in a URL; put them in the connection's secret")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r} must not carry a query string or fragment")
    return value.rstrip("/")


def _optional_path(value: str | None) -> str | None:
    return value or None


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None
    return value


def _option_name(value: str | None) -> str | None:
    if value is not None and not OPTION_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid option name (letters, digits, _ . : -; 128 max)")
    return value


def _identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: lower-case letters, digits, '-' and '_', starting with a letter "
            "or digit, 40 characters at most"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------- connections
class SalesforceAuth(_Model):
    """How crmsync obtains a Salesforce access token (SPEC C2).

    Secret fields by flow - client_credentials: client_id, client_secret; jwt_bearer: client_id,
    username, private_key (PEM); password: client_id, client_secret, username, password, security_token.
    """

    flow: Literal["client_credentials", "jwt_bearer", "password"] = "client_credentials"
    token_url: str | None = Field(
        default=None,
        description="token endpoint base; defaults to the instance URL (My Domain), or to "
        "login/test.salesforce.com for the password flow",
    )
    audience: str | None = Field(
        default=None,
        description="JWT audience; defaults to https://login.salesforce.com, or https://test.salesforce.com "
        "for a sandbox",
    )

    _https = field_validator("token_url", "audience")(lambda v: None if v is None else _https_url(v))


class SalesforceConnection(_Model):
    kind: Literal["salesforce"]
    name: str
    instance_url: str
    api_version: str = "62.0"
    sandbox: bool = False
    auth: SalesforceAuth = Field(default_factory=SalesforceAuth)
    secret: str = Field(description="AWS Secrets Manager secret name holding the credentials")
    ca_bundle: str | None = Field(default=None, description="PEM bundle for a private CA (tests, proxies)")
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)

    _name = field_validator("name")(_identifier)
    _url = field_validator("instance_url")(_https_url)
    _ca = field_validator("ca_bundle")(_optional_path)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not API_VERSION_SF.match(value):
            raise ValueError(f"{value!r} is not a Salesforce API version like '62.0'")
        return value

    @field_validator("secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _secret_name(value)


class DynamicsAuth(_Model):
    """Entra ID client-credentials through MSAL: a client secret or a certificate (SPEC C2).

    Secret fields by flow - client_secret: client_id, client_secret; certificate: client_id,
    private_key (PEM), and certificate (PEM) or thumbprint (SHA-1 hex), optional private_key_passphrase.
    """

    flow: Literal["client_secret", "certificate"] = "client_secret"


class DynamicsConnection(_Model):
    kind: Literal["dynamics"]
    name: str
    instance_url: str
    api_version: str = "9.2"
    tenant_id: str
    authority: str | None = Field(
        default=None,
        description="Entra ID authority; defaults to https://login.microsoftonline.com/<tenant_id>. A custom "
        "authority (sovereign cloud, the local emulator) is used as given, without instance discovery",
    )
    resource: str | None = Field(
        default=None,
        description="Application ID URI the token is requested for (<resource>/.default); defaults to "
        "instance_url. Set it only when the org is reached through another address (a proxy)",
    )
    auth: DynamicsAuth = Field(default_factory=DynamicsAuth)
    secret: str = Field(description="AWS Secrets Manager secret name holding the credentials")
    ca_bundle: str | None = Field(default=None, description="PEM bundle for a private CA (tests, proxies)")
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    max_concurrency: int = Field(
        default=8, ge=1, le=52, description="concurrent requests per container; Dataverse allows 52 per user"
    )

    _name = field_validator("name")(_identifier)
    _url = field_validator("instance_url")(_https_url)
    _optional_urls = field_validator("authority", "resource")(lambda v: _https_url(v) if v else None)
    _ca = field_validator("ca_bundle")(_optional_path)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not API_VERSION_DYN.match(value):
            raise ValueError(f"{value!r} is not a Dataverse Web API version like '9.2'")
        return value

    @field_validator("secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _secret_name(value)

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not TENANT.match(value):
            raise ValueError(
                f"{value!r} is not an Entra ID tenant (a GUID, or a domain such as acme.onmicrosoft.com)"
            )
        return value

    @property
    def effective_authority(self) -> str:
        return self.authority or f"https://login.microsoftonline.com/{self.tenant_id}"

    @property
    def scope(self) -> str:
        """The one scope of the client-credentials token: the org's resource, `/.default`."""
        return f"{self.resource or self.instance_url}/.default"


def _secret_name(value: str) -> str:
    if value.startswith("arn:"):
        return value
    if not SECRET_NAME.match(value):
        raise ValueError(f"{value!r} is not a Secrets Manager secret name")
    return value


Connection = Annotated[SalesforceConnection | DynamicsConnection, Field(discriminator="kind")]


# ------------------------------------------------------------------------------------- syncs
class WatermarkSettings(_Model):
    """The automatic index (SPEC I7)."""

    mode: Literal["auto", "modified", "change_tracking"] = Field(
        default="auto",
        description="auto: Dynamics change tracking (delta links) where the table has it and the sync has no "
        "filter or order_by, else a window on the watermark field; modified: always the window; "
        "change_tracking: delta links, refused when the table has no change tracking",
    )
    field: str | None = Field(
        default=None,
        description="CRM last-modified field; default SystemModstamp (Salesforce) or modifiedon (Dynamics)",
    )
    option: str | None = Field(default=None, description="option name; default LASTIMPORT_<instance>_<sync>")
    overlap_seconds: int = Field(
        default=300, ge=0, le=86_400, description="each window starts this long before the last one ended"
    )
    lag_seconds: int = Field(
        default=60, ge=0, le=3_600, description="each window ends this long before the CRM's server time"
    )

    @field_validator("field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        return None if value is None else check_field_name(value)

    _option = field_validator("option")(_option_name)


class Reconciliation(_Model):
    """Match on the CRM id first, then on this local attribute (SPEC I10)."""

    key: str | None = Field(default=None, description="local attribute used as the unique key, e.g. email")
    case_insensitive: bool = True


class Target(_Model):
    """Where imported records land: the profile store or a custom resource (SPEC I11)."""

    kind: Literal["profiles", "resource"] = "profiles"
    resource: str | None = None
    timezone: str = Field(default="UTC", description="IANA time zone of local date-times (SPEC I3)")

    _tz = field_validator("timezone")(_timezone)

    @model_validator(mode="after")
    def _resource_named(self) -> Target:
        if self.kind == "resource":
            if not self.resource:
                raise ValueError("a resource target needs 'resource', the local resource (table) name")
            _identifier(self.resource)
        elif self.resource is not None:
            raise ValueError("'resource' is only for targets of kind 'resource'")
        return self


class RejectSettings(_Model):
    route: bool = Field(
        default=True,
        description="keep rejects in the reject store and notify the rejects queue (a warning is always logged)",
    )


class _Sync(_Model):
    """What every sync has: its identity, its connection and object, a schedule, reject routing."""

    id: str
    connection: str
    object: str
    description: str | None = None
    enabled: bool = True
    schedule: str | None = Field(
        default=None, description="EventBridge Scheduler expression: rate(...) or cron(...)"
    )
    schedule_timezone: str = "UTC"
    rejects: RejectSettings = Field(default_factory=RejectSettings)

    _id = field_validator("id")(_identifier)
    _conn = field_validator("connection")(_identifier)

    @field_validator("object")
    @classmethod
    def _object(cls, value: str) -> str:
        if not OBJECT_NAME.match(value):
            raise ValueError(f"{value!r} is not a CRM object name")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if match := RATE.match(value):
            amount, unit = int(match.group(1)), match.group(2)
            if amount < 1 or (amount == 1) != (not unit.endswith("s")):
                raise ValueError(f"{value!r}: use 'rate(1 hour)' for one and 'rate(2 hours)' for more")
            return value
        if match := CRON.match(value):
            parts = match.group(1).split()
            if len(parts) != 6:
                raise ValueError(
                    f"{value!r}: EventBridge cron has 6 fields (minutes hours day-of-month month day-of-week "
                    "year), e.g. cron(0/20 * * * ? *)"
                )
            if "?" not in (parts[2], parts[4]):
                raise ValueError(f"{value!r}: one of day-of-month and day-of-week must be '?'")
            return value
        raise ValueError(f"{value!r} is not a schedule; use rate(20 minutes) or cron(0/20 * * * ? *)")

    _schedule_tz = field_validator("schedule_timezone")(_timezone)


def _mapping_problems(fields: list[FieldMapping], where: str) -> tuple[list[str], dict[str, int]]:
    """One local attribute and one remote field per mapping line; returns problems and locals seen."""
    problems = []
    locals_seen: dict[str, int] = {}
    remotes_seen: dict[str, int] = {}
    for index, mapping in enumerate(fields):
        if mapping.local in locals_seen:
            problems.append(
                f"{where}[{index}].local: {mapping.local!r} is already mapped by {where}[{locals_seen[mapping.local]}]"
            )
        locals_seen.setdefault(mapping.local, index)
        remote = mapping.remote.lower()
        if remote in remotes_seen:
            problems.append(
                f"{where}[{index}].remote: {mapping.remote!r} is already mapped by {where}[{remotes_seen[remote]}]"
            )
        remotes_seen.setdefault(remote, index)
    return problems, locals_seen


class ImportSync(_Sync):
    """Incremental import of one CRM object (SPEC I1-I12)."""

    operation: Literal["import"]
    fields: list[FieldMapping] = Field(min_length=1)
    filter: FilterNode | None = None
    order_by: list[OrderBy] = Field(default_factory=list)
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    reconciliation: Reconciliation = Field(default_factory=Reconciliation)
    target: Target = Field(default_factory=Target)
    page_size: int | None = Field(
        default=None,
        ge=200,
        le=5000,
        description="records per page step; by default the CRM's maximum (Salesforce 2,000, Dynamics 5,000)",
    )

    @model_validator(mode="after")
    def _coherent(self) -> ImportSync:
        problems, locals_seen = _mapping_problems(self.fields, "fields")
        if self.reconciliation.key is not None and self.reconciliation.key not in locals_seen:
            problems.append(
                f"reconciliation.key: {self.reconciliation.key!r} is not a mapped local attribute "
                f"(mapped: {', '.join(sorted(locals_seen))})"
            )
        if self.target.kind == "resource" and self.reconciliation.key is not None:
            problems.append("reconciliation.key: resources are matched on their CRM id only")
        sorted_fields = [o.field.lower() for o in self.order_by]
        if len(set(sorted_fields)) != len(sorted_fields):
            problems.append("order_by: a field appears more than once")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def watermark_option(self, instance: str) -> str:
        return self.watermark.option or f"LASTIMPORT_{instance}_{self.id}"


# ------------------------------------------------------------------------------------- export
PROFILE_ID = "profileId"
SALESFORCE_MAX_PAGE = CRM_MAX_PAGE_SIZE[
    "salesforce"
]  # records a SOQL query returns per page at most (its batch size)
MAX_EXPORT_CONCURRENCY = {"salesforce": 25, "dynamics": 52}
RULE_EXACTLY_ONCE = "rule E4: an export that can insert needs a correlation field so no record is created twice"


class ExportWatermarkSettings(_Model):
    """This export's own index: profiles changed since its last successful run are exported."""

    option: str | None = Field(default=None, description="option name; default LASTEXPORT_<instance>_<sync>")
    overlap_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="each run also reads this long before the last one ended; covers the change index's "
        "propagation delay, so a change is never missed",
    )
    lag_seconds: int = Field(
        default=0, ge=0, le=3_600, description="changes younger than this wait for the next run"
    )

    _option = field_validator("option")(_option_name)


class ExternalIdKey(_Model):
    """Upsert key: a CRM external-id field and the local attribute (or `profileId`) it holds (SPEC E1)."""

    remote: str
    local: str = Field(default=PROFILE_ID, description="local attribute, or profileId for the profile's id")

    _remote = field_validator("remote")(check_field_name)


class LeadOrContact(_Model):
    """Create unknown people as Leads; update those found as a Lead or a Contact in that form (SPEC E5)."""

    match: str = Field(description="local attribute compared with the CRM's e-mail field, e.g. email")
    contact_fields: list[FieldMapping] | None = Field(
        default=None, description="the mapping for people found as Contacts; default: the sync's fields"
    )

    def problems(
        self, setting: str, object_name: str, locals_seen: dict[str, int]
    ) -> tuple[list[str], dict[str, int]]:
        """What is wrong with the routing of a sync of `object_name` whose fields map `locals_seen` (one
        place for the export's `lead_or_contact` and the two-way sync's `create.lead_or_contact`); answers
        the problems and the locals of the fields and contact_fields together."""
        problems: list[str] = []
        if self.contact_fields is not None:
            contact_problems, contact_locals = _mapping_problems(self.contact_fields, f"{setting}.contact_fields")
            problems += contact_problems
            locals_seen = {**contact_locals, **locals_seen}
        if self.match not in locals_seen:
            problems.append(
                f"{setting}.match: {self.match!r} is not a mapped local attribute "
                f"(mapped: {', '.join(sorted(locals_seen))})"
            )
        if object_name != "Lead":
            problems.append(
                f"object: {setting} creates Leads and updates Leads or Contacts; set object to Lead, "
                f"not {object_name!r}"
            )
        return problems, locals_seen

    @staticmethod
    def crm_problem(setting: str, what: str) -> str:
        """Lead-or-contact routing on a CRM other than Salesforce, refused (one message for every sync)."""
        return (
            f"{setting}: Salesforce-only (rule E5 routes people to Salesforce Leads and Contacts); "
            f"a Dynamics {what} writes one table"
        )


class OwnerSync(_Model):
    """Record owners (SPEC E6): a local attribute naming the CRM user, by e-mail or by CRM user id."""

    local: str
    by: Literal["email", "id"] = "email"


class TimelineLink(_Model):
    """A link to the profile's marketing timeline, written on the CRM record by the export (SPEC M5)."""

    field: str = Field(description="CRM text or URL field receiving the link")
    url: str = Field(
        description="https URL template; {profileId} is replaced by the marketing profile id, e.g. "
        "https://marketing.example.com/profiles/{profileId}/timeline"
    )

    _field = field_validator("field")(check_field_name)

    @field_validator("url")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{profileId}" not in value:
            raise ValueError(f"{value!r} must contain {{profileId}}, where the profile's id goes")
        rest = value.replace("{profileId}", "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"{value!r}: {{profileId}} is the only placeholder")
        parts = urlsplit(value.replace("{profileId}", "x"))
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ValueError(f"{value!r} is not an https:// URL ({RULE_HTTPS})")
        return value


class ExportSync(_Sync):
    """Export of marketing profiles to one CRM object (SPEC E1-E6, R1)."""

    operation: Literal["export"]
    fields: list[FieldMapping] = Field(min_length=1, description="local attribute -> remote field (SPEC E3)")
    write: Literal["insert_or_update", "upsert", "update"] = Field(
        default="insert_or_update",
        description="insert_or_update: update the CRM record a profile is linked to, insert otherwise; "
        "upsert: by external_id; update: linked profiles only",
    )
    external_id: ExternalIdKey | None = None
    correlation_field: str | None = Field(
        default=None,
        description="CRM text field that receives the marketing profile id (SPEC M5); inserts are checked "
        "against it after an uncertain call, so a record is never created twice",
    )
    lead_or_contact: LeadOrContact | None = None
    owner: OwnerSync | None = None
    timeline_link: TimelineLink | None = Field(
        default=None,
        description="also write a link to the profile's marketing timeline on each record (SPEC M5); the "
        "profile id itself goes to correlation_field",
    )
    watermark: ExportWatermarkSettings = Field(default_factory=ExportWatermarkSettings)
    timezone: str = Field(default="UTC", description="IANA time zone of local date-times (SPEC E3)")
    batch_size: int = Field(
        default=1000, ge=200, le=10_000, description="records per batch (and per ledger entry)"
    )
    bulk_threshold: int = Field(
        default=10_000, ge=1, description="populations of at least this many records use the bulk API"
    )
    bulk_batch_size: int = Field(default=10_000, ge=200, le=100_000, description="records per bulk job")
    max_concurrency: int = Field(
        default=4,
        ge=1,
        le=max(MAX_EXPORT_CONCURRENCY.values()),
        description="batches written at once: at most 25 on Salesforce (its concurrent long requests) and 52 "
        "on Dynamics (Dataverse's concurrent requests per user)",
    )

    _timezone = field_validator("timezone")(_timezone)

    @field_validator("correlation_field")
    @classmethod
    def _correlation(cls, value: str | None) -> str | None:
        return None if value is None else check_field_name(value)

    @model_validator(mode="after")
    def _coherent(self) -> ExportSync:
        problems, locals_seen = _mapping_problems(self.fields, "fields")
        if self.lead_or_contact is not None:
            routing_problems, locals_seen = self.lead_or_contact.problems(
                "lead_or_contact", self.object, locals_seen
            )
            problems += routing_problems
            if self.write != "insert_or_update":
                problems.append("lead_or_contact: works with write: insert_or_update only")
        if self.write == "upsert":
            if self.external_id is None:
                problems.append("external_id: write: upsert needs the external-id field to upsert on (rule E1)")
            elif self.external_id.local != PROFILE_ID and self.external_id.local not in locals_seen:
                problems.append(
                    f"external_id.local: {self.external_id.local!r} is neither profileId nor a mapped attribute"
                )
        elif self.external_id is not None:
            problems.append("external_id: only used by write: upsert")
        if self.write == "insert_or_update" and self.correlation_field is None:
            problems.append(f"correlation_field: required by write: insert_or_update ({RULE_EXACTLY_ONCE})")
        if self.correlation_field is not None and any(
            m.remote.lower() == self.correlation_field.lower() for m in self.fields
        ):
            problems.append(
                f"correlation_field: {self.correlation_field!r} is written by crmsync; do not map it in fields"
            )
        if self.timeline_link is not None and any(
            m.remote.lower() == self.timeline_link.field.lower() for m in self.fields
        ):
            problems.append(
                f"timeline_link.field: {self.timeline_link.field!r} is written by crmsync; do not map it in fields"
            )
        if self.owner is not None and self.owner.local == PROFILE_ID:
            problems.append("owner.local: must be a local attribute naming the owner")
        if self.bulk_batch_size < self.batch_size:
            problems.append("bulk_batch_size: must be at least batch_size")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def watermark_option(self, instance: str) -> str:
        return self.watermark.option or f"LASTEXPORT_{instance}_{self.id}"

    def crm_problems(self, kind: str) -> list[str]:
        """What this export asks that its connection's CRM cannot do, one line per setting."""
        problems: list[str] = []
        bound = MAX_EXPORT_CONCURRENCY.get(kind)
        if bound is not None and self.max_concurrency > bound:
            problems.append(
                f"max_concurrency: {self.max_concurrency} is over {bound}, the most a {kind} connection "
                "takes at once"
            )
        if kind != "dynamics":
            return problems
        if self.lead_or_contact is not None:
            problems.append(LeadOrContact.crm_problem("lead_or_contact", "export"))
        for setting in ("bulk_threshold", "bulk_batch_size"):
            # Compared with the default, not `model_fields_set`: a stored definition has every field set.
            if getattr(self, setting) != type(self).model_fields[setting].default:
                problems.append(
                    f"{setting}: the bulk API is Salesforce-only (rule E2); Dynamics exports use $batch, "
                    "1,000 records a call"
                )
        if self.owner is not None:
            problems.append("owner: owner sync (rule E6) is Salesforce-only in this build")
        return problems


# ------------------------------------------------------------------------------------- deletions
class DeletionWatermarkSettings(_Model):
    """Where the last run of a deletion import stopped: the CRM's `latestDateCovered` (SPEC D1)."""

    option: str | None = Field(default=None, description="option name; default LASTDELETED_<instance>_<sync>")

    _option = field_validator("option")(_option_name)


class DeletionImportSync(_Sync):
    """Deletions made in the CRM, applied to the records an import brought in (SPEC D1, D2)."""

    operation: Literal["import_deleted"]
    mode: Literal["auto", "period", "changes", "compare"] = Field(
        default="auto",
        description="period: the CRM's deleted-records list for a period (Salesforce getDeleted); changes: "
        "the deletions of Dynamics change tracking; compare: read every id of the object and flag the local "
        "records whose id is gone (catches deletions older than the CRM keeps); auto: period on Salesforce, "
        "changes on Dynamics",
    )
    apply: Literal["flag", "remove"] = Field(
        default="flag",
        description="flag: set deletedInCrm and deletedInCrmAt on the local record (default); remove: delete "
        "the local record (SPEC D2)",
    )
    target: Target = Field(default_factory=Target)
    watermark: DeletionWatermarkSettings = Field(default_factory=DeletionWatermarkSettings)
    lookback_days: int = Field(
        default=15,
        ge=1,
        le=30,
        description="without a watermark or a given period, the first run starts this many days back "
        "(Salesforce keeps deletions 15 days at least)",
    )

    def watermark_option(self, instance: str) -> str:
        return self.watermark.option or f"LASTDELETED_{instance}_{self.id}"


class CrmDeleteSync(_Sync):
    """Deletion of records in the CRM, in batches, resumable like an export (SPEC D3)."""

    operation: Literal["delete"]
    flag: str = Field(
        default="deleteInCrm",
        description="local attribute that marks a profile for deletion in the CRM (a run without given ids "
        "deletes the linked CRM records of the profiles flagged since its last run)",
    )
    watermark: ExportWatermarkSettings = Field(default_factory=ExportWatermarkSettings)
    batch_size: int = Field(
        default=1000, ge=200, le=10_000, description="records per batch (and per ledger entry)"
    )
    bulk_threshold: int = Field(
        default=10_000, ge=1, description="populations of at least this many ids use the bulk API (Salesforce)"
    )
    max_concurrency: int = Field(default=4, ge=1, le=25, description="batches deleted at once")

    _flag = field_validator("flag")(check_field_name)

    def watermark_option(self, instance: str) -> str:
        return self.watermark.option or f"LASTDELETE_{instance}_{self.id}"


# ------------------------------------------------------------------------------------- e-mail events
EVENT_TYPES = ("send", "open", "click", "bounce")
MAX_EVENTS_BATCH = {"salesforce": 200, "dynamics": 1000}
DEFAULT_EVENTS_BATCH = {"salesforce": 200, "dynamics": 100}
"""Salesforce: sObject Collections take 200 records a call. Dynamics: parts per `$batch`, measured by
`bench/events_bench.py` (docs/events.md): 100 keeps a call well under Dataverse's 2-minute limit while
costing 10 calls per 1,000 events."""
DEFAULT_EVENT_OBJECT_FIELDS: dict[str, dict[str, str]] = {
    "salesforce": {
        "event_id": "Event_Id__c",
        "type": "Event_Type__c",
        "subject": "Name",
        "campaign_name": "Campaign_Name__c",
        "delivery_name": "Delivery_Name__c",
        "at": "Event_At__c",
        "url": "Clicked_URL__c",
        "mirror_page_url": "Mirror_Page_URL__c",
        "owner": "OwnerId",
    },
    "dynamics": {
        "type": "cr_eventtype",
        "subject": "subject",
        "campaign_name": "cr_campaignname",
        "delivery_name": "cr_deliveryname",
        "at": "actualstart",
        "url": "cr_clickedurl",
        "mirror_page_url": "cr_mirrorpageurl",
        "owner": "ownerid",
    },
}
DEFAULT_REGARDING = {
    "salesforce": {"Contact": "Contact__c", "Lead": "Lead__c"},
    "dynamics": {"contact": "regardingobjectid", "lead": "regardingobjectid"},
}


class EventTypeSwitches(_Model):
    """Which e-mail event types are pushed (SPEC M3); every type is archived whatever its switch."""

    send: bool = True
    open: bool = True
    click: bool = True
    bounce: bool = True

    def on(self) -> set[str]:
        return {name for name in EVENT_TYPES if getattr(self, name)}


class EventFieldNames(_Model):
    """The CRM fields an activity's values go to (SPEC M2); unset ones take the CRM's default
    (Salesforce `Marketing_Event__c` fields, Dataverse `cr_marketingevent` columns: docs/events.md)."""

    event_id: str | None = Field(
        default=None,
        description="Salesforce: the unique External ID field holding the event id (upserts match on it); "
        "Dynamics uses a UUIDv5 of the event id as the activityid instead",
    )
    type: str | None = None
    subject: str | None = None
    campaign_name: str | None = None
    delivery_name: str | None = None
    at: str | None = Field(default=None, description="a date-time field (not a date)")
    url: str | None = Field(default=None, description="the clicked URL, clicks only")
    mirror_page_url: str | None = None
    owner: str | None = None

    @field_validator(
        "event_id", "type", "subject", "campaign_name", "delivery_name", "at", "url", "mirror_page_url", "owner"
    )
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else check_field_name(value)


class EventsSync(_Sync):
    """Marketing e-mail events pushed onto the CRM timeline as activities (SPEC M1-M4).

    Not scheduled: events arrive on the events queue and are pushed as they come. `object` is the
    Salesforce custom object (one record per event, upserted by its External ID) or the Dataverse custom
    activity table (logical name) whose activities regard the contact or lead.
    """

    operation: Literal["events"]
    types: EventTypeSwitches = Field(default_factory=EventTypeSwitches)
    owner: str | None = Field(
        default=None, description="CRM user id owning the activities (Salesforce User Id, Dataverse systemuserid)"
    )
    regarding: list[str] | None = Field(
        default=None,
        description="the CRM objects an event may regard, first linked one wins; default Contact then Lead "
        "(Salesforce), contact then lead (Dynamics)",
    )
    crm_fields: EventFieldNames = Field(default_factory=EventFieldNames)
    regarding_fields: dict[str, str] | None = Field(
        default=None,
        description="Salesforce: the lookup field of the event object per regarded object (default "
        "Contact: Contact__c, Lead: Lead__c); Dynamics binds regardingobjectid_<object>_<table>",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="records per CRM call: at most 200 on Salesforce (default 200), parts per $batch on "
        "Dynamics (default 100, at most 1,000)",
    )
    unlinked_retry_hours: float = Field(
        default=24,
        gt=0,
        le=72,
        description="an event whose profile has no CRM record yet is retried this long after it was sent, "
        "then becomes a reject (the events queue keeps a message 4 days)",
    )
    backfill_days: int = Field(
        default=7, ge=1, le=30, description="switching a type on pushes this many days of it from the archive"
    )

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{15,36}", value):
            raise ValueError(f"{value!r} is not a CRM user id (a Salesforce 15/18-character id or a GUID)")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> EventsSync:
        if self.schedule is not None:
            raise ValueError("schedule: events are pushed as they arrive; an events sync has no schedule")
        return self

    def watermark_option(self, instance: str) -> str:
        """Events keep no watermark; the name is only reserved so no other sync takes it."""
        return f"EVENTS_{instance}_{self.id}"

    def field_names(self, kind: str) -> dict[str, str]:
        """Event attribute -> CRM field, the CRM's defaults overridden by `fields`."""
        names = dict(DEFAULT_EVENT_OBJECT_FIELDS[kind])
        names.update({k: v for k, v in self.crm_fields.model_dump().items() if v is not None})
        return names

    def regarding_objects(self, kind: str) -> dict[str, str]:
        """Regarded CRM object -> the field (Salesforce) or lookup (Dynamics) that binds it, in order."""
        defaults = DEFAULT_REGARDING[kind]
        objects = self.regarding or list(defaults)
        given = self.regarding_fields or {}
        return {name: given.get(name, defaults.get(name, "regardingobjectid")) for name in objects}

    def records_per_call(self, kind: str) -> int:
        return self.batch_size or DEFAULT_EVENTS_BATCH[kind]

    def crm_problems(self, kind: str) -> list[str]:
        problems: list[str] = []
        if self.batch_size is not None and self.batch_size > MAX_EVENTS_BATCH[kind]:
            problems.append(
                f"batch_size: {self.batch_size} is over {MAX_EVENTS_BATCH[kind]}, the most a {kind} call takes "
                "(Salesforce sObject Collections: 200; Dataverse $batch: 1,000 parts)"
            )
        if kind == "dynamics" and self.crm_fields.event_id is not None:
            problems.append(
                "crm_fields.event_id: Dynamics activities are keyed by a UUIDv5 of the event id (activityid)"
            )
        if kind == "salesforce" and self.regarding_fields is not None:
            missing = set(self.regarding_objects(kind)) - set(self.regarding_fields) - set(DEFAULT_REGARDING[kind])
            problems += [f"regarding_fields: no lookup field named for {name}" for name in sorted(missing)]
        return problems


# ------------------------------------------------------------------------------------- enumerations
class EnumerationSpec(_Model):
    """One enumeration the marketing side keeps in step with a CRM picklist or option set (SPEC S2)."""

    name: str = Field(description="the local enumeration's name (what attributes and conversions refer to)")
    field: str | None = Field(
        default=None, description="the picklist / option set / Boolean field of the sync's object"
    )
    option_set: str | None = Field(
        default=None, description="Dataverse: a global option set by name, instead of a field"
    )
    record_type: str | None = Field(
        default=None,
        description="Salesforce: only the values this record type offers (its id, 012...), read from the UI API",
    )
    replace: bool = Field(
        default=False,
        description="true: every local value is replaced by the CRM's (values the CRM no longer has are "
        "removed); false: values are added and updated, never removed",
    )

    _name = field_validator("name")(lambda v: FieldMapping._enumeration_name(v))

    @field_validator("field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        return None if value is None else check_field_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> EnumerationSpec:
        if (self.field is None) == (self.option_set is None):
            raise ValueError("an enumeration names either 'field' (of the sync's object) or 'option_set'")
        if self.record_type is not None and self.field is None:
            raise ValueError("record_type narrows a field's values; name the field")
        return self


class EnumerationSync(_Sync):
    """Picklist / option-set values into the Enumerations table (SPEC S2)."""

    operation: Literal["enumerations"]
    enumerations: list[EnumerationSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> EnumerationSync:
        seen: dict[str, int] = {}
        problems = []
        for index, spec in enumerate(self.enumerations):
            if spec.name in seen:
                problems.append(
                    f"enumerations[{index}].name: {spec.name!r} is already defined by enumerations[{seen[spec.name]}]"
                )
            seen.setdefault(spec.name, index)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def watermark_option(self, instance: str) -> str:
        """Enumerations keep no watermark; a name no other sync uses."""
        return f"ENUMERATIONS_{instance}_{self.id}"


# ------------------------------------------------------------------------------------- initial transfer
TRANSFER_THRESHOLD = 500_000


class InitialTransferSync(_Sync):
    """The first import of a large object by files (SPEC T1): count the object; at or above `threshold`
    extract it to S3 in parts (Salesforce Bulk API 2.0 query, Dataverse change tracking) and load the parts
    side by side, else run the import sync's ordinary first import. Either way the import sync's mapping,
    conversions, reconciliation and rejects apply, and its watermark (and delta link) is set, so its
    incremental runs take over with nothing skipped."""

    operation: Literal["initial_transfer"]
    import_sync: str = Field(
        description="the import sync whose rules the transfer loads with and whose watermark it sets; same "
        "connection and object"
    )
    threshold: int = Field(
        default=TRANSFER_THRESHOLD,
        ge=1,
        description="records from which the object is transferred by files; below it the import runs as usual",
    )
    part_records: int = Field(
        default=50_000,
        ge=10,
        le=1_000_000,
        description="records per part file: one Bulk API results page (maxRecords), or Dataverse pages of 5,000",
    )
    max_concurrency: int = Field(default=4, ge=1, le=40, description="parts loaded side by side")

    _import = field_validator("import_sync")(_identifier)

    def watermark_option(self, instance: str) -> str:
        """A transfer keeps no watermark of its own: it sets its import sync's. A name no other sync uses."""
        return f"TRANSFER_{instance}_{self.id}"


# ------------------------------------------------------------------------------------- two-way
OptOutAttribute = Literal[
    "denyList",
    "denyListEmail",
    "denyListFax",
    "denyListMobile",
    "denyListPhone",
    "denyListPostalMail",
    "denyListPushnotification",
    "ccpaOptOut",
]
# The CRMs' standard do-not-contact checkboxes (true = do not contact). Dynamics `donotsendmm` is labelled
# "Send Marketing Materials", yet true means do NOT send.
OPT_OUT_FIELDS = {
    "salesforce": ("HasOptedOutOfEmail", "HasOptedOutOfFax", "DoNotCall"),
    "dynamics": ("donotemail", "donotbulkemail", "donotphone", "donotfax", "donotpostalmail", "donotsendmm"),
}
RULE_BOOLEAN = "rule O2: only boolean (checkbox / two-option) fields may be mapped"
RULE_OWNED = "rule O3: a field a two-way sync owns is written by nobody else"


def _custom_field(kind: str, name: str) -> bool:
    """A custom field, whose type only the CRM knows (checked against its describe when a run starts)."""
    return name.endswith("__c") if kind == "salesforce" else "_" in name


class OptOutSettings(_Model):
    """Which way opt-outs move and onto which CRM fields (SPEC O1, O2)."""

    direction: Literal["both", "crm_to_marketing", "marketing_to_crm", "disabled"] = Field(
        default="both",
        description="both: the latest change wins; crm_to_marketing / marketing_to_crm: one way only; "
        "disabled: nothing moves",
    )
    fields: dict[OptOutAttribute, str] = Field(
        min_length=1,
        description="marketing opt-out attribute -> CRM boolean field, e.g. denyListEmail: HasOptedOutOfEmail",
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for local, remote in value.items():
            check_field_name(remote)
            if remote.lower() in seen:
                raise ValueError(f"{remote!r} is mapped twice ({seen[remote.lower()]} and {local})")
            seen[remote.lower()] = local
        return value


class TwoWayField(FieldMapping):
    """One field of a two-way sync (SPEC B1): a mapping like an import's - its conversion and value
    replacements apply going in, their reverse going out, as an export writes it - and which way it moves."""

    direction: Literal["both", "crm_to_marketing", "marketing_to_crm"] = Field(
        default="both", description="both, or one way only (the other side's changes are ignored)"
    )
    priority: Literal["crm", "marketing", "latest"] | None = Field(
        default=None,
        description="direction both only: the side that wins when both sides changed the field to different "
        "values; latest (the default): the later change",
    )
    update_blank_values: bool = Field(
        default=False,
        description="direction both only: the side without priority fills the field when it is empty (null, "
        "empty text, empty list) on the winning side",
    )

    @model_validator(mode="after")
    def _two_way_settings(self) -> TwoWayField:
        if self.direction != "both":
            if self.priority is not None:
                raise ValueError(
                    f"priority: {self.local} moves {self.direction} only; a priority decides between two sides, "
                    "so it needs direction: both"
                )
            if self.update_blank_values:
                raise ValueError(
                    f"update_blank_values: {self.local} moves {self.direction} only; filling blanks from the other "
                    "side needs direction: both"
                )
        if self.label:
            raise ValueError("label: a display label cannot be written back to the CRM; map the stored value")
        return self

    @property
    def winner(self) -> Literal["crm", "marketing", "latest"]:
        return self.priority or "latest"


class TwoWayCreate(_Model):
    """Records created on one side since the last run, created on the other too (SPEC B2). Off by default:
    an opt-out sync keeps to the records an import or an export linked."""

    in_marketing: bool = Field(
        default=False,
        description="a new CRM record becomes a profile, reconciled as an import reconciles it: CRM id, then "
        "reconciliation.key (a profile with the same key is linked, not duplicated)",
    )
    in_crm: bool = Field(
        default=False,
        description="a new or changed profile linked to no record of the object is inserted in the CRM - "
        "unless a CRM record has its reconciliation.key, which it is linked to instead",
    )
    external_id: ExternalIdKey | None = Field(
        default=None,
        description="in_crm only: upsert by this CRM external-id field holding the profile id (or `local`) "
        "instead of inserting (SPEC E1): the CRM matches it, so a record is never created twice",
    )

    lead_or_contact: LeadOrContact | None = Field(
        default=None,
        description="in_crm only, object Lead, Salesforce: the export's routing (SPEC E5) - a profile the CRM "
        "knows by its e-mail address as a Contact is linked to that Contact (and the Contact updated with "
        "contact_fields), one known as a Lead is linked to that Lead, any other becomes a Lead",
    )

    @model_validator(mode="after")
    def _upsert_creates(self) -> TwoWayCreate:
        if self.external_id is not None and not self.in_crm:
            raise ValueError("external_id: the upsert key of records created in the CRM; set in_crm: true")
        if self.lead_or_contact is not None:
            if not self.in_crm:
                raise ValueError("lead_or_contact: routes the records created in the CRM; set in_crm: true")
            if self.external_id is not None:
                raise ValueError(
                    "lead_or_contact: finds people by e-mail and inserts the others, as the export's write: "
                    "insert_or_update; it does not work with external_id"
                )
        return self


class TwoWaySync(_Sync):
    """Two-way sync of one CRM object's records: what changed on either side since the last run, decided per
    field (SPEC O1-O3 for opt-outs; B1-B2 for any field of any object)."""

    operation: Literal["two_way"]
    opt_outs: OptOutSettings | None = Field(
        default=None, description="opt-out flags: the latest change wins, a tie opts out (SPEC O1-O3)"
    )
    fields: list[TwoWayField] = Field(
        default_factory=list,
        description="any field: direction, priority, update_blank_values, conversions and replacements (SPEC B1)",
    )
    create: TwoWayCreate = Field(default_factory=TwoWayCreate)
    reconciliation: Reconciliation = Field(
        default_factory=Reconciliation,
        description="how a new record finds its counterpart on the other side: the CRM id, then this key",
    )
    target: Target = Field(
        default_factory=Target,
        description="the marketing side: profiles, or a custom object's resource (table) of rows keyed by CRM id",
    )
    tolerance_seconds: int = Field(
        default=2, ge=0, le=300, description="two changes this close (whole seconds) are a tie: opted out wins"
    )
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    batch_size: int = Field(default=200, ge=1, le=1000, description="changed records per batch (and ledger entry)")
    max_concurrency: int = Field(default=4, ge=1, le=25, description="batches written at once")

    @model_validator(mode="after")
    def _window_field(self) -> TwoWaySync:
        problems: list[str] = []
        if self.watermark.mode == "change_tracking":
            problems.append("watermark.mode: a two-way sync reads a window on the watermark field")
        if self.opt_outs is None and not self.fields:
            problems.append("fields: a two-way sync needs opt_outs, fields, or both")
        field_problems, locals_seen = _mapping_problems(list(self.fields), "fields")
        problems += field_problems
        key = self.reconciliation.key
        if key is not None and key not in locals_seen:
            problems.append(
                f"reconciliation.key: {key!r} is not a local attribute of fields "
                f"(mapped: {', '.join(sorted(locals_seen)) or 'none'})"
            )
        if (self.create.in_crm or self.create.in_marketing) and not self.fields:
            problems.append("create: records are created from their fields; map some in fields")
        if self.target.kind == "resource":
            if self.opt_outs is not None:
                problems.append("opt_outs: opt-outs are a profile's; a resource target syncs fields only")
            if key is not None:
                problems.append("reconciliation.key: resource rows are matched on their CRM id only")
            if self.create.in_crm:
                problems.append(
                    "create.in_crm: resource rows are keyed by CRM id, so they are created from CRM records only"
                )
        elif self.create.in_crm and key is None:
            problems.append(
                "create.in_crm: needs reconciliation.key, the attribute that finds a record the CRM already has "
                "(so none is inserted twice)"
            )
        routing = self.create.lead_or_contact
        if routing is not None:
            problems += routing.problems("create.lead_or_contact", self.object, dict(locals_seen))[0]
            if key is not None and routing.match != key:
                problems.append(
                    f"create.lead_or_contact.match: {routing.match!r} must be reconciliation.key ({key!r}): the "
                    "e-mail address finds the Lead or Contact the CRM already has, in place of the key"
                )
        if self.opt_outs is not None:
            for index, mapping in enumerate(self.fields):
                if mapping.local in self.opt_outs.fields:
                    problems.append(f"fields[{index}].local: {mapping.local!r} is an opt-out of opt_outs.fields")
                if mapping.remote.lower() in {r.lower() for r in self.opt_outs.fields.values()}:
                    problems.append(f"fields[{index}].remote: {mapping.remote!r} is mapped by opt_outs.fields")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def direction(self) -> str:
        """The run's overall direction: the opt-outs' when they are the only mapping; both otherwise."""
        if self.opt_outs is not None and not self.fields:
            return self.opt_outs.direction
        return "both"

    def watermark_option(self, instance: str) -> str:
        return self.watermark.option or f"LASTTWOWAY_{instance}_{self.id}"

    def mapped(self) -> dict[str, str]:
        """Local attribute -> CRM field, opt-outs first, for every field this sync reads and writes."""
        pairs: dict[str, str] = {k: v for k, v in (self.opt_outs.fields if self.opt_outs else {}).items()}
        return {**pairs, **{m.local: m.remote for m in self.fields}}

    def owned_fields(self) -> dict[str, str]:
        """CRM field (lower case) -> local attribute, for every field this sync writes."""
        return {remote.lower(): local for local, remote in self.mapped().items()}

    def crm_problems(self, kind: str) -> list[str]:
        known = OPT_OUT_FIELDS.get(kind, ())
        lowered = {name.lower(): name for name in known}
        problems = []
        if kind == "dynamics" and self.create.lead_or_contact is not None:
            problems.append(LeadOrContact.crm_problem("create.lead_or_contact", "two-way sync"))
        for local, remote in (self.opt_outs.fields if self.opt_outs is not None else {}).items():
            if remote.lower() in lowered or _custom_field(kind, remote):
                continue
            problems.append(
                f"opt_outs.fields.{local}: {remote!r} is not a {kind} boolean opt-out field ({RULE_BOOLEAN}: "
                f"{', '.join(known)}, or a custom checkbox)"
            )
        return problems


SyncDefinition = Annotated[
    ImportSync
    | ExportSync
    | DeletionImportSync
    | CrmDeleteSync
    | EventsSync
    | EnumerationSync
    | TwoWaySync
    | InitialTransferSync,
    Field(discriminator="operation"),
]
SYNC_OPERATIONS: tuple[str, ...] = tuple(
    get_args(model.model_fields["operation"].annotation)[0]
    for model in (
        ImportSync,
        ExportSync,
        DeletionImportSync,
        CrmDeleteSync,
        EventsSync,
        EnumerationSync,
        TwoWaySync,
        InitialTransferSync,
    )
)
CONNECTION_KINDS: tuple[str, ...] = tuple(
    get_args(model.model_fields["kind"].annotation)[0] for model in (SalesforceConnection, DynamicsConnection)
)


# ------------------------------------------------------------------------------------- marketing attributes
BUILT_IN_ATTRIBUTES: dict[str, AttributeType] = {
    "email": AttributeType.STRING,
    "denyListEmail": AttributeType.BOOLEAN,
    "denyListPhone": AttributeType.BOOLEAN,
    "denyListSms": AttributeType.BOOLEAN,
    "denyListPost": AttributeType.BOOLEAN,
    "ccpaOptOut": AttributeType.BOOLEAN,
    "deleteInCrm": AttributeType.BOOLEAN,
}
"""Profile attributes crmsync itself knows the type of (SPEC S3): declared, whether written or not."""


class AttributeDeclaration(_Model):
    """A marketing attribute and its type, declared once for every sync (SPEC S3)."""

    name: str
    type: AttributeType
    enumeration: str | None = Field(default=None, description="for type enumeration: the enumeration's name")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return FieldMapping._local_name(value)

    @model_validator(mode="after")
    def _enumeration_named(self) -> AttributeDeclaration:
        if (self.type is AttributeType.ENUMERATION) != (self.enumeration is not None):
            raise ValueError(
                "'enumeration' names the enumeration of an attribute of type enumeration, and only then"
            )
        return self


class SchemaSettings(_Model):
    """Where `crmsync schema pull` saves what the CRM described, for offline validation (SPEC S1, S3)."""

    snapshots: str = Field(
        default="schema",
        description="folder of schema snapshots, relative to the configuration file: <connection>/<object>.json",
    )


class CrmsyncConfig(_Model):
    """A whole configuration file."""

    version: Literal[1] = Field(description="the file format's version; 1")
    instance: str = Field(default="crmsync", description="this marketing instance's internal name")
    connections: list[Connection] = Field(description="the CRMs syncs read from and write to")
    syncs: list[SyncDefinition] = Field(
        description="every sync of the instance; `config apply` removes the applied syncs this list no longer has"
    )
    attributes: list[AttributeDeclaration] = Field(
        default_factory=list,
        description="the marketing side's attributes and their types (SPEC S3); email, denyList*, ccpaOptOut "
        "and deleteInCrm are predefined. A mapping onto a declared attribute takes its type",
    )
    schema_settings: SchemaSettings = Field(default_factory=SchemaSettings, alias="schema")

    _instance = field_validator("instance")(_identifier)

    @model_validator(mode="before")
    @classmethod
    def _declared_types(cls, raw: Any) -> Any:
        """A field mapping onto a declared attribute takes the attribute's type unless it says its own."""
        if not isinstance(raw, dict) or not isinstance(raw.get("attributes"), list):
            return raw
        declared: dict[str, str] = {}
        for item in raw["attributes"]:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("type"), str):
                declared[item["name"]] = "string" if item["type"] == "enumeration" else item["type"]
        if not declared or not isinstance(raw.get("syncs"), list):
            return raw
        syncs = []
        for sync in raw["syncs"]:
            if (
                isinstance(sync, dict)
                and sync.get("operation") == "import"
                and isinstance(sync.get("fields"), list)
            ):
                sync = {
                    **sync,
                    "fields": [
                        {**m, "type": declared[m["local"]]}
                        if isinstance(m, dict)
                        and m.get("local") in declared
                        and "type" not in m
                        and m.get("conversion") != "raw"
                        and not m.get("replace")
                        else m
                        for m in sync["fields"]
                    ],
                }
            syncs.append(sync)
        return {**raw, "syncs": syncs}

    def attribute_types(self) -> dict[str, AttributeDeclaration]:
        """Declared attributes, the built-in ones included."""
        types = {name: AttributeDeclaration(name=name, type=kind) for name, kind in BUILT_IN_ATTRIBUTES.items()}
        types.update({a.name: a for a in self.attributes})
        return types

    @model_validator(mode="after")
    def _references(self) -> CrmsyncConfig:
        problems = []
        names: dict[str, int] = {}
        for index, connection in enumerate(self.connections):
            if connection.name in names:
                problems.append(f"connections[{index}].name: {connection.name!r} is defined twice")
            names.setdefault(connection.name, index)
        ids: dict[str, int] = {}
        options: dict[str, str] = {}
        for index, sync in enumerate(self.syncs):
            where = f"syncs[{index}] ({sync.id})"
            if sync.id in ids:
                problems.append(f"{where}.id: {sync.id!r} is defined twice")
            ids.setdefault(sync.id, index)
            if sync.connection not in names:
                problems.append(
                    f"{where}.connection: no connection named {sync.connection!r} "
                    f"(defined: {', '.join(sorted(names)) or 'none'})"
                )
            option = sync.watermark_option(self.instance)
            if option in options:
                problems.append(f"{where}.watermark.option: {option!r} is also used by sync {options[option]!r}")
            options.setdefault(option, sync.id)
            kind = next((c.kind for c in self.connections if c.name == sync.connection), None)
            if kind is not None and isinstance(sync, ExportSync | EventsSync | TwoWaySync):
                problems += [f"{where}.{problem}" for problem in sync.crm_problems(kind)]
            if (
                kind == "salesforce"
                and isinstance(sync, ImportSync)
                and (sync.page_size or 0) > SALESFORCE_MAX_PAGE
            ):
                problems.append(
                    f"{where}.page_size: {sync.page_size} is over {SALESFORCE_MAX_PAGE}, the most records a "
                    "Salesforce query page returns"
                )
            if kind == "salesforce":
                problems += [
                    f"{where}.fields[{i}].label: labels (formatted values) are read from Dynamics; Salesforce "
                    "picklists arrive as their values"
                    for i, mapping in enumerate(getattr(sync, "fields", ()))
                    if mapping.label
                ]
        attribute_names: dict[str, int] = {}
        for index, attribute in enumerate(self.attributes):
            if attribute.name in attribute_names:
                problems.append(f"attributes[{index}].name: {attribute.name!r} is declared twice")
            attribute_names.setdefault(attribute.name, index)
            if attribute.name in BUILT_IN_ATTRIBUTES and attribute.type is not BUILT_IN_ATTRIBUTES[attribute.name]:
                problems.append(
                    f"attributes[{index}].type: {attribute.name} is built in as {BUILT_IN_ATTRIBUTES[attribute.name].value}"
                )
        problems += self._owned_field_problems()
        problems += self._transfer_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _transfer_problems(self) -> list[str]:
        """An initial transfer names an import sync of its own connection and object."""
        problems = []
        imports = {sync.id: sync for sync in self.syncs if isinstance(sync, ImportSync)}
        for index, sync in enumerate(self.syncs):
            if not isinstance(sync, InitialTransferSync):
                continue
            target = imports.get(sync.import_sync)
            where = f"syncs[{index}] ({sync.id}).import_sync"
            if target is None:
                problems.append(
                    f"{where}: no import sync {sync.import_sync!r} (import syncs: {', '.join(sorted(imports)) or 'none'})"
                )
            elif target.connection != sync.connection or target.object.lower() != sync.object.lower():
                problems.append(
                    f"{where}: {target.id!r} reads {target.object} on {target.connection}; the transfer reads "
                    f"{sync.object} on {sync.connection} (they must be the same)"
                )
        return problems

    def _owned_field_problems(self) -> list[str]:
        """A field a two-way sync owns may not be mapped by an import or export of its connection and object."""
        problems = []
        for owner in self.syncs:
            if not isinstance(owner, TwoWaySync):
                continue
            owned = owner.owned_fields()
            for index, other in enumerate(self.syncs):
                if not isinstance(other, ImportSync | ExportSync):
                    continue
                if other.connection != owner.connection or other.object.lower() != owner.object.lower():
                    continue
                for position, mapping in enumerate(other.fields):
                    if mapping.remote.lower() in owned:
                        problems.append(
                            f"syncs[{index}] ({other.id}).fields[{position}].remote: {mapping.remote!r} is owned "
                            f"by the two-way sync {owner.id!r} ({RULE_OWNED})"
                        )
        return problems

    def connection(self, name: str) -> SalesforceConnection | DynamicsConnection:
        for connection in self.connections:
            if connection.name == name:
                return connection
        raise KeyError(name)

    def sync(self, sync_id: str) -> SyncDefinition:
        for sync in self.syncs:
            if sync.id == sync_id:
                return sync
        raise KeyError(sync_id)


# ------------------------------------------------------------------------------------- loading
def interpolate_environment(
    raw: Any, environ: dict[str, str] | None = None, path: str = ""
) -> tuple[Any, list[str]]:
    """Replace `${VAR}` and `${VAR:-default}` in string values; unset variables are problems."""
    environ = dict(os.environ) if environ is None else environ
    problems: list[str] = []

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            return {key: walk(value, f"{where}.{key}" if where else str(key)) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value, f"{where}[{index}]") for index, value in enumerate(node)]
        if isinstance(node, str):

            def substitute(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in environ:
                    return environ[name]
                if default is not None:
                    return default
                problems.append(f"{where}: environment variable {name} is not set")
                return match.group(0)

            return ENV_REFERENCE.sub(substitute, node)
        return node

    return walk(raw, path), problems


def _location(loc: tuple[int | str, ...], raw: Any) -> str:
    """`syncs[0] (sf-contacts).filter.all[1]` from a pydantic error location."""
    out = ""
    node = raw
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if index == 1 and loc[0] == "syncs" and isinstance(node, list) and part < len(node):
                entry = node[part]
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    out += f" ({entry['id']})"
        elif (
            (part in ("all", "any", "not", "condition") and index > 0 and loc[index - 1] == part)
            or part in ("condition",)
            or (isinstance(part, str) and part.startswith("function-"))
        ):
            continue
        else:
            if part in ("salesforce", "dynamics") and loc[0] == "connections":
                continue
            if loc[0] == "syncs" and index == 2 and part in SYNC_OPERATIONS:
                continue
            out += f".{part}" if out else str(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return out


def format_validation_error(error: ValidationError, raw: Any) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        where = _location(tuple(item["loc"]), raw)
        message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting (check its spelling)"
        elif item["type"] == "missing":
            message = "required setting is missing"
        elif item["type"] == "union_tag_invalid":
            ctx = item.get("ctx") or {}
            message = (
                f"{ctx.get('discriminator', 'kind').strip(chr(39))}: {ctx.get('tag')!r} is not one of "
                f"{ctx.get('expected_tags')}"
            )
        elif item["type"] == "union_tag_not_found":
            # No `operation` (or `kind`) at all, often a misspelled key: say which values it takes.
            tag = str((item.get("ctx") or {}).get("discriminator", "kind")).strip("'")
            allowed = ", ".join(
                repr(name) for name in (SYNC_OPERATIONS if tag == "operation" else CONNECTION_KINDS)
            )
            node: Any = raw
            for part in item["loc"]:
                found = (isinstance(node, dict) and part in node) or (
                    isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
                )
                node = node[part] if found else None
            keys = [str(k) for k in node] if isinstance(node, dict) else []
            near = difflib.get_close_matches(tag, keys, n=1, cutoff=0.75)
            hint = f" ({near[0]!r} is not a setting: is it a misspelling of {tag!r}?)" if near else ""
            message = f"{tag}: required setting is missing{hint}; use one of {allowed}"
        for line in message.split("\n"):
            sub, sep, rest = line.partition(": ")
            if sep and re.match(r"^[A-Za-z_]+(\[\d+\])?(\.[A-Za-z_]+(\[\d+\])?)*$", sub):
                head = sub.split("[", 1)[0].split(".", 1)[0]
                base = where.removesuffix(f".{head}") if where.endswith(f".{head}") else where
                problems.append(f"{base}.{sub}: {rest}" if base else f"{sub}: {rest}")
            else:
                problems.append(f"{where}: {line}" if where else line)
    return problems


def parse_config(raw: Any, *, environ: dict[str, str] | None = None) -> CrmsyncConfig:
    """Validate an already-parsed YAML/JSON document."""
    if raw is None:
        raise ConfigurationError(
            "the configuration is empty; it needs 'version: 1', 'connections' and 'syncs' (see examples/syncs.yaml)"
        )
    if not isinstance(raw, dict):
        raise ConfigurationError("the configuration must be a mapping with 'version', 'connections' and 'syncs'")
    resolved, problems = interpolate_environment(raw, environ)
    if problems:
        raise ConfigurationError(problems)
    try:
        return CrmsyncConfig.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigurationError(format_validation_error(exc, resolved)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML 1.2 forbids it; PyYAML
    silently keeps the last one, so `object: Contact` then `object: User` would sync Users)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            continue  # unhashable; construct_mapping refuses it with its own message
        if key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given on line {first.line + 1}); each setting is given once",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(text: str, *, source: str = "<config>", environ: dict[str, str] | None = None) -> CrmsyncConfig:
    """Parse and validate YAML text; every problem is one line of the raised `ConfigurationError`."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(f"{where}: invalid YAML: {problem}") from None
    return parse_config(raw, environ=environ)


def load_config_file(data: bytes, *, source: str, environ: dict[str, str] | None = None) -> CrmsyncConfig:
    """`load_config` on a file's bytes: a file that is not UTF-8 is a problem naming its line."""
    return load_config(decode_text(data, source), source=source, environ=environ)


def config_json_schema() -> dict[str, Any]:
    schema = CrmsyncConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "crmsync configuration"
    return schema


__all__ = [
    "AllOf",
    "AnyOf",
    "AttributeDeclaration",
    "Condition",
    "ConfigurationError",
    "Connection",
    "CrmsyncConfig",
    "DynamicsConnection",
    "EnumerationSync",
    "EventsSync",
    "ExportSync",
    "FieldMapping",
    "ImportSync",
    "InitialTransferSync",
    "NotOf",
    "SalesforceConnection",
    "SyncDefinition",
    "TwoWaySync",
    "load_config",
    "load_config_file",
    "parse_config",
]
