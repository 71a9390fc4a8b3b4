"""Records as they travel between the CRM and the marketing side, and rejects (SPEC R1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    """`errorSymbol` values crmsync produces itself (CRM refusals keep the CRM's own symbol)."""

    INVALID_DATE = "INVALID_DATE"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    STRING_TOO_LONG = "STRING_TOO_LONG"
    INVALID_ID = "INVALID_ID"
    NOT_FOUND = "NOT_FOUND"
    NOT_LINKED = "NOT_LINKED"
    MULTIPLE_MATCHES = "MULTIPLE_MATCHES"
    DUPLICATE_KEY = "DUPLICATE_KEY"
    MISSING_ID = "MISSING_ID"
    MISSING_WATERMARK = "MISSING_WATERMARK"
    RECORD_TOO_LARGE = "RECORD_TOO_LARGE"
    RECORD_NOT_STORED = "RECORD_NOT_STORED"
    MALFORMED_ROW = "MALFORMED_ROW"
    """A row of a transfer file that cannot be read as a record (SPEC T2)."""


@dataclass(frozen=True)
class Reject:
    """A record refused by the CRM or by the mapping, kept with why and with the record itself."""

    error_symbol: str
    error_message: str
    record: dict[str, Any]
    crm_id: str | None = None
    fields: tuple[str, ...] = ()
    profile_id: str | None = None
    reference: str | None = None
    """The caller's own name for what was refused when it has no CRM id (an e-mail event's message)."""

    def as_message(self, *, sync_id: str, run_id: str, operation: str, direction: str) -> dict[str, Any]:
        message = {
            "syncId": sync_id,
            "runId": run_id,
            "operation": operation,
            "direction": direction,
            "crmId": self.crm_id,
            "errorSymbol": self.error_symbol,
            "errorMessage": self.error_message,
            "fields": list(self.fields),
            "record": self.record,
        }
        if self.profile_id is not None:
            message["profileId"] = self.profile_id
        return message


class RecordRejected(Exception):
    """Raised while mapping one record; becomes a `Reject`, the rest of the page goes on."""

    def __init__(self, code: RejectCode, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


@dataclass
class LocalRecord:
    """A CRM record mapped onto local attributes, ready to be reconciled."""

    crm_id: str
    modified_at: datetime
    attributes: dict[str, Any]
    source: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class CrmDeletion:
    """A record the CRM reports deleted, and when it was deleted or seen deleted (SPEC D1, D2)."""

    crm_id: str
    deleted_at: datetime


@dataclass
class DeletionResult:
    """What applying deletions did: flagged now, flagged before, or never imported (counted, not an error)."""

    marked: int = 0
    already: int = 0
    unknown: int = 0
