"""What the two CRM adapters share, so each states only what differs: a connector's plumbing (its
connection, token provider, HTTP session and retry policy), reading every page of a query, the CRM's id
rules the services ask through the port, and a writer that reads through its connector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import CrmOutcomeUnknown
from .http import CrmHttpSession
from .port import ObjectDescription, RecordPage
from .retry import RetryPolicy, log_retries
from .rules import CrmRules

ConnectionT = TypeVar("ConnectionT")
TokensT = TypeVar("TokensT")
T = TypeVar("T")


class HttpConnector(ABC, Generic[ConnectionT, TokensT]):
    """A CRM adapter over HTTPS: the plumbing every call goes through, and the CRM's id rules."""

    rules: ClassVar[CrmRules]
    """What differs in this CRM, as the services need it: an adapter names its row, the rest follows."""
    kind: str
    bulk_deletes = False
    """Large deletions go through a bulk API (a job per batch) rather than record collections."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        rules = cls.__dict__.get("rules")
        if isinstance(rules, CrmRules):
            cls.kind = rules.kind
            cls.bulk_deletes = rules.bulk_api

    def __init__(
        self, connection: ConnectionT, tokens: TokensT, session: CrmHttpSession, retry: RetryPolicy | None = None
    ) -> None:
        self.connection = connection
        self.tokens = tokens
        self.session = session
        self.retry = retry or RetryPolicy()

    @property
    def api_calls(self) -> int:
        """HTTP calls made to the CRM by this connector, token calls included."""
        return self.session.calls

    def retried(self, attempt: Callable[[], T]) -> T:
        """One call under the retry policy, each retry logged; an unknown outcome is never repeated here:
        the caller resolves it before anything is sent again."""
        return self.retry.run(attempt, on_retry=log_retries(self.rules.name), give_up=(CrmOutcomeUnknown,))

    @abstractmethod
    def read_next_page(self, cursor: str) -> RecordPage:
        """The page a cursor points at."""

    def every_record(self, page: RecordPage) -> list[dict[str, Any]]:
        """The records of `page` and of every page after it."""
        records = list(page.records)
        while page.next_cursor:
            page = self.read_next_page(page.next_cursor)
            records.extend(page.records)
        return records

    @abstractmethod
    def find(
        self, object_name: str, field: str, values: Iterable[str], fields: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Records whose `field` equals one of `values`, batched; never one call per value."""

    # -- id rules ----------------------------------------------------------------------------------
    @abstractmethod
    def is_record_id(self, value: str) -> bool:
        """`value` is written as this CRM writes a record id."""

    def normalize_id(self, value: str) -> str:
        """A record id as the CRM answers it, so ids given by a person compare equal to the CRM's."""
        return value

    def id_of_object(self, value: str, description: ObjectDescription) -> bool:
        """A record id of `description`'s object (where the CRM's ids tell their object apart)."""
        return True


ConnectorT = TypeVar("ConnectorT", bound=HttpConnector[Any, Any])


class ConnectorWriter(Generic[ConnectorT]):
    """A CRM writer, reading (and counting calls) through the connector whose session it shares."""

    kind: str

    def __init__(self, connector: ConnectorT) -> None:
        self.connector = connector

    @property
    def api_calls(self) -> int:
        return self.connector.api_calls

    def find(
        self, object_name: str, field: str, values: Iterable[str], fields: Iterable[str]
    ) -> list[dict[str, Any]]:
        return self.connector.find(object_name, field, values, fields)


__all__ = ["ConnectorWriter", "HttpConnector"]
