"""The Salesforce connector against the emulator, over HTTPS, with the real simple-salesforce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.config import ImportSync
from crmsync.connectors.port import RecordQuery
from crmsync.domain.types import CrmFieldType
from crmsync.errors import (
    ConfigurationError,
    CrmAuthenticationFailed,
    CrmRateLimited,
    CrmRequestRejected,
    CrmSecretInvalid,
    CrmUnavailable,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def seed_contacts(emulator, count, start=T0, step=timedelta(minutes=1), **fields):
    rows = [
        {
            "FirstName": f"Ana{i}",
            "LastName": f"Lima{i}",
            "Email": f"ana{i}@example.com",
            "SystemModstamp": (start + i * step).isoformat(),
            "LastModifiedDate": (start + i * step).isoformat(),
            **fields,
        }
        for i in range(count)
    ]
    return emulator.control.seed("Contact", rows)


def window_query(start=None, end=None, page_size=2000, **kwargs):
    return RecordQuery(
        object="Contact",
        fields=("Id", "SystemModstamp", "Email", "FirstName"),
        window_field="SystemModstamp",
        window_start=start,
        window_end=end,
        page_size=page_size,
        **kwargs,
    )


@pytest.mark.parametrize("flow", ["client_credentials", "jwt_bearer", "password"])
def test_each_oauth_flow_gets_a_token_through_our_own_token_call(make_connector, flow):
    connector = make_connector(flow)
    assert connector.describe("Contact").name == "Contact"


def test_wrong_client_secret_fails_as_authentication_without_retrying(make_connector, salesforce_oauth):
    connector = make_connector(secret={"client_id": salesforce_oauth.client_id, "client_secret": "wrong"})
    with pytest.raises(CrmAuthenticationFailed, match="invalid_client"):
        connector.describe("Contact")
    assert connector.api_calls == 1


def test_secret_missing_a_field_names_the_field_not_its_value(make_connector):
    with pytest.raises(CrmSecretInvalid, match="lacks client_secret"):
        make_connector(secret={"client_id": "abc"})


def test_describe_normalises_field_types(connector):
    contact = connector.describe("Contact")
    assert contact.field("systemmodstamp").crm_type is CrmFieldType.DATETIME
    assert contact.field("Birthdate").crm_type is CrmFieldType.DATE
    assert contact.field("HasOptedOutOfEmail").crm_type is CrmFieldType.BOOLEAN
    assert contact.field("Email").name == "Email"


def test_unknown_object_is_a_configuration_error(connector):
    with pytest.raises(ConfigurationError, match="no object 'Contactt'"):
        connector.describe("Contactt")


def test_server_time_is_the_crm_clock_not_ours(connector, salesforce_emulator):
    salesforce_emulator.control.set_clock("2030-01-02T03:04:05+00:00")
    assert connector.server_time() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_window_reads_start_inclusive_end_exclusive(connector, salesforce_emulator):
    seed_contacts(salesforce_emulator, 5)
    page = connector.read_first_page(window_query(start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=3)))
    assert [r["FirstName"] for r in page.records] == ["Ana1", "Ana2"]


def test_pages_follow_next_records_url_until_done(connector, salesforce_emulator):
    seed_contacts(salesforce_emulator, 450)
    salesforce_emulator.control.configure(query_page_size=200)
    page = connector.read_first_page(window_query())
    seen = list(page.records)
    pages = 1
    while page.next_cursor:
        assert page.next_cursor.startswith("/services/data/v62.0/query/")
        page = connector.read_next_page(page.next_cursor)
        seen += page.records
        pages += 1
    assert (pages, len(seen), len({r["Id"] for r in seen})) == (3, 450, 450)


def test_a_cursor_that_is_not_a_next_records_url_is_refused(connector):
    with pytest.raises(ConfigurationError):
        connector.read_next_page("https://evil.example.com/steal")


def test_expired_session_mid_run_is_renewed_once(connector, salesforce_emulator):
    seed_contacts(salesforce_emulator, 3)
    connector.describe("Contact")
    salesforce_emulator.control.expire_sessions()
    page = connector.read_first_page(window_query())
    assert len(page.records) == 3
    token_calls = salesforce_emulator.control.stats()["calls"].get("POST /services/oauth2/token")
    assert token_calls == 2


def test_a_429_burst_is_retried(connector, salesforce_emulator):
    seed_contacts(salesforce_emulator, 2)
    salesforce_emulator.control.add_fault("GET .*/query", status=429, times=2)
    assert len(connector.read_first_page(window_query()).records) == 2


def test_request_limit_exceeded_is_retried_then_surfaces_as_rate_limited(connector, salesforce_emulator):
    salesforce_emulator.control.add_fault("GET .*/query", status=403, times=10)
    with pytest.raises(CrmRateLimited, match="REQUEST_LIMIT_EXCEEDED"):
        connector.read_first_page(window_query())


def test_503_burst_longer_than_the_budget_surfaces_as_unavailable(connector, salesforce_emulator):
    salesforce_emulator.control.add_fault("GET .*/query", status=503, times=10)
    with pytest.raises(CrmUnavailable):
        connector.read_first_page(window_query())


def test_cut_connection_is_retried(connector, salesforce_emulator):
    seed_contacts(salesforce_emulator, 2)
    salesforce_emulator.control.add_fault("GET .*/query", drop_response=True, times=1)
    assert len(connector.read_first_page(window_query()).records) == 2


def test_malformed_query_fails_fast_as_a_permanent_error(connector, salesforce_emulator):
    with pytest.raises(CrmRequestRejected, match="INVALID_FIELD"):
        connector.read_first_page(RecordQuery(object="Contact", fields=("Id", "NoSuchField__c")))
    assert connector.api_calls <= 2


def test_limits_report_the_daily_allowance(connector, salesforce_emulator):
    limits = connector.limits()
    assert limits.maximum is not None
    assert limits.remaining is not None
    assert limits.remaining < limits.maximum


def test_records_by_id_return_only_those_that_exist(connector, salesforce_emulator):
    ids = seed_contacts(salesforce_emulator, 3)
    records = connector.read_by_ids(
        RecordQuery(object="Contact", fields=("Id", "Email"), ids=(ids[0], ids[2], "003000000000000AAA"))
    )
    assert sorted(r["Id"] for r in records) == sorted([ids[0], ids[2]])


def test_filter_renders_into_a_query_the_crm_accepts(connector, salesforce_emulator):
    seed_contacts(salesforce_emulator, 2, HasOptedOutOfEmail=False)
    seed_contacts(salesforce_emulator, 1, start=T0 + timedelta(days=1), HasOptedOutOfEmail=True)
    sync = ImportSync.model_validate(
        {
            "id": "s",
            "operation": "import",
            "connection": "c",
            "object": "Contact",
            "fields": [{"remote": "Email", "local": "email"}],
            "filter": {"field": "HasOptedOutOfEmail", "op": "eq", "value": 0},
        }
    )
    page = connector.read_first_page(
        window_query(filter=sync.filter, field_types={"HasOptedOutOfEmail": CrmFieldType.BOOLEAN})
    )
    assert len(page.records) == 2


def test_plain_http_instance_is_never_called(salesforce_oauth, fast_retry):
    from crmsync.config import SalesforceConnection
    from crmsync.connectors.http import CrmHttpSession

    with pytest.raises(ConfigurationError, match="non-https"):
        CrmHttpSession().get("http://127.0.0.1:1/services/data/")
    with pytest.raises(Exception, match="https"):
        SalesforceConnection.model_validate(
            {"kind": "salesforce", "name": "x", "instance_url": "http://x.example.com", "secret": "s"}
        )
