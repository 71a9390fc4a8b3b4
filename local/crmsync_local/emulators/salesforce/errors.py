"""Salesforce's two error shapes: request-level `[{"message","errorCode"}]` and per-record errors.

Per-record errors (`RecordError`) are rendered three ways: in sObject Collections results
(`{"statusCode","message","fields"}`), as a REST error body when a single-record call fails
(`[{"message","errorCode","fields"}]`) and as a Bulk API `sf__Error` cell (`CODE:message:fields --`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordError:
    status_code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def as_result(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}

    def as_rest(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.status_code, "fields": list(self.fields)}

    def as_bulk(self) -> str:
        """`REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --`, or `...:--`."""
        fields = f"{','.join(self.fields)} " if self.fields else ""
        return f"{self.status_code}:{self.message}:{fields}--"


class ApiError(Exception):
    """Aborts a request with an HTTP status and Salesforce's `[{"message","errorCode"}]` body."""

    def __init__(self, status: int, error_code: str, message: str, *, extra: dict[str, Any] | None = None):
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.body: Any = [{"message": message, "errorCode": error_code, **(extra or {})}]

    @classmethod
    def from_record_error(cls, status: int, error: RecordError) -> ApiError:
        exc = cls(status, error.status_code, error.message)
        exc.body = [error.as_rest()]
        return exc

    @classmethod
    def with_body(cls, status: int, body: Any) -> ApiError:
        exc = cls(status, "", "")
        exc.body = body
        return exc


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def rolled_back() -> RecordError:
    return RecordError(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
    )


def entity_is_deleted() -> RecordError:
    return RecordError("ENTITY_IS_DELETED", "entity is deleted")


def invalid_cross_reference() -> RecordError:
    return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")


def malformed_id(record_id: str) -> RecordError:
    return RecordError("MALFORMED_ID", f"malformed id {record_id}")
