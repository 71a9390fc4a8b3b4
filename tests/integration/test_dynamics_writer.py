"""The Dynamics writer (Web API `$batch`) and one export batch, against the Dataverse emulator over HTTPS
(SPEC E1, E2, E4, D3, R1)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crmsync.config import parse_config
from crmsync.connectors.dynamics.writer import MAX_BATCH_RECORDS, DynamicsWriter
from crmsync.connectors.port import RecordWrite, WriteRequest
from crmsync.connectors.retry import RetryPolicy
from crmsync.errors import ConfigurationError, CrmOutcomeUnknown
from crmsync.services.export_batch import BatchExporter, SnapshotRecord
from crmsync.services.export_plan import resolve_export_plan

BATCH = "POST /api/data/v9.2/$batch"
BATCH_MATCH = r"^POST /api/data/v9\.2/\$batch"


@dataclass
class Journal:
    job_id: str | None = None

    def record_job(self, job_id):
        self.job_id = job_id


@pytest.fixture
def crm(dynamics_emulator):
    dynamics_emulator.control.reset_stats()
    return dynamics_emulator


@pytest.fixture
def writer(dynamics):
    return DynamicsWriter(dynamics)


def people(n, start=0, **fields):
    return tuple(
        RecordWrite(
            f"p{i}",
            {
                "lastname": f"Lima{i}",
                "emailaddress1": f"p{i}@example.com",
                "new_marketingprofileid": f"p{i}",
                **fields,
            },
        )
        for i in range(start, start + n)
    )


def insert(records):
    return WriteRequest("contact", "insert", records, match_field="new_marketingprofileid")


def batch_calls(crm) -> int:
    return int(crm.control.stats()["calls"].get(BATCH, 0))


def contacts(crm):
    return crm.control.records("contacts")


def test_an_insert_of_1500_records_takes_two_batch_calls_and_answers_each_record_with_its_id(crm, writer):
    results = writer.write(insert(people(1500)), Journal())
    assert MAX_BATCH_RECORDS == 1000
    assert batch_calls(crm) == 2
    assert [r.ref for r in results] == [f"p{i}" for i in range(1500)]
    assert all(r.success and r.created for r in results)
    stored = {c["new_marketingprofileid"]: c["contactid"] for c in contacts(crm)}
    assert {r.ref: r.crm_id for r in results} == stored


def test_an_update_changes_the_record_by_id_and_never_creates_a_missing_one(crm, writer):
    (created,) = writer.write(insert(people(1)), Journal())
    ghost = "00000000-0000-0000-0000-00000000abcd"
    updated = writer.write(
        WriteRequest(
            "contact",
            "update",
            (
                RecordWrite("p0", {"contactid": created.crm_id, "lastname": "Changed"}),
                RecordWrite("ghost", {"contactid": ghost, "lastname": "Nobody"}),
            ),
            key_field="contactid",
        ),
        Journal(),
    )
    assert (updated[0].success, updated[0].created, updated[0].crm_id) == (True, False, created.crm_id)
    assert updated[1].errors[0].code == "0x80040217"
    assert [c["lastname"] for c in contacts(crm)] == ["Changed"]


def test_an_upsert_by_alternate_key_reports_created_then_updated(crm, writer):
    def upsert(lastname):
        return WriteRequest(
            "contact",
            "upsert",
            (RecordWrite("p0", {"emailaddress1": "ada@example.com", "lastname": lastname}),),
            key_field="emailaddress1",
        )

    (first,) = writer.write(upsert("Lovelace"), Journal())
    (second,) = writer.write(upsert("King"), Journal())
    assert (first.created, second.created) == (True, False)
    assert first.crm_id == second.crm_id
    assert [(c["emailaddress1"], c["lastname"]) for c in contacts(crm)] == [("ada@example.com", "King")]


def test_quotes_in_an_alternate_key_value_cannot_inject_into_the_key(crm, writer):
    crm.control.put_records("contacts", [{"lastname": "Victim", "emailaddress1": "victim@example.com"}])
    tricky = "o'brien@example.com',emailaddress1='victim@example.com"
    (result,) = writer.write(
        WriteRequest(
            "contact",
            "upsert",
            (RecordWrite("p0", {"emailaddress1": tricky, "lastname": "Obrien"}),),
            key_field="emailaddress1",
        ),
        Journal(),
    )
    assert result.created
    assert sorted((c["emailaddress1"], c["lastname"]) for c in contacts(crm)) == [
        (tricky, "Obrien"),
        ("victim@example.com", "Victim"),
    ]


def test_an_upsert_key_field_that_is_not_a_column_name_is_refused_before_any_call(crm, writer):
    request = WriteRequest("contact", "upsert", (RecordWrite("p0", {"x eq 1": "v"}),), key_field="x eq 1")
    with pytest.raises(ConfigurationError):
        writer.write(request, Journal())
    assert batch_calls(crm) == 0


def test_a_batch_with_one_bad_record_rejects_only_that_record_with_the_dataverse_code(crm, writer):
    records = (*people(2), RecordWrite("bad", {"lastname": "x" * 51}), *people(2, start=2))
    results = writer.write(insert(records), Journal())
    assert [r.ref for r in results if r.success] == ["p0", "p1", "p2", "p3"]
    (bad,) = [r for r in results if not r.success]
    assert bad.ref == "bad"
    assert bad.errors[0].code == "0x80044331"
    assert bad.errors[0].message
    assert len(contacts(crm)) == 4


def test_delete_removes_records_and_an_already_deleted_one_is_gone_not_rejected(crm, writer):
    created = writer.write(insert(people(2)), Journal())
    crm.control.delete_record("contacts", created[1].crm_id)
    request = WriteRequest(
        "contact",
        "delete",
        tuple(RecordWrite(r.ref, {"contactid": r.crm_id}) for r in created),
        key_field="contactid",
    )
    deleted, already = writer.write(request, Journal())
    assert (deleted.success, deleted.gone) == (True, False)
    assert (already.success, already.gone, already.errors) == (True, True, ())
    assert contacts(crm) == []


def test_a_dropped_answer_on_an_insert_batch_raises_outcome_unknown_with_the_batches_already_done(crm, writer):
    crm.control.add_fault(BATCH_MATCH, drop_response=True, after=1, times=1)
    with pytest.raises(CrmOutcomeUnknown) as unknown:
        writer.write(insert(people(1200)), Journal())
    assert [r.ref for r in unknown.value.completed] == [f"p{i}" for i in range(1000)]
    assert len(contacts(crm)) == 1200


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateway_error_on_an_insert_batch_is_an_unknown_outcome_never_sent_again_in_the_call(
    crm, writer, status
):
    crm.control.add_fault(BATCH_MATCH, status=status, after=1, times=1, after_apply=True)
    with pytest.raises(CrmOutcomeUnknown) as unknown:
        writer.write(insert(people(1200)), Journal())
    assert [r.ref for r in unknown.value.completed] == [f"p{i}" for i in range(1000)]
    assert len(contacts(crm)) == 1200


def test_a_429_with_retry_after_on_the_batch_is_waited_for_then_every_record_is_written_once(
    crm, make_dynamics_connector
):
    waits: list[float] = []
    retry = RetryPolicy(attempts=4, base_delay=0, sleep=waits.append)
    writer = DynamicsWriter(make_dynamics_connector(retry=retry))
    crm.control.add_fault(BATCH_MATCH, status=429, headers={"Retry-After": "7"}, times=2)
    results = writer.write(insert(people(10)), Journal())
    assert all(r.success for r in results)
    assert waits == [7.0, 7.0]
    assert len(contacts(crm)) == 10
    assert batch_calls(crm) == 3


def test_every_http_call_is_counted_in_api_calls(crm, writer):
    writer.write(insert(people(5)), Journal())
    before = writer.api_calls
    writer.write(insert(people(5, start=5)), Journal())
    assert writer.api_calls - before == 1


def test_find_looks_up_many_values_in_a_few_calls_with_quotes_escaped(crm, writer):
    writer.write(insert(people(1500)), Journal())
    crm.control.put_records("contacts", [{"lastname": "Quote", "new_marketingprofileid": "it's"}])
    crm.control.reset_stats()
    wanted = [f"p{i}" for i in range(0, 1500, 2)] + ["it's", "missing", "x') or (1 eq 1"]
    rows = writer.find("contact", "new_marketingprofileid", wanted, ["new_marketingprofileid"])
    assert sorted(r["new_marketingprofileid"] for r in rows) == sorted([*wanted[:750], "it's"])
    assert all(r["contactid"] for r in rows)
    assert sum(crm.control.stats()["calls"].values()) <= 2


# -- one export batch: an uncertain insert is resolved by the correlation field ------------------------------
def export_plan(connector):
    config = parse_config(
        {
            "version": 1,
            "connections": [
                {
                    "name": "dyn",
                    "kind": "dynamics",
                    "instance_url": "https://org.crm.dynamics.com",
                    "tenant_id": "contoso.onmicrosoft.com",
                    "secret": "s",
                }
            ],
            "syncs": [
                {
                    "id": "people",
                    "operation": "export",
                    "connection": "dyn",
                    "object": "contact",
                    "correlation_field": "new_marketingprofileid",
                    "fields": [
                        {"remote": "lastname", "local": "lastName"},
                        {"remote": "emailaddress1", "local": "email"},
                    ],
                }
            ],
        }
    )
    return resolve_export_plan(config.syncs[0], connector.describe, "dynamics")


def population(n):
    return [SnapshotRecord(f"p{i}", {"lastName": f"Lima{i}", "email": f"p{i}@example.com"}) for i in range(n)]


def test_an_export_batch_resolves_a_dropped_insert_batch_by_correlation_value_without_duplicates(crm, dynamics):
    plan = export_plan(dynamics)
    crm.control.add_fault(BATCH_MATCH, drop_response=True, after=1, times=1)
    result = BatchExporter(
        plan, DynamicsWriter(dynamics), lambda slot: Journal(), bulk=False, interrupted=False
    ).export(population(1500))
    assert result.counts()["created"] == 1500
    stored = contacts(crm)
    assert len(stored) == 1500
    assert sorted(c["new_marketingprofileid"] for c in stored) == sorted(f"p{i}" for i in range(1500))
    links = {link.profile_id: link.crm_id for link in result.links}
    assert links == {c["new_marketingprofileid"]: c["contactid"] for c in stored}


def test_an_export_batch_resolves_a_half_applied_batch_and_sends_only_what_is_missing(crm, dynamics):
    plan = export_plan(dynamics)
    exporter = BatchExporter(plan, DynamicsWriter(dynamics), lambda slot: Journal(), bulk=False, interrupted=True)
    first = population(10)[:4]
    BatchExporter(plan, DynamicsWriter(dynamics), lambda slot: Journal(), bulk=False, interrupted=False).export(
        first
    )
    crm.control.reset_stats()
    result = exporter.export(population(10))
    assert result.counts()["created"] == 10
    assert len(contacts(crm)) == 10
    assert batch_calls(crm) == 1
