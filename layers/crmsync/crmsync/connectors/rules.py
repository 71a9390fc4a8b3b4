"""What differs between the CRMs, as data: the services read a CRM's rules instead of testing its kind.

Each adapter carries its row (`HttpConnector.rules`). A service that holds only a connection's kind - an
export plan resolved from its state, the operator starting a run - looks the row up with `crm_rules`.
A new CRM is a new adapter and its row here; no service changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import CRM_MAX_PAGE_SIZE, DEFAULT_WATERMARK_FIELD
from ..errors import ConfigurationError


@dataclass(frozen=True)
class CrmVocabulary:
    """The CRM-specific names lead-or-contact routing and owner sync rely on."""

    lead: str
    contact: str
    email_field: str
    lead_converted_field: str | None
    owner_field: str
    user_object: str
    user_email_field: str
    user_id_field: str
    user_active_field: str


@dataclass(frozen=True)
class CrmRules:
    """One CRM's rules, as the services need them."""

    kind: str
    name: str
    """The CRM as logs and error messages name it."""
    watermark_field: str
    """What an import's window reads when the sync names no field: the record's system-set last change."""
    max_page_size: int
    """The most records one page of a query returns."""
    bulk_api: bool
    """An asynchronous bulk API (Salesforce Bulk API 2.0): a large export or deletion sends a job per batch;
    without one every population goes through the batch API."""
    exports_lookups: bool
    """An export can write a lookup field (Dataverse binds them with `@odata.bind`, which exports do not
    write in this build)."""
    record_types: bool
    """Objects have record types, with picklist values per record type."""
    option_sets: bool
    """Global option sets: choices shared by columns of any table."""
    deleted_records_list: bool
    """The CRM lists the records deleted in a period (Salesforce getDeleted), so a deletion import in mode
    auto reads that list: the adapter is a `DeletedRecordsConnector`."""
    vocabulary: CrmVocabulary | None = None
    """The names lead-or-contact routing and owner sync use; None where exports have neither."""


SALESFORCE = CrmRules(
    kind="salesforce",
    name="Salesforce",
    watermark_field=DEFAULT_WATERMARK_FIELD["salesforce"],
    max_page_size=CRM_MAX_PAGE_SIZE["salesforce"],
    bulk_api=True,
    exports_lookups=True,
    record_types=True,
    option_sets=False,
    deleted_records_list=True,
    vocabulary=CrmVocabulary(
        lead="Lead",
        contact="Contact",
        email_field="Email",
        lead_converted_field="IsConverted",
        owner_field="OwnerId",
        user_object="User",
        user_email_field="Email",
        user_id_field="Id",
        user_active_field="IsActive",
    ),
)
DYNAMICS = CrmRules(
    kind="dynamics",
    name="Dynamics",
    watermark_field=DEFAULT_WATERMARK_FIELD["dynamics"],
    max_page_size=CRM_MAX_PAGE_SIZE["dynamics"],
    bulk_api=False,
    exports_lookups=False,
    record_types=False,
    option_sets=True,
    deleted_records_list=False,
)
CRM_RULES = {rules.kind: rules for rules in (SALESFORCE, DYNAMICS)}


def crm_rules(kind: str) -> CrmRules:
    """The rules of the CRM a connection of `kind` reaches."""
    try:
        return CRM_RULES[kind]
    except KeyError:
        raise ConfigurationError(f"{kind!r} is not a CRM this build connects to") from None


__all__ = ["CRM_RULES", "DYNAMICS", "SALESFORCE", "CrmRules", "CrmVocabulary", "crm_rules"]
