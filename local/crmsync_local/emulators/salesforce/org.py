"""Everything a reset forgets: the org's schema, records, users, OAuth apps and sessions, query cursors,
Bulk API jobs, API usage, and the emulator's tunable behaviour (`EmulatorConfig`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .ids import IdGenerator, to_18
from .oauth import ConnectedApp, Credential, OAuthServer
from .schema import Schema, standard_objects
from .soql import CompiledQuery
from .store import Context, Store

DEFAULT_CLIENT_ID = "crmsync-local-client"
DEFAULT_CLIENT_SECRET = "crmsync-local-secret"
DEFAULT_USERNAME = "integration@crmsync.example"
DEFAULT_PASSWORD = "crmsync-password"
DEFAULT_SECURITY_TOKEN = "LOCALTOKEN"
# The person whose edits the control API's seeds, updates and deletions stand for: distinct from the
# integration user the API's sessions act as, so a test can tell a human change from the sync's own.
HUMAN_USERNAME = "ada.admin@crmsync.example"
_SEED_USERS = (
    (DEFAULT_USERNAME, "Integration", "User", "integ"),
    ("ada.admin@crmsync.example", "Ada", "Admin", "aadmin"),
    ("sam.seller@crmsync.example", "Sam", "Seller", "sseller"),
)


@dataclass
class EmulatorConfig:
    """Behaviour tests may tune through `POST /__emulator/config`."""

    # Records per query page; overrides the client's Sforce-Query-Options batchSize when set.
    query_page_size: int | None = None
    # How long deleted records stay in the recycle bin / delete log (getDeleted's window).
    deleted_retention_days: float = 15.0
    # How far back getUpdated may look.
    updated_window_days: float = 30.0
    daily_api_limit: int = 100_000
    # More ids than this in a getDeleted/getUpdated answer is EXCEEDED_ID_LIMIT.
    deleted_id_limit: int = 600_000
    # Polls of a Bulk API 2.0 job that report InProgress before it reports its outcome.
    bulk_in_progress_polls: int = 1
    daily_bulk_api_batches: int = 15_000
    daily_bulk_v2_query_jobs: int = 10_000
    # A query locator expires after this much (emulated) inactivity.
    query_cursor_timeout_seconds: int = 900
    # Open query cursors per user; opening one more releases the oldest (as Salesforce does).
    max_query_cursors: int = 10
    # Sessions older than this (emulated time) are invalid; None keeps them until expired explicitly.
    session_timeout_seconds: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Apply settings; numbers are coerced to the setting's type (floats for days, ints otherwise)."""
        kinds = {f.name: float if isinstance(f.default, float) else int for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(kinds) - {"api_requests_used"})
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(kinds)}")
        for key, value in changes.items():
            if key in kinds:
                setattr(self, key, None if value is None else kinds[key](value))

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class QueryCursor:
    """A server-side query cursor: the rows matched when the query ran, sliced into pages on request."""

    locator: str
    user_id: str
    query: CompiledQuery
    rows: list[dict[str, Any]]
    page_size: int
    last_access: datetime


class Org:
    def __init__(self, now: datetime) -> None:
        self.ids = IdGenerator()
        self.org_id = to_18("00D" + "Dn0" + "000000001")
        self.schema = Schema(standard_objects())
        self.store = Store(self.schema, self.ids)
        self.oauth = OAuthServer(self.org_id)
        self.cursors: OrderedDict[str, QueryCursor] = OrderedDict()
        self.bulk_jobs: dict[str, Any] = {}
        self.api_requests_used = 0
        self.bulk_batches_used = 0
        self.bulk_query_jobs_used = 0
        self.user_ids: dict[str, str] = {}
        user = self.schema.get("User")
        assert user is not None
        bootstrap = Context(user_id="", now=now)
        for username, first, last, alias in _SEED_USERS:
            self.add_user(username, first, last, alias, bootstrap)
        self.default_user_id = self.user_ids[DEFAULT_USERNAME.lower()]
        self.human_user_id = self.user_ids[HUMAN_USERNAME.lower()]
        for record in self.store.table(user).records.values():
            record["CreatedById"] = record["LastModifiedById"] = self.default_user_id
        self.oauth.register_app(ConnectedApp(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, None, DEFAULT_USERNAME))
        self.oauth.register_credential(Credential(DEFAULT_USERNAME, DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN))

    def add_user(self, username: str, first: str, last: str, alias: str, ctx: Context) -> str:
        """Create (or find) an active User; users are ordinary User records, queryable like any other."""
        existing = self.user_ids.get(username.lower())
        if existing is not None:
            return existing
        user = self.schema.get("User")
        assert user is not None
        (user_id,) = self.store.seed(
            user,
            [
                {
                    "Username": username,
                    "FirstName": first,
                    "LastName": last,
                    "Email": username,
                    "Alias": alias[:8],
                    "IsActive": True,
                    "CompanyName": "crmsync",
                }
            ],
            ctx,
        )
        self.user_ids[username.lower()] = user_id
        return user_id

    def find_user(self, username: str) -> str | None:
        return self.user_ids.get(username.lower())

    # -- query cursors ----------------------------------------------------------------------------------------
    def open_cursor(self, cursor: QueryCursor, limit: int) -> None:
        mine = [c for c in self.cursors.values() if c.user_id == cursor.user_id]
        for stale in mine[: max(0, len(mine) - limit + 1)]:
            del self.cursors[stale.locator]
        self.cursors[cursor.locator] = cursor

    def cursor(self, locator: str, now: datetime, timeout: timedelta) -> QueryCursor | None:
        for key in [k for k, c in self.cursors.items() if now - c.last_access > timeout]:
            del self.cursors[key]
        cursor = self.cursors.get(locator)
        if cursor is not None:
            cursor.last_access = now
        return cursor
