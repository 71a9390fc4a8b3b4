"""Injected faults, API limits, call statistics and the emulated clock, as simple-salesforce meets them."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)


def test_injected_401_then_the_next_call_recovers(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.add_fault(r"^GET /services/data/v[\d.]+/query", status=401, times=1)

    with pytest.raises(SalesforceExpiredSession) as raised:
        salesforce_client.query("SELECT Id FROM Contact")
    assert raised.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert salesforce_client.query("SELECT Id FROM Contact")["totalSize"] == 0


def test_spent_daily_api_limit_is_request_limit_exceeded(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.configure(daily_api_limit=3)
    for _ in range(3):
        salesforce_client.query("SELECT Id FROM Contact")

    with pytest.raises(SalesforceRefusedRequest) as raised:
        salesforce_client.query("SELECT Id FROM Contact")
    assert raised.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_limit_info_header_counts_towards_the_configured_maximum(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.configure(daily_api_limit=500, api_requests_used=120)

    salesforce_client.query("SELECT Id FROM Contact")

    usage = salesforce_client.api_usage["api-usage"]
    assert (usage.used, usage.total) == (121, 500)


def test_injected_403_has_the_request_limit_shape(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.add_fault("sobjects/Contact", status=403)

    with pytest.raises(SalesforceRefusedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Refused"})
    assert raised.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_injected_503_is_server_unavailable(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.add_fault("/query", status=503, times=2)

    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as raised:
            salesforce_client.query("SELECT Id FROM Contact")
        assert raised.value.status == 503
        assert raised.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert salesforce_client.query("SELECT Id FROM Contact")["done"] is True


def test_injected_500_is_unknown_exception(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.add_fault("/limits", status=500)

    with pytest.raises(SalesforceGeneralError) as raised:
        salesforce_client.limits()
    assert raised.value.content[0]["errorCode"] == "UNKNOWN_EXCEPTION"


def test_injected_429_asks_to_retry_later(salesforce_emulator):
    salesforce_emulator.control.add_fault("/limits", status=429)

    response = salesforce_emulator.http().get(
        salesforce_emulator.api_url("limits"), headers={"Authorization": f"Bearer {salesforce_emulator.token()}"}
    )

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_injected_fault_on_the_token_endpoint_has_the_oauth_shape(salesforce_emulator, salesforce_oauth):
    salesforce_emulator.control.add_fault("oauth2/token", status=503)

    response = salesforce_emulator.http().post(
        salesforce_oauth.token_url, data=salesforce_oauth.client_credentials_form()
    )

    assert response.status_code == 503
    assert set(response.json()) == {"error", "error_description"}


def test_dropped_response_applies_the_write_but_the_client_sees_a_connection_error(
    salesforce_emulator, salesforce_client
):
    salesforce_emulator.control.add_fault(r"^POST .*/sobjects/Contact/?$", drop_response=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        salesforce_client.Contact.create({"LastName": "Phantom"})
    assert [r["LastName"] for r in salesforce_emulator.control.records("Contact")] == ["Phantom"]


def test_latency_delays_the_answer(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.add_fault("/limits", latency_ms=300)

    started = time.perf_counter()
    salesforce_client.limits()

    assert time.perf_counter() - started >= 0.3


def test_stats_count_calls_per_path_template_and_skip_control_calls(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.reset_stats()
    record_id = salesforce_client.Contact.create({"LastName": "Counted"})["id"]
    salesforce_client.Contact.get(record_id)
    salesforce_client.Contact.get(record_id)
    salesforce_emulator.control.records("Contact")

    stats = salesforce_emulator.control.stats()

    assert stats["calls"] == {
        "POST /services/data/<apiversion:version>/sobjects/<sobject>": 1,
        "GET /services/data/<apiversion:version>/sobjects/<sobject>/<record_id>": 2,
    }
    assert stats["total"] == 3


def test_date_header_follows_the_emulated_clock(salesforce_emulator):
    salesforce_emulator.control.set_clock("2024-07-01T10:00:00Z")

    response = salesforce_emulator.http().get(f"{salesforce_emulator.url}/services/data/")

    assert response.headers["Date"] == "Mon, 01 Jul 2024 10:00:00 GMT"
    assert parsedate_to_datetime(response.headers["Date"]).year == 2024


def test_clock_can_be_read_advanced_and_returned_to_real_time(salesforce_emulator):
    control = salesforce_emulator.control
    control.set_clock("2024-07-01T10:00:00Z")

    assert control.advance_clock(90)["now"] == "2024-07-01T10:01:30.000+0000"
    assert control.clock()["frozen"] is True
    assert control.use_real_clock()["real_time"] is True


def test_a_ticking_clock_moves_on_from_the_set_instant(salesforce_emulator):
    salesforce_emulator.control.set_clock("2030-01-01T00:00:00Z", frozen=False)
    time.sleep(0.05)

    now = salesforce_emulator.control.clock()["now"]
    assert now.startswith("2030-01-01T00:00:00.")
    assert now != "2030-01-01T00:00:00.000+0000"


def test_reset_forgets_records_faults_and_config(salesforce_emulator, salesforce_client):
    salesforce_client.Contact.create({"LastName": "Forgotten"})
    salesforce_emulator.control.add_fault("/query", status=503, times=None)
    salesforce_emulator.control.configure(query_page_size=5)

    salesforce_emulator.control.reset()

    assert salesforce_emulator.control.faults() == []
    assert salesforce_emulator.control.config()["query_page_size"] is None
    assert salesforce_emulator.client().query("SELECT COUNT() FROM Contact")["totalSize"] == 0
