"""Dataverse id pages for the id-set comparison (SPEC D1) against the emulator over HTTPS."""

from __future__ import annotations

import json

import pytest

from crmsync.connectors.port import IdSetConnector
from crmsync.errors import ConfigurationError


def contacts(emulator, count):
    ids: list[str] = []
    for start in range(0, count, 10_000):
        rows = [{"lastname": f"Lima{i}"} for i in range(start, min(count, start + 10_000))]
        ids += emulator.control.put_records("contacts", rows)
    return ids


def all_ids(connector, object_name="contact"):
    page = connector.read_ids_first(object_name)
    ids, pages = list(page.ids), 1
    while page.next_cursor:
        page = connector.read_ids_next(page.next_cursor)
        ids += page.ids
        pages += 1
    return ids, pages


def test_the_connector_implements_the_id_set_port(dynamics):
    assert isinstance(dynamics, IdSetConnector)


def test_id_pages_list_every_id_5000_a_page_and_none_of_the_deleted(dynamics, dynamics_emulator):
    ids = contacts(dynamics_emulator, 5_010)
    for record_id in ids[:4]:
        dynamics_emulator.control.delete_record("contacts", record_id)

    found, pages = all_ids(dynamics)

    assert pages == 2
    assert sorted(found) == sorted(i.lower() for i in ids[4:])


def test_an_id_cursor_to_another_host_or_table_is_refused_before_any_call(dynamics, dynamics_emulator):
    contacts(dynamics_emulator, 5_001)
    cursor = json.loads(dynamics.read_ids_first("contact").next_cursor)
    page = json.loads(cursor["page"])
    calls = dynamics.api_calls

    stolen = {
        **cursor,
        "page": json.dumps(
            {**page, "link": page["link"].replace(dynamics_emulator.url, "https://evil.example.com")}
        ),
    }
    with pytest.raises(ConfigurationError, match=r"only 127\.0\.0\.1"):
        dynamics.read_ids_next(json.dumps(stolen))
    with pytest.raises(ConfigurationError, match="not a Dynamics id cursor"):
        dynamics.read_ids_next("https://evil.example.com/steal")
    assert dynamics.api_calls == calls


def test_reading_100000_ids_takes_twenty_pages(dynamics, dynamics_emulator, capsys):
    contacts(dynamics_emulator, 100_000)

    found, pages = all_ids(dynamics)

    assert (len(found), len(set(found)), pages) == (100_000, 100_000, 20)
    # msal's openid-configuration and token calls, the table's definition (entity set and primary id),
    # twenty pages of 5,000
    assert dynamics.api_calls == 23
    assert sum(n for key, n in dynamics_emulator.control.stats()["calls"].items() if "/contacts" in key) == 20
    with capsys.disabled():
        print(f"\nDynamics id-set read of 100,000 contacts: {dynamics.api_calls} API calls, token included")
