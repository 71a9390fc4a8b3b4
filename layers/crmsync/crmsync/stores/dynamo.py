"""DynamoDB plumbing shared by the stores: (de)serialisation, paged reads, batched reads and writes,
transactions."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..errors import StoreThrottled

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
TRANSACTION_LIMIT = 100
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def _to_dynamo_value(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo_value(v) for v in value]
    return value


def _from_dynamo_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo_value(v) for v in value]
    if isinstance(value, set):
        return sorted(_from_dynamo_value(v) for v in value)
    return value


def _attribute_value(value: Any) -> Any:
    """One value as a DynamoDB attribute value, the way boto3's TypeSerializer writes it, in one pass.

    The stores write the same few shapes millions of times (strings, integers, maps of them); a walk by
    exact type, with the serializer's own rules for what it does not special-case (sets, bytes, Decimal
    context checks), costs a fraction of TypeSerializer's chain of isinstance tests per value.
    """
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is dict:
        return {"M": {k: _attribute_value(v) for k, v in value.items()}}
    if kind is bool:
        return {"BOOL": value}
    if kind is int:
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if kind is list or kind is tuple:
        return {"L": [_attribute_value(v) for v in value]}
    return _serializer.serialize(_to_dynamo_value(value))


def _plain_value(value: dict[str, Any]) -> Any:
    """An attribute value as the stores' plain Python (numbers as int or float, sets as sorted lists)."""
    ((tag, raw),) = value.items()
    if tag == "S":
        return raw
    if tag == "N":
        try:
            return int(raw)
        except ValueError:
            return _from_dynamo_value(Decimal(raw))
    if tag == "M":
        return {k: _plain_value(v) for k, v in raw.items()}
    if tag == "BOOL":
        return raw
    if tag == "NULL":
        return None
    if tag == "L":
        return [_plain_value(v) for v in raw]
    return _from_dynamo_value(_deserializer.deserialize(value))


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _attribute_value(value) for key, value in item.items()}


def serialize_value(value: Any) -> Any:
    return _attribute_value(value)


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain_value(value) for key, value in item.items()}


def pages(
    client: Any, operation: Literal["query", "scan"], request: dict[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    """Each page a query or scan answers, its items deserialized, following `LastEvaluatedKey` until the
    last page (a reader that stops early reads no further page)."""
    request = dict(request)
    while True:
        response = getattr(client, operation)(**request)
        yield [deserialize(item) for item in response.get("Items", [])]
        if "LastEvaluatedKey" not in response:
            return
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def every_item(
    client: Any, operation: Literal["query", "scan"], request: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Every item of every page of a query or scan, deserialized."""
    for page in pages(client, operation, request):
        yield from page


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_throttling(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in THROTTLING_CODES


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * (2**attempt), 2.0))


def batch_get(
    client: Any, table: str, keys: Iterable[dict[str, Any]], *, attempts: int = 8
) -> list[dict[str, Any]]:
    """Every item that exists among `keys`, read 100 at a time, unprocessed keys retried with back-off."""
    unique = list({tuple(sorted(k.items())): k for k in keys}.values())
    found: list[dict[str, Any]] = []
    for chunk in chunks(unique, BATCH_GET_LIMIT):
        request: dict[str, Any] = {table: {"Keys": [serialize(k) for k in chunk], "ConsistentRead": True}}
        for attempt in range(attempts):
            response = client.batch_get_item(RequestItems=request)
            found.extend(deserialize(i) for i in response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            _backoff(attempt)
        else:
            raise StoreThrottled(f"DynamoDB kept {len(request[table]['Keys'])} keys of {table} unprocessed")
    return found


def batch_write(
    client: Any,
    table: str,
    puts: Iterable[dict[str, Any]] = (),
    deletes: Iterable[dict[str, Any]] = (),
    *,
    attempts: int = 8,
) -> int:
    """Write items 25 at a time; unprocessed items are retried with back-off. Returns the number written."""
    requests_: list[dict[str, Any]] = [{"PutRequest": {"Item": serialize(i)}} for i in puts]
    requests_ += [{"DeleteRequest": {"Key": serialize(k)}} for k in deletes]
    for chunk in chunks(requests_, BATCH_WRITE_LIMIT):
        pending: dict[str, Any] = {table: list(chunk)}
        for attempt in range(attempts):
            response = client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
            _backoff(attempt)
        else:
            raise StoreThrottled(f"DynamoDB kept {len(pending[table])} writes to {table} unprocessed")
    return len(requests_)


SINGLE_WRITE_THREADS = 8


def update_each(client: Any, updates: Sequence[dict[str, Any]], *, attempts: int = 8) -> list[bool]:
    """One conditional `UpdateItem` per update (the keyword arguments of the call), 1 WCU each where a
    transaction would cost 2; up to `SINGLE_WRITE_THREADS` calls at once (a client is thread-safe).
    Throttling is retried with back-off. Answers, per update, whether its condition refused it."""

    def one(update: dict[str, Any]) -> bool:
        for attempt in range(attempts):
            try:
                client.update_item(**update)
                return False
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == "ConditionalCheckFailedException":
                    return True
                if not is_throttling(error):
                    raise
                _backoff(attempt)
        raise StoreThrottled(f"DynamoDB kept throttling an update of {update.get('TableName')}")

    if len(updates) <= 1:
        return [one(update) for update in updates]
    with ThreadPoolExecutor(max_workers=SINGLE_WRITE_THREADS) as pool:
        return list(pool.map(one, updates))


class TransactionConflict(Exception):
    """Some actions of a transaction failed their condition; `failed` holds their indexes."""

    def __init__(self, failed: list[int], reasons: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(failed)} transaction actions failed their condition")
        self.failed = failed
        self.reasons = reasons


def transact_write(client: Any, actions: list[dict[str, Any]], *, attempts: int = 6) -> None:
    """One TransactWriteItems call (≤100 actions), retried on throttling and transaction conflicts.

    Raises `TransactionConflict` naming the actions whose condition failed, so the caller can decide
    what those records become; nothing of a cancelled transaction was written.
    """
    if len(actions) > TRANSACTION_LIMIT:
        raise ValueError(f"a transaction holds at most {TRANSACTION_LIMIT} actions, not {len(actions)}")
    for attempt in range(attempts):
        try:
            client.transact_write_items(TransactItems=actions)
            return
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "TransactionCanceledException":
                reasons = error.response.get("CancellationReasons") or []
                failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
                if failed:
                    raise TransactionConflict(failed, reasons) from None
                if any(r.get("Code") in ("TransactionConflict", "ThrottlingError") for r in reasons):
                    _backoff(attempt)
                    continue
                raise
            if code == "TransactionInProgressException" or is_throttling(error):
                _backoff(attempt)
                continue
            raise
    raise StoreThrottled("DynamoDB kept refusing a transaction (conflicts or throttling)")


def _item_identity(action: dict[str, Any], key_names: tuple[str, ...]) -> tuple[str, str]:
    ((kind, body),) = action.items()
    source = body["Key"] if kind != "Put" else {k: v for k, v in body["Item"].items() if k in key_names}
    return body["TableName"], repr(sorted(source.items()))


def transact_groups(
    client: Any, groups: Sequence[list[dict[str, Any]]], *, key_names: tuple[str, ...] = ("pk", "sk")
) -> list[TransactionConflict | None]:
    """Write each group of actions all or nothing, packing groups into transactions of at most 100
    actions; two groups touching one item (`key_names` are the tables' key attributes) never share a
    transaction, which DynamoDB refuses. When a shared transaction is cancelled, its groups are written
    one by one, so one conflict does not hold the others back. Answers, per group, the conflict that
    refused it, or None."""
    outcome: list[TransactionConflict | None] = [None] * len(groups)
    batch: list[int] = []
    touched: set[tuple[str, str]] = set()
    size = 0

    def flush() -> None:
        if not batch:
            return
        try:
            transact_write(client, [action for index in batch for action in groups[index]])
        except TransactionConflict as conflict:
            if len(batch) == 1:
                outcome[batch[0]] = conflict
            else:
                for index in batch:
                    try:
                        transact_write(client, groups[index])
                    except TransactionConflict as alone:
                        outcome[index] = alone
        batch.clear()
        touched.clear()

    for index, group in enumerate(groups):
        items = {_item_identity(action, key_names) for action in group}
        if size + len(group) > TRANSACTION_LIMIT or items & touched:
            flush()
            size = 0
        batch.append(index)
        touched.update(items)
        size += len(group)
    flush()
    return outcome
