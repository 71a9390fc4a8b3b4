"""The CRM side of a two-way run is read in the CRM's largest pages (Salesforce 2,000, Dataverse 5,000): a page
costs a CRM call whatever its size."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from crmsync.connectors.port import RecordPage, RecordQuery
from crmsync.domain.windows import ImportWindow
from crmsync.services import two_way


class OnePageConnector:
    def __init__(self) -> None:
        self.queries: list[RecordQuery] = []

    def read_first_page(self, query: RecordQuery) -> RecordPage:
        self.queries.append(query)
        return RecordPage(records=[], next_cursor=None)


class NoMarketingChanges:
    def changed(self, since: str | None, until: str) -> list[list[dict[str, Any]]]:
        return []


@pytest.mark.parametrize(("crm_kind", "page_size"), [("salesforce", 2000), ("dynamics", 5000)])
def test_the_crm_side_of_a_two_way_run_is_read_in_the_crms_largest_pages(monkeypatch, crm_kind, page_size):
    monkeypatch.setattr(two_way, "marketing_side", lambda container, run: NoMarketingChanges())
    run: Any = SimpleNamespace(
        direction="crm_to_marketing",
        crm_kind=crm_kind,
        object="contact",
        create_in_crm=False,
        create_in_marketing=False,
    )
    window = ImportWindow(option="watermark", start=None, end=datetime(2026, 1, 1, tzinfo=UTC), previous=None)
    connector: Any = OnePageConnector()

    two_way._read(None, connector, run, ("id",), "modifiedon", [], window, window, None)

    assert [q.page_size for q in connector.queries] == [page_size]
