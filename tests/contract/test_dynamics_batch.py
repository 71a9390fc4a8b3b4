"""`$batch` against the Dataverse Web API emulator, with request bodies written as the documentation shows."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import requests

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle

CRLF = "\r\n"


def _request(method: str, url: str, body: dict[str, Any] | None = None, content_id: int | None = None) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    lines = [*head, "", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines += ["Content-Type: application/json; type=entry", "", json.dumps(body)]
    else:
        lines += ["", ""]
    return CRLF.join(lines)


def _body(parts: list[str | list[str]], boundary: str) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, list):
            changeset = f"changeset_{uuid.uuid4()}"
            inner = "".join(f"--{changeset}{CRLF}{request}{CRLF}" for request in part)
            out.append(
                f"--{boundary}{CRLF}Content-Type: multipart/mixed; boundary={changeset}{CRLF}{CRLF}{inner}--{changeset}--{CRLF}"
            )
        else:
            out.append(f"--{boundary}{CRLF}{part}{CRLF}")
    return "".join(out) + f"--{boundary}--{CRLF}"


def _post_batch(
    emulator: DynamicsEmulatorHandle, parts: list[str | list[str]], **headers: str
) -> requests.Response:
    boundary = f"batch_{uuid.uuid4()}"
    return emulator.http().post(
        f"{emulator.api_url}/$batch",
        data=_body(parts, boundary).encode(),
        headers=emulator.headers(**{"Content-Type": f'multipart/mixed; boundary="{boundary}"', **headers}),
    )


def _statuses(response: requests.Response) -> list[int]:
    return [int(code) for code in re.findall(r"^HTTP/1\.1 (\d{3}) ", response.text, flags=re.MULTILINE)]


def test_changeset_content_id_reference_binds_the_created_record(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    api = "/api/data/v9.2"
    response = _post_batch(
        dynamics_emulator,
        [
            [
                _request("POST", f"{api}/accounts", {"name": "ACME"}, content_id=1),
                _request(
                    "POST",
                    f"{api}/contacts",
                    {"lastname": "Ref", "parentcustomerid_account@odata.bind": "$1"},
                    content_id=2,
                ),
            ]
        ],
    )

    assert response.status_code == 200
    assert re.match(r"multipart/mixed; boundary=batchresponse_[0-9a-f-]{36}$", response.headers["Content-Type"])
    assert "Content-Type: multipart/mixed; boundary=changesetresponse_" in response.text
    assert "Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\n" in response.text
    (account,) = dynamics_emulator.control.records("accounts")
    (contact,) = dynamics_emulator.control.records("contacts")
    assert contact["_parentcustomerid_value"] == account["accountid"]


def test_continue_on_error_runs_every_part_and_reports_the_bad_one(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    response = _post_batch(
        dynamics_emulator,
        [
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "x" * 60}),
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "Second"}),
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "Third"}),
        ],
        Prefer="odata.continue-on-error",
    )

    assert response.status_code == 200
    assert _statuses(response) == [400, 204, 204]
    assert '{"error":{"code":"0x80044331"' in response.text
    assert sorted(r["lastname"] for r in dynamics_emulator.control.records("contacts")) == ["Second", "Third"]


def test_without_continue_on_error_the_batch_stops_at_the_first_failure(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    response = _post_batch(
        dynamics_emulator,
        [
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "First"}),
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "x" * 60}),
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "Never"}),
        ],
    )

    assert response.status_code == 400
    assert _statuses(response) == [204, 400]
    assert [r["lastname"] for r in dynamics_emulator.control.records("contacts")] == ["First"]


def test_a_failing_request_rolls_back_its_changeset(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _post_batch(
        dynamics_emulator,
        [
            [
                _request("POST", "/api/data/v9.2/accounts", {"name": "Rolled back"}, content_id=1),
                _request("POST", "/api/data/v9.2/contacts", {"lastname": "Too", "gendercode": 99}, content_id=2),
            ],
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "Outside"}),
        ],
        Prefer="odata.continue-on-error",
    )

    assert _statuses(response) == [400, 204]
    assert "Content-ID: 2" in response.text
    assert dynamics_emulator.control.records("accounts") == []
    assert [r["lastname"] for r in dynamics_emulator.control.records("contacts")] == ["Outside"]


def test_batch_of_more_than_1000_requests_is_refused_before_running(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    parts: list[str | list[str]] = [
        _request("POST", "/api/data/v9.2/contacts", {"lastname": f"N{i}"}) for i in range(1001)
    ]

    response = _post_batch(dynamics_emulator, parts)

    assert response.status_code == 400
    assert "maximum number of '1000'" in response.json()["error"]["message"]
    assert dynamics_emulator.control.records("contacts") == []


def test_batch_of_exactly_1000_requests_runs(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    parts: list[str | list[str]] = [
        _request("POST", "/api/data/v9.2/contacts", {"lastname": f"N{i}"}) for i in range(1000)
    ]

    response = _post_batch(dynamics_emulator, parts)

    assert response.status_code == 200
    assert len(dynamics_emulator.control.records("contacts")) == 1000


def test_get_parts_answer_json_bodies_in_the_batch(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": "Read"}])

    response = _post_batch(
        dynamics_emulator, [_request("GET", f"{dynamics_emulator.api_url}/contacts?$select=lastname")]
    )

    assert _statuses(response) == [200]
    payload = response.text.split("\r\n\r\n")[2].split("\r\n--batchresponse_")[0]
    assert json.loads(payload)["value"][0]["lastname"] == "Read"


def test_get_inside_a_changeset_is_refused(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _post_batch(dynamics_emulator, [[_request("GET", "/api/data/v9.2/contacts", content_id=1)]])

    assert response.status_code == 400


def test_a_request_outside_a_changeset_gets_its_content_id_back(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _post_batch(
        dynamics_emulator,
        [
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "First"}, content_id=7),
            _request("POST", "/api/data/v9.2/contacts", {"lastname": "x" * 60}, content_id=8),
        ],
        Prefer="odata.continue-on-error",
    )

    assert re.findall(r"^Content-ID: (\d+)", response.text, flags=re.MULTILINE) == ["7", "8"]


def test_a_dropped_batch_answer_is_cut_after_every_part_was_applied(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.add_fault(r"^POST /api/data/v9\.2/\$batch", drop_response=True)
    with pytest.raises(requests.ConnectionError):
        _post_batch(
            dynamics_emulator,
            [_request("POST", "/api/data/v9.2/contacts", {"lastname": f"L{i}"}, content_id=i) for i in range(3)],
            Prefer="odata.continue-on-error",
        )

    assert len(dynamics_emulator.control.records("contacts")) == 3


def test_a_function_call_is_a_get_part_and_answers_as_alone(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    """A function (`RetrieveRecordChangeHistory`) is invoked with GET, which a batch takes outside any change
    set; each part answers what the call answers alone, and the stats count one call holding two requests."""
    dynamics_emulator.control.set_auditing(environment=True, tables={"contact": True})
    ids = dynamics_emulator.control.put_records("contacts", [{"lastname": "A"}, {"lastname": "B"}])
    function = "RetrieveRecordChangeHistory(Target=@t)?@t={{'@odata.id':'contacts({})'}}"
    dynamics_emulator.control.reset_stats()

    response = _post_batch(
        dynamics_emulator,
        [
            _request("GET", f"{dynamics_emulator.api_url}/{function.format(i)}", content_id=n)
            for n, i in enumerate(ids)
        ],
    )

    assert (response.status_code, _statuses(response)) == (200, [200, 200])
    bodies = [json.loads(line) for line in response.text.splitlines() if line.startswith("{")]
    assert [len(b["AuditDetailCollection"]["AuditDetails"]) for b in bodies] == [1, 1]  # each one's creation
    stats = dynamics_emulator.control.stats()
    assert {k: n for k, n in stats["calls"].items() if k.startswith(("GET /api", "POST /api"))} == {
        "POST /api/data/v9.2/$batch": 1
    }  # (the sign-in's metadata and token calls aside)
    assert stats["batched"] == {"GET /api/data/v9.2/RetrieveRecordChangeHistory({key})": 2}
