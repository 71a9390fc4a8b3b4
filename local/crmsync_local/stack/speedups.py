"""Performance fixes for moto, installed while a stack runs.

`TransactWriteItems`: moto 5.2.5 backs up every table a transaction touches with `copy.deepcopy(table)`,
once per transaction item, so each transaction costs time proportional to the table's size: an import
that writes its profiles in transactions slows down with the square of the table (2,000 profiles took
40 s, 100,000 would take hours). The replacement keeps DynamoDB's documented semantics and journals
only the items it touches:

1. every action is checked first - one action per item, no item twice, each condition evaluated
   against the state *before* the transaction (as DynamoDB does; moto evaluated later conditions
   after applying earlier writes) - and any failure cancels the transaction with a reason per action;
2. only then are the writes applied, each item's prior version kept, so a write that fails half-way
   restores the touched items and nothing else.

`Item.__init__`: moto re-measures the whole item after adding each attribute, to enforce the 400 KB
item limit, which makes building an item quadratic in its attributes (most of the time of a put of a
profile with nested maps). Sizes are never negative, so measuring once after building refuses exactly
the items the incremental check refused.

Reading items back: moto serializes responses by walking botocore's shape model value by value, about
18 ms for one profile with nested maps, so an export reading 50,000 profiles would spend 15 minutes in
the serializer. The answers of GetItem, BatchGetItem, Query and Scan are already DynamoDB JSON after
moto's `dynamo_to_dict`; they are written with `json.dumps` (binary values base64, as on the wire).

SQS: moto's `Queue.attributes` counts the messages delayed, in flight and visible - reading the clock
once per message - every time any attribute is read, and the send path reads it for
`ContentBasedDeduplication`, the receive path (three times) for `MessageRetentionPeriod` of each
message: N messages cost N² clock reads (1,000 e-mail events took 67 s to queue, 10,000 would take
hours). The counts are now computed only for `GetQueueAttributes` calls that ask for them (`All` or an
`ApproximateNumberOf...` name); every other attribute is read as before.

Creating a state machine: moto parses the definition with its ANTLR grammar only to validate it, and
throws the tree away (executions parse again); that was half of a new stack's time. A definition text
that was valid stays valid, so the texts already accepted are kept for the process and not parsed
again; a new or invalid text is parsed, and refused, as before.

Service models: moto's mock gives every new stack a new default boto3 session, so the handlers' first
client of each service re-read botocore's JSON models (~25 ms a service, ~0.3 s a stack). The default
session a stack gets now reads them through one loader kept for the process (the models are files of
the installed botocore; the session, its credentials and configuration are still new).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from typing import Any

from moto.core.utils import camelcase_to_underscores
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    ItemSizeTooLarge,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.responses import DynamoResult
from moto.sqs.models import Queue, SQSBackend
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

_ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items
_ORIGINAL_ITEM_INIT = Item.__init__
_ORIGINAL_EXECUTE_RESULT = DynamoResult.execute_result
_ORIGINAL_QUEUE_ATTRIBUTES = Queue.attributes
_ORIGINAL_GET_QUEUE_ATTRIBUTES = SQSBackend.get_queue_attributes
_ORIGINAL_VALIDATE_DEFINITION = StepFunctionsParserBackend._validate_definition
_valid_definitions: set[str] = set()  # kept across stacks: that is the point
_VALID_DEFINITIONS_KEPT = 512
_loader: Any = None
_COUNTS = frozenset(
    {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"}
)
_counting = threading.local()
_ITEM_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan"})
ITEM_SIZE_LIMIT = 405_000  # moto's own figure for DynamoDB's 400 KB
_OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    planned: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    reasons: list[tuple[Any, Any, Any]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        if op_type not in _OPERATIONS:
            raise ValueError("Unsupported transaction operation")
        key = _key_of(self, op_type, op)
        marker = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        planned.append((op_type, op, key))
        try:
            current = self.get_item(op["TableName"], key)
            if op.get("ConditionExpression") is not None:
                condition = get_filter_expression(
                    op["ConditionExpression"],
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not condition.expr(current):
                    old = (
                        current.to_json()["Attributes"]
                        if current is not None and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
                        else None
                    )
                    reasons.append(("ConditionalCheckFailed", ConditionalCheckFailed().message, old))
                    continue
            reasons.append((None, None, None))
        except Exception as error:  # DynamoDB reports each action's failure, as moto did
            reasons.append((type(error).__name__, str(error), None))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)

    journal: list[tuple[str, dict[str, Any], Any]] = []
    try:
        for op_type, op, key in planned:
            if op_type == "ConditionCheck":
                continue
            table_name = op["TableName"]
            journal.append((table_name, key, copy.deepcopy(self.get_item(table_name, key))))
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            else:
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=op.get("ExpressionAttributeNames"),
                    expression_attribute_values=op.get("ExpressionAttributeValues"),
                )
    except Exception:
        for table_name, key, before in reversed(journal):
            if before is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before.to_json()["Attributes"])
        raise


def _item_init(self: Item, hash_key: DynamoType, range_key: DynamoType | None, attrs: dict[str, Any]) -> None:
    self.hash_key = hash_key
    self.range_key = range_key
    values = {key: DynamoType(value) for key, value in attrs.items()}
    if sum(bytesize(key) + value.size() for key, value in values.items()) > ITEM_SIZE_LIMIT:
        raise ItemSizeTooLarge
    self.attrs = LimitedSizeDict()
    dict.update(self.attrs, values)


def _wire_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _execute_result(self: DynamoResult, context: Any) -> Any:
    if context.operation_model.name not in _ITEM_READS:
        return _ORIGINAL_EXECUTE_RESULT(self, context)
    result = {k: v for k, v in dict(self.result).items() if v is not None}  # type: ignore[call-overload]
    return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(result, default=_wire_json)


def _queue_attributes(self: Queue) -> dict[str, Any]:
    """moto's attributes, with the message counts only when a GetQueueAttributes call asked for them."""
    if getattr(_counting, "active", False):
        return dict(_ORIGINAL_QUEUE_ATTRIBUTES.fget(self))  # type: ignore[attr-defined]
    names = [n for n in self.BASE_ATTRIBUTES if n not in _COUNTS]
    if self.fifo_queue:
        names += self.FIFO_ATTRIBUTES
    if self.kms_master_key_id:
        names += self.KMS_ATTRIBUTES
    result: dict[str, Any] = {name: getattr(self, camelcase_to_underscores(name)) for name in names}
    if self.policy:
        result["Policy"] = self.policy
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy)
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in result.items()}


def _get_queue_attributes(self: SQSBackend, queue_name: str, attribute_names: list[str]) -> Any:
    _counting.active = "All" in attribute_names or bool(_COUNTS & set(attribute_names))
    try:
        return _ORIGINAL_GET_QUEUE_ATTRIBUTES(self, queue_name, attribute_names)
    finally:
        _counting.active = False


def _validate_definition(definition: str) -> None:
    if definition in _valid_definitions:
        return
    _ORIGINAL_VALIDATE_DEFINITION(definition=definition)  # raises InvalidDefinition
    if len(_valid_definitions) >= _VALID_DEFINITIONS_KEPT:
        _valid_definitions.clear()
    _valid_definitions.add(definition)


def share_service_models() -> None:
    """Give boto3 a new default session whose botocore models come from the process's one loader.

    For a stack under moto's mock only: the mock saved boto3's default session when it started and puts
    it back when it stops.
    """
    global _loader
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    if _loader is None:
        _loader = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _loader)
    session = boto3.session.Session(botocore_session=core)
    paths = _loader.search_paths  # boto3 appends its own data directory to the loader on every session
    paths[:] = list(dict.fromkeys(paths))
    boto3.DEFAULT_SESSION = session


def install() -> None:
    """Apply the fixes (process-wide, like moto's backends)."""
    StepFunctionsParserBackend._validate_definition = staticmethod(_validate_definition)  # type: ignore[method-assign,assignment]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    Item.__init__ = _item_init  # type: ignore[method-assign]
    DynamoResult.execute_result = _execute_result  # type: ignore[method-assign]
    Queue.attributes = property(_queue_attributes)  # type: ignore[assignment,method-assign]
    SQSBackend.get_queue_attributes = _get_queue_attributes  # type: ignore[method-assign]


def uninstall() -> None:
    StepFunctionsParserBackend._validate_definition = staticmethod(_ORIGINAL_VALIDATE_DEFINITION)  # type: ignore[method-assign,assignment]
    DynamoDBBackend.transact_write_items = _ORIGINAL_TRANSACT  # type: ignore[method-assign]
    Item.__init__ = _ORIGINAL_ITEM_INIT  # type: ignore[method-assign]
    DynamoResult.execute_result = _ORIGINAL_EXECUTE_RESULT  # type: ignore[method-assign]
    Queue.attributes = _ORIGINAL_QUEUE_ATTRIBUTES  # type: ignore[method-assign]
    SQSBackend.get_queue_attributes = _ORIGINAL_GET_QUEUE_ATTRIBUTES  # type: ignore[method-assign]
