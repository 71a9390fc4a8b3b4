"""sObject Collections: create, update, upsert by external id and delete, up to 200 records a call,
with one SaveResult per record (`allOrNone=false` by default, so good records are kept).

One method is one API call of at most `MAX_RECORDS` records. Creating and deleting are
not idempotent, so a cut connection on them raises `CrmOutcomeUnknown` instead of being repeated;
updates and upserts are repeated by the retry policy like reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import CrmRequestRejected
from ..port import WriteError
from .soql import identifier

if TYPE_CHECKING:
    from .connector import SalesforceConnector

MAX_RECORDS = 200


@dataclass(frozen=True)
class SaveResult:
    """One record's outcome; `created` is only meaningful for an upsert."""

    id: str | None
    success: bool
    created: bool
    errors: tuple[WriteError, ...]


def _save_results(body: Any, expected: int) -> list[SaveResult]:
    if not isinstance(body, list) or len(body) != expected:
        raise CrmRequestRejected(
            f"Salesforce answered {len(body) if isinstance(body, list) else 'no'} results for {expected} records"
        )
    return [
        SaveResult(
            id=item.get("id"),
            success=bool(item.get("success")),
            created=bool(item.get("created", False)),
            errors=tuple(
                WriteError(
                    code=str(error.get("statusCode", "UNKNOWN_EXCEPTION")),
                    message=str(error.get("message", "")),
                    fields=tuple(error.get("fields") or ()),
                )
                for error in item.get("errors") or ()
            ),
        )
        for item in body
    ]


def _typed(sobject: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"attributes": {"type": sobject}, **record} for record in records]


def _check_size(count: int) -> None:
    if count > MAX_RECORDS:
        raise ValueError(f"sObject Collections take at most {MAX_RECORDS} records a call, not {count}")


class SObjectCollections:
    def __init__(self, connector: SalesforceConnector) -> None:
        self.connector = connector

    def create(
        self, sobject: str, records: Sequence[dict[str, Any]], *, all_or_none: bool = False
    ) -> list[SaveResult]:
        """`POST composite/sobjects`: new records, results in the order sent."""
        _check_size(len(records))
        body = self.connector.rest(
            "POST",
            "composite/sobjects",
            json={"allOrNone": all_or_none, "records": _typed(identifier(sobject), records)},
            idempotent=False,
        )
        return _save_results(body, len(records))

    def update(
        self, sobject: str, records: Sequence[dict[str, Any]], *, all_or_none: bool = False
    ) -> list[SaveResult]:
        """`PATCH composite/sobjects`: each record carries its `Id`."""
        _check_size(len(records))
        body = self.connector.rest(
            "PATCH",
            "composite/sobjects",
            json={"allOrNone": all_or_none, "records": _typed(identifier(sobject), records)},
        )
        return _save_results(body, len(records))

    def upsert(
        self,
        sobject: str,
        external_id_field: str,
        records: Sequence[dict[str, Any]],
        *,
        all_or_none: bool = False,
    ) -> list[SaveResult]:
        """`PATCH composite/sobjects/{Type}/{Field}`: insert or update by an external id."""
        _check_size(len(records))
        body = self.connector.rest(
            "PATCH",
            f"composite/sobjects/{identifier(sobject)}/{identifier(external_id_field)}",
            json={"allOrNone": all_or_none, "records": _typed(identifier(sobject), records)},
        )
        return _save_results(body, len(records))

    def delete(self, ids: Sequence[str], *, all_or_none: bool = False) -> list[SaveResult]:
        """`DELETE composite/sobjects?ids=`: to the recycle bin."""
        _check_size(len(ids))
        body = self.connector.rest(
            "DELETE",
            "composite/sobjects",
            params={"ids": ",".join(ids), "allOrNone": str(all_or_none).lower()},
            idempotent=False,
        )
        return _save_results(body, len(ids))
