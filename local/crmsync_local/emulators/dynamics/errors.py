"""Dataverse Web API errors: `{"error":{"code":"0x…","message":"…"}}` with the HTTP status Dataverse uses.

Codes and messages come from Microsoft's documentation (Web service error codes, Service protection API
limits, Execute batch operations, Perform conditional operations, Use change tracking) or, where the
documentation shows only the code, from messages Dataverse is known to return. Each factory below names
its source so a reader can check it.
"""

from __future__ import annotations

from typing import Any

# Error codes (hex as the Web API writes them).
ODATA_ERROR = "0x80060888"  # ODataException family: unknown property, bad syntax
RESOURCE_NOT_FOUND = "0x8006088a"  # an entity set or path segment the service does not have
PAYLOAD_ERROR = "0x80048d19"  # "Error identified in Payload provided by the user for Entity"
INVALID_ARGUMENT = "0x80040203"
OBJECT_DOES_NOT_EXIST = "0x80040217"
DUPLICATE_RECORD = "0x80040237"
CONCURRENCY_VERSION_MISMATCH = "0x80060882"
DUPLICATE_RECORD_ENTITY_KEY = "0x80060892"
MAX_LENGTH_EXCEEDED = "0x80044331"
PICKLIST_VALUE_OUT_OF_RANGE = "0x8004431A"
EXPIRED_VERSION_STAMP = "0x80044352"
CHANGE_TRACKING_NOT_ENABLED = "0x80072491"
ACCESS_TOKEN_EXPIRED = "0x8005F101"
PRIVILEGE_DENIED = "0x80040220"
UNEXPECTED = "0x80040216"
REQUESTS_LIMIT = "0x80072322"
EXECUTION_TIME_LIMIT = "0x80072321"
CONCURRENCY_LIMIT = "0x80072326"


class DataverseError(Exception):
    """An error the Web API answers with; raised anywhere below the request handler."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def property_not_found(name: str, logical_name: str) -> DataverseError:
    """$select/$filter/$orderby on a property the type lacks (Microsoft.OData.ODataException text)."""
    return DataverseError(
        400,
        ODATA_ERROR,
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical_name}'.",
    )


def payload_error(entity_set: str, inner: str) -> DataverseError:
    """A create/update body the OData reader rejects, wrapped the way Dataverse reports payload errors."""
    return DataverseError(
        400,
        PAYLOAD_ERROR,
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on "
        "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
        f"InnerException : Microsoft.OData.ODataException: {inner}",
    )


def payload_property_unknown(name: str, entity_set: str, logical_name: str) -> DataverseError:
    """A create/update body names a property the entity type does not define."""
    return payload_error(
        entity_set,
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{logical_name}'. Make sure to only "
        "use property names that are defined by the type or mark the type as open type.",
    )


def payload_type_mismatch(entity_set: str, value: object, edm: str) -> DataverseError:
    return payload_error(entity_set, f"Cannot convert the literal '{value}' to the expected type '{edm}'.")


def undeclared_navigation(entity_set: str, name: str) -> DataverseError:
    return payload_error(
        entity_set,
        f"An undeclared property '{name}' which only has property annotations in the payload but no property value "
        "was found in the payload. In OData, only declared navigation properties and declared named streams can "
        "be represented as properties without values.",
    )


def lookup_value_not_writable() -> DataverseError:
    """Writing `_x_value` instead of binding the navigation property."""
    return DataverseError(
        400,
        ODATA_ERROR,
        "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.",
    )


def syntax_error(position: int, text: str) -> DataverseError:
    return DataverseError(400, ODATA_ERROR, f"Syntax error at position {position} in '{text}'.")


def unterminated_literal(position: int, text: str) -> DataverseError:
    """Documented in "Filter rows using OData" (Manage single quotes)."""
    return DataverseError(
        400, ODATA_ERROR, f"There is an unterminated literal at position {position} in '{text}'."
    )


def incompatible_operands(left: str, right: str, operator: str) -> DataverseError:
    return DataverseError(
        400,
        ODATA_ERROR,
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{left}' and '{right}' for operator kind '{operator}'.",
    )


def bad_request(message: str, code: str = ODATA_ERROR) -> DataverseError:
    return DataverseError(400, code, message)


def segment_not_found(segment: str) -> DataverseError:
    """Web service error codes: 0x8006088a ResourceNotFound, "Resource not found for the segment"."""
    return DataverseError(404, RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'.")


def record_not_found(logical_name: str, record_id: str) -> DataverseError:
    """Documented in "Perform conditional operations" (If-Match: * on a missing record)."""
    return DataverseError(404, OBJECT_DOES_NOT_EXIST, f"{logical_name} With Id = {record_id} Does Not Exist")


def key_not_found(logical_name: str) -> DataverseError:
    return DataverseError(
        404,
        OBJECT_DOES_NOT_EXIST,
        f"A record with the specified key values does not exist in {logical_name} entity",
    )


def duplicate_record() -> DataverseError:
    """Documented in "Perform conditional operations" (If-None-Match: * on an existing record)."""
    return DataverseError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")


def duplicate_key(key_name: str, attributes: list[str]) -> DataverseError:
    """DuplicateRecordEntityKey: "Entity Key {0} violated. A record with the same value for {1} already exists."."""
    return DataverseError(
        412,
        DUPLICATE_RECORD_ENTITY_KEY,
        f"Entity Key {key_name} violated. A record with the same value for {','.join(attributes)} already exists.",
    )


def version_mismatch() -> DataverseError:
    """Documented in "Perform conditional operations" (optimistic concurrency)."""
    return DataverseError(
        412,
        CONCURRENCY_VERSION_MISMATCH,
        "The version of the existing record doesn't match the RowVersion property provided.",
    )


def max_length(attribute: str, logical_name: str, limit: int) -> DataverseError:
    """Documented verbatim in "Execute batch operations" (Handling errors)."""
    return DataverseError(
        400,
        MAX_LENGTH_EXCEEDED,
        f"A validation error occurred.  The length of the '{attribute}' attribute of the '{logical_name}' entity "
        f"exceeded the maximum allowed length of '{limit}'.",
    )


def picklist_out_of_range(value: object, attribute: str, logical_name: str, accepted: list[int]) -> DataverseError:
    return DataverseError(
        400,
        PICKLIST_VALUE_OUT_OF_RANGE,
        f"A validation error occurred. The value {value} of '{attribute}' on record of type '{logical_name}' is "
        f"outside the valid range. Accepted Values: {','.join(str(v) for v in accepted)}",
    )


def attribute_cannot_be_null(attribute: str) -> DataverseError:
    return DataverseError(400, INVALID_ARGUMENT, f"Attribute '{attribute}' cannot be NULL")


def invalid_value(message: str) -> DataverseError:
    return DataverseError(400, INVALID_ARGUMENT, message)


def expired_version_stamp() -> DataverseError:
    """ExpiredVersionStamp, as Dataverse answers a delta token older than ExpireChangeTrackingInDays."""
    return DataverseError(
        400,
        EXPIRED_VERSION_STAMP,
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )


def change_tracking_not_enabled(logical_name: str) -> DataverseError:
    """ChangeTrackingNotEnabledForEntity: "Entity {0} isn't enabled for change tracking."."""
    return DataverseError(
        400, CHANGE_TRACKING_NOT_ENABLED, f"Entity {logical_name} isn't enabled for change tracking."
    )


def change_tracking_option_unsupported(option: str) -> DataverseError:
    """Documented in "Use change tracking" (query options not supported)."""
    return DataverseError(
        400, ODATA_ERROR, f'The "{option}" query parameter isn\'t supported when Change Tracking is enabled.'
    )


def authentication_required() -> DataverseError:
    return DataverseError(401, ACCESS_TOKEN_EXPIRED, "The requested resource requires authentication.")


def too_many_requests(limit: int, window: int, retry_after: int) -> DataverseError:
    """Documented in "Service protection API limits" (Number of requests)."""
    return DataverseError(
        429,
        REQUESTS_LIMIT,
        f"Number of requests exceeded the limit of {limit} over time window of {window} seconds.",
        {"Retry-After": str(retry_after)},
    )


def execution_time_exceeded(limit_ms: int, window: int, retry_after: int) -> DataverseError:
    """Documented in "Service protection API limits" (Execution time)."""
    return DataverseError(
        429,
        EXECUTION_TIME_LIMIT,
        f"Combined execution time of incoming requests exceeded limit of {limit_ms:,} milliseconds over time "
        f"window of {window} seconds. Decrease number of concurrent requests or reduce the duration of requests "
        "and try again later.",
        {"Retry-After": str(retry_after)},
    )


def too_many_concurrent(limit: int, retry_after: int) -> DataverseError:
    """Documented in "Service protection API limits" (Concurrent requests)."""
    return DataverseError(
        429,
        CONCURRENCY_LIMIT,
        f"Number of concurrent requests exceeded the limit of {limit}.",
        {"Retry-After": str(retry_after)},
    )


def batch_too_large(limit: int) -> DataverseError:
    """The OData library's message Dataverse returns for a $batch over its 1,000-request limit."""
    return DataverseError(
        400,
        ODATA_ERROR,
        "The current batch message contains too many parts. Only batch messages with a maximum number of "
        f"'{limit}' query operations, including changeset operations, are allowed.",
    )


def changeset_too_large(limit: int) -> DataverseError:
    return DataverseError(
        400,
        ODATA_ERROR,
        "The current change set contains too many operations. A maximum number of "
        f"'{limit}' operations are allowed in a change set.",
    )
