"""What the CLI shows of runs and syncs, rendered as an 80-column terminal would."""

from datetime import UTC, datetime

from rich.console import Console

from crmsync.services.insight import SyncStatus
from crmsync_local import views

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FAILED_RUN = {
    "runId": "sf-contacts-manual-20261207T100000Z-4f2a9c",
    "status": "FAILED",
    "startedAt": "2026-12-07T10:00:00+00:00",
    "endedAt": "2026-12-07T10:01:05+00:00",
    "result": {
        "read": 12000,
        "created": 11000,
        "updated": 900,
        "rejected": 100,
        "error": {"type": "CrmAuthenticationFailed", "message": "invalid_grant: expired client secret"},
    },
}


def rendered(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_runs_fit_80_columns_with_short_ids_durations_counts_and_the_error_message():
    text = rendered(views.runs_table("sf-contacts", [FAILED_RUN], now=NOW))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "4f2a9c" in text
    assert "1m05s" in text
    assert "12,000" in text
    assert "11,000" in text
    assert "FAILED" in text
    assert "4f2a9c CrmAuthenticationFailed: invalid_grant: expired client secret" in text


def test_a_running_run_counts_its_time_so_far():
    running = {"runId": "r-abcdef", "status": "RUNNING", "startedAt": "2026-12-07T11:58:00+00:00"}
    assert "2m00s" in rendered(views.runs_table("s", [running], now=NOW))


def test_progress_says_batches_done_of_the_total_and_the_records():
    text = views.progress_text("export", {"steps": 3, "total": 8, "selected": 0, "created": 2500, "rejected": 4})
    assert text == "3/8 batches · 2,500 created · 4 rejected"


def test_progress_of_an_import_counts_pages_and_records_read():
    assert views.progress_text("import", {"steps": 2, "read": 4000, "pages": 2}) == "2 pages · 4,000 read"


def test_status_names_the_syncs_whose_last_run_failed():
    status = SyncStatus(
        sync_id="sf-contacts",
        operation="import",
        connection="sf-prod",
        crm="salesforce",
        object="Contact",
        enabled=True,
        schedule="cron(0/20 * * * ? *)",
        schedule_timezone="UTC",
        next_run="2026-12-07T12:20:00+00:00",
        last_run={"status": "FAILED", "started_at": FAILED_RUN["startedAt"], "duration_seconds": 65, "counts": {}},
        watermark=None,
        rejects_waiting=100,
    )
    text = rendered(views.status_table([status], now=NOW), width=100)
    assert "last run failed: sf-contacts" in text
    assert "in 20m" in text
    assert "2h00m ago" in text


def test_progress_says_one_page_in_the_singular():
    assert views.progress_text("import", {"steps": 1, "read": 199}) == "1 page · 199 read"
