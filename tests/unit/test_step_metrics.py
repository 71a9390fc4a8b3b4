"""What every step emits besides its result: metrics with the sync as a dimension (one custom metric per
sync, never per run), a run's duration at its end, the CRM's allowance, and the run's progress."""

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from crmsync import runtime
from crmsync.services.runs import RunIdentity


class Totals(BaseModel):
    read: int = 0
    created: int = 0
    pages: int = 0


class PageState(BaseModel):
    run: RunIdentity
    totals: Totals = Totals()
    crm_api_usage: dict[str, int] | None = None


class Summary(BaseModel):
    sync_id: str
    run_id: str
    status: str


class Ledger:
    def __init__(self):
        self.added = []

    def add_progress(self, key, counts, *, total=None):
        self.added.append((key.run_id, counts, total))
        return True


@pytest.fixture
def ledger(monkeypatch):
    runs = Ledger()
    monkeypatch.setattr(runtime, "container", lambda: SimpleNamespace(runs=runs))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "crmsync")
    return runs


def context():
    return SimpleNamespace(
        function_name="crmsync-import-page",
        memory_limit_in_mb="512",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:crmsync-import-page",
        aws_request_id="req-1",
    )


def emitted(capsys, dimensions=("service", "sync")) -> dict:
    """The Embedded Metric Format line Powertools printed for the invocation, with these dimensions."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return next(
        line
        for line in lines
        if "_aws" in line and sorted(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == list(dimensions)
    )


def run(started_at: str = "2026-12-07T03:00:00+00:00") -> dict:
    return {"sync_id": "sf-contacts", "run_id": "sf-contacts-manual-x", "started_at": started_at}


def page(request: PageState, _container) -> PageState:
    return request.model_copy(
        update={
            "totals": Totals(read=2000, created=1990, pages=1),
            "crm_api_usage": {"used": 25, "max": 100, "remaining": 75},
        }
    )


def test_a_page_step_counts_its_records_under_the_sync_dimension(ledger, capsys):
    handler = runtime.step_handler(PageState, page, name="import_page")
    handler({"run": run()}, context())
    line = emitted(capsys)
    assert [sorted(d) for d in line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]] == [["service", "sync"]]
    assert (line["sync"], line["RecordsRead"], line["RecordsCreated"]) == ("sf-contacts", [2000.0], [1990.0])


def test_every_metric_has_a_stack_wide_series_without_the_sync_for_alarms(ledger, capsys):
    runtime.step_handler(PageState, page, name="import_page")({"run": run()}, context())
    line = emitted(capsys, ("service",))
    assert "sync" not in line
    assert (line["StepInvocations"], line["RecordsRead"]) == ([1.0], [2000.0])


def test_the_crm_allowance_is_a_metric_when_a_step_read_it(ledger, capsys):
    runtime.step_handler(PageState, page, name="import_page")({"run": run()}, context())
    line = emitted(capsys)
    assert (line["CrmApiRemaining"], line["CrmApiUsedPercent"]) == ([75.0], [25.0])


def test_a_page_step_adds_its_counts_to_the_run_progress(ledger, capsys):
    runtime.step_handler(PageState, page, name="import_page")({"run": run()}, context())
    assert ledger.added == [("sf-contacts-manual-x", {"read": 2000, "created": 1990, "pages": 1}, None)]


def test_the_last_step_records_the_run_duration_and_status(ledger, capsys):
    started = (datetime.now(UTC) - timedelta(seconds=90)).isoformat()
    finish = runtime.step_handler(
        PageState,
        lambda r, _c: Summary(sync_id="sf-contacts", run_id="x", status="SUCCEEDED"),
        name="import_finish",
    )
    finish({"run": run(started)}, context())
    line = emitted(capsys)
    assert line["RunsSucceeded"] == [1.0]
    assert 89 <= line["RunDuration"][0] <= 120
    assert ledger.added == []


def test_a_scheduled_measure_emits_one_series_per_sync_and_their_maximum_stack_wide(ledger, capsys):
    from crmsync.services.rejects import ScheduledEvent, SyncGauge

    def measure(_event, _container):
        return SyncGauge(name="OldestRejectAge", unit="Seconds", values={"sf-contacts": 7200.0, "dyn-contacts": 0})

    handler = runtime.scheduled_handler(ScheduledEvent, measure, name="rejects_age")
    assert handler({"detail-type": "Scheduled Event", "detail": {}}, context())["values"]["sf-contacts"] == 7200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = [line for line in lines if "_aws" in line]
    per_sync = {line["sync"]: line["OldestRejectAge"] for line in metrics if "sync" in line}
    assert per_sync == {"sf-contacts": [7200.0], "dyn-contacts": [0.0]}
    dimensions = {
        tuple(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for line in metrics if "sync" in line
    }
    assert {tuple(sorted(d)) for d in dimensions} == {("service", "sync")}
    (stack_wide,) = [line for line in metrics if "sync" not in line]
    assert stack_wide["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert stack_wide["OldestRejectAge"] in (7200.0, [7200.0])
    assert {line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] for line in metrics} == {"Seconds"}
