"""Performance fixes for moto that keep its behaviour exactly, installed while a stack runs.

`TransactWriteItems`: moto 5.2.5 backs up every table a transaction touches, for rollback, with one
`copy.deepcopy(table)` per transaction item — a 100-item transaction on one table copies the whole table
100 times, so a run that writes its profiles in transactions slows down with the square of the table
size (a 450-record import spent 200 s there). Nothing changes a table while the backups are taken, so
one copy per table and call is the same backup: the module's `copy` is swapped for a shim that, inside
`transact_write_items` on the calling thread only, deep-copies each table once.
"""

from __future__ import annotations

import copy
import functools
import threading
from types import ModuleType
from typing import Any

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_ORIGINAL_COPY = dynamodb_models.copy  # type: ignore[attr-defined]
_ORIGINAL_TRANSACT = DynamoDBBackend.transact_write_items
_local = threading.local()


class _CopyEachTableOnce(ModuleType):
    """Stands in for `copy` in moto.dynamodb.models: memoises table deep copies during a transaction."""

    def __init__(self) -> None:
        super().__init__("copy")

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        tables: dict[int, Any] | None = getattr(_local, "tables", None)
        if tables is None or not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        if id(value) not in tables:
            tables[id(value)] = copy.deepcopy(value, memo)
        return tables[id(value)]


@functools.wraps(_ORIGINAL_TRANSACT)
def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    _local.tables = {}
    try:
        _ORIGINAL_TRANSACT(self, transact_items)
    finally:
        _local.tables = None


def install() -> None:
    """Apply the fixes (process-wide, like moto's backends)."""
    dynamodb_models.copy = _CopyEachTableOnce()  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


def uninstall() -> None:
    dynamodb_models.copy = _ORIGINAL_COPY  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _ORIGINAL_TRANSACT  # type: ignore[method-assign]
