"""A lean DynamoDB client: requests and answers of the item operations written and read as plain JSON.

The stores hand botocore requests that are already in DynamoDB's wire format (`stores.dynamo.serialize`
writes every attribute value as `{"S": ...}`, `{"N": ...}`, `{"M": ...}`), so botocore's own walk of each
request against the service model, value by value, builds a copy identical to the input before
`json.dumps`; and its walk of each answer builds a copy identical to `json.loads` of the body. Both walks
cost per attribute value: for an import, about a tenth of the client's time went to the request walk, and
reading profiles back spends as much again in the answer walk. In Lambda that is paid on every call.

`make_lean(client)` keeps botocore's walk wherever it changes something and skips it where it cannot:
- requests of `ITEM_OPERATIONS` are `json.dumps` of the parameters, byte for byte what botocore's
  serializer writes (a test checks it), unless a value is not plain JSON (bytes: binary attributes, which
  botocore base64-encodes; anything else `json` refuses): that request goes through botocore's serializer;
- successful answers of `ITEM_OPERATIONS` are `json.loads` of the body, unless the body holds a binary
  attribute (`"B"`/`"BS"`, which botocore decodes) or a JSON null (which botocore's walk drops): then
  botocore parses it. Errors are always botocore's.
Everything else (headers, signing, retries, the endpoint, the call's events) is botocore's, unchanged.
"""

from __future__ import annotations

import json
from typing import Any

ITEM_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "TransactGetItems",
        "Query",
        "Scan",
    }
)
"""Operations whose input and output shapes carry nothing but strings, numbers, booleans, lists, maps
and `AttributeValue`s (no timestamps, no renamed members; blobs only in `B`/`BS`)."""

_NOT_PLAIN = (b'"B":', b'"BS":', b"null")


class _NotPlainJson(Exception):
    pass


def _refuse(value: Any) -> Any:
    raise _NotPlainJson(type(value).__name__)


class LeanSerializer:
    """botocore's JSON serializer, with `ITEM_OPERATIONS`' plain-JSON requests written by `json.dumps`."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def serialize_to_request(self, parameters: dict[str, Any], operation_model: Any) -> dict[str, Any]:
        if operation_model.name not in ITEM_OPERATIONS:
            return self.wrapped.serialize_to_request(parameters, operation_model)  # type: ignore[no-any-return]
        try:
            body = json.dumps(parameters, default=_refuse, allow_nan=False)
        except (_NotPlainJson, ValueError):
            return self.wrapped.serialize_to_request(parameters, operation_model)  # type: ignore[no-any-return]
        metadata = operation_model.metadata
        return {
            "url_path": "/",
            "query_string": "",
            "method": operation_model.http.get("method", "POST"),
            "headers": {
                "X-Amz-Target": f"{metadata['targetPrefix']}.{operation_model.name}",
                "Content-Type": f"application/x-amz-json-{metadata['jsonVersion']}",
            },
            "body": body.encode("utf-8"),
        }


def _parse_plain(
    operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """`before-parse` handler: a plain successful answer is loaded here and botocore parses an empty one."""
    if operation_model.name not in ITEM_OPERATIONS or response_dict.get("status_code") != 200:
        return
    body = response_dict.get("body")
    if not isinstance(body, bytes) or not body or any(token in body for token in _NOT_PLAIN):
        return
    parsed = json.loads(body)
    if not isinstance(parsed, dict):
        return
    customized_response_dict.update(parsed)
    response_dict["body"] = b"{}"


def make_lean(client: Any) -> Any:
    """`client` (a DynamoDB client) with plain-JSON requests and answers; returns it. A botocore without
    the serializer attribute this relies on leaves the client as it was."""
    serializer = getattr(client, "_serializer", None)
    if (
        serializer is None
        or not hasattr(serializer, "serialize_to_request")
        or isinstance(serializer, LeanSerializer)
    ):
        return client
    client._serializer = LeanSerializer(serializer)
    client.meta.events.register(f"before-parse.{client.meta.service_model.service_id.hyphenize()}", _parse_plain)
    return client


__all__ = ["ITEM_OPERATIONS", "LeanSerializer", "make_lean"]
