"""Service protection limits and injected faults of the Dataverse Web API emulator."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def test_request_limit_answers_429_with_retry_after(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers()
    dynamics_emulator.control.configure(service_protection={"max_requests": 3, "window_seconds": 300})
    http = dynamics_emulator.http()

    answers = [http.get(f"{dynamics_emulator.api_url}/WhoAmI", headers=headers) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert answers[-1].json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
    }


def test_every_answer_reports_the_remaining_request_budget(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/WhoAmI", headers=dynamics_emulator.headers()
    )

    assert int(response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 5999
    assert "x-ms-ratelimit-time-remaining-xrm-requests" in response.headers


def test_concurrent_request_limit_answers_429(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers()
    control = dynamics_emulator.control
    control.configure(service_protection={"max_concurrent": 1})
    control.add_fault(r"^GET /api/data/v9\.2/WhoAmI", latency_ms=2000)
    slow: list[requests.Response] = []
    worker = threading.Thread(
        target=lambda: slow.append(
            dynamics_emulator.http().get(f"{dynamics_emulator.api_url}/WhoAmI", headers=headers)
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while not control.stats()["calls"].get("GET /api/data/v9.2/WhoAmI") and time.monotonic() < deadline:
        time.sleep(0.02)  # counted means admitted: the slow request is now in flight

    second = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers
    )
    worker.join()

    assert second.status_code == 429
    assert second.json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 1.",
    }
    assert "Retry-After" in second.headers
    assert slow[0].status_code == 200


def test_injected_429_answers_in_dataverse_shape_with_retry_after(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    headers = dynamics_emulator.headers()
    dynamics_emulator.control.add_fault(r"^GET /api/data/v9\.2/contacts", status=429, headers={"Retry-After": "7"})
    http = dynamics_emulator.http()

    throttled = http.get(f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers)
    retried = http.get(f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers)

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "0x80072322"
    assert retried.status_code == 200


def test_injected_fault_on_the_token_endpoint_answers_in_aad_shape(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.add_fault(r"^POST /.*/oauth2/v2\.0/token", status=429, headers={"Retry-After": "3"})

    result = dynamics_emulator.msal_app().acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert result["error"] == "temporarily_unavailable"
    assert result["error_codes"]


def test_calls_are_counted_per_web_api_resource(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers()
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Counted"}])
    dynamics_emulator.control.reset_stats()
    http = dynamics_emulator.http()

    http.get(f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers)
    http.get(f"{dynamics_emulator.api_url}/contacts({contact_id})", headers=headers)

    assert dynamics_emulator.control.stats()["calls"] == {
        "GET /api/data/v9.2/contacts": 1,
        "GET /api/data/v9.2/contacts({key})": 1,
    }


def test_dropped_response_still_applies_the_write(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers()
    dynamics_emulator.control.add_fault(r"^POST /api/data/v9\.2/contacts", drop_response=True)

    with pytest.raises(requests.ConnectionError):
        dynamics_emulator.http().post(
            f"{dynamics_emulator.api_url}/contacts", json={"lastname": "Applied"}, headers=headers
        )

    assert [r["lastname"] for r in dynamics_emulator.control.records("contacts")] == ["Applied"]
