"""How the CLI shows syncs and runs: `status`, `runs SYNC` (readable at 80 columns), `runs show` and the
progress of `run --wait`. Rendering only: what is shown comes from `crmsync.services.insight` and the run
ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from crmsync.domain.conversions import parse_stored_time
from crmsync.domain.schedules import rate_interval
from crmsync.services.insight import StepTime, SyncStatus, run_seconds

COLOURS = {"SUCCEEDED": "green", "FAILED": "red", "REFUSED": "yellow", "RUNNING": "cyan"}
SHORT_ID = 6
STEP_UNIT = {"import": "page", "import_deleted": "page", "export": "batch", "delete": "batch"}


def short_id(run_id: Any) -> str:
    """The last characters of a run id: unique in practice, and what `runs show` accepts."""
    return str(run_id or "")[-SHORT_ID:]


def duration(seconds: float | None, *, coarse: bool = False) -> str:
    """A span: 42s, 1m05s, 3h05m, 4d02h; `coarse` for a narrow column: 42s, 19m, 3h05m, 4d."""
    if seconds is None:
        return "-"
    whole = abs(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m" if coarse else f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86_400:
        return f"{whole // 3600}h{(whole % 3600) // 60:02d}m"
    return f"{whole // 86_400}d" if coarse else f"{whole // 86_400}d{(whole % 86_400) // 3600:02d}h"


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or, for a future moment, how soon)."""
    if moment is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    return f"in {duration(seconds, coarse=True)}" if seconds < 0 else f"{duration(seconds, coarse=True)} ago"


def coloured(status: Any) -> str:
    text = str(status or "-")
    colour = COLOURS.get(text)
    return f"[{colour}]{text}[/{colour}]" if colour else escape(text)


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def first_count(result: dict[str, Any], *keys: str) -> Any:
    return next((result[k] for k in keys if isinstance(result.get(k), int)), None)


def error_message(result: dict[str, Any]) -> str:
    error = result.get("error") if isinstance(result.get("error"), dict) else None
    if not error:
        return ""
    return str(error.get("message") or error.get("type") or "")


def runs_table(sync_id: str, records: list[dict[str, Any]], now: datetime | None = None) -> Group:
    """Latest runs, one line each within 80 columns, then each failed run's error message in full."""
    table = Table(
        title=f"runs of {sync_id}", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True
    )
    for column in ("started", "run", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("took", "read", "new", "upd", "rej"):
        table.add_column(column, justify="right", no_wrap=True)
    results = [r.get("result") if isinstance(r.get("result"), dict) else {} for r in records]
    deletes = any(isinstance(r, dict) and r.get("deleted") for r in results)
    if deletes:
        table.add_column("del", justify="right", no_wrap=True)
    errors: list[str] = []
    for record, result in zip(records, results, strict=True):
        assert isinstance(result, dict)
        started = parse_stored_time(record.get("startedAt"))
        cells = [
            started.strftime("%m-%d %H:%M") if started else "-",
            short_id(record.get("runId")),
            coloured(record.get("status")),
            duration(run_seconds(record, now)),
            count(first_count(result, "read", "selected", "reported", "compared")),
            count(result.get("created")),
            count(result.get("updated")),
            count(result.get("rejected")),
        ]
        if deletes:
            cells.append(count(result.get("deleted")))
        table.add_row(*cells)
        message = error_message(result)
        if message:
            kind = (result.get("error") or {}).get("type") or ""
            errors.append(f"[bold]{short_id(record.get('runId'))}[/bold] {escape(kind)}: {escape(message)}")
    notes = Text.from_markup("\n".join(errors)) if errors else Text("")
    hint = Text("crmsync runs show RUN (the short id is enough) for the details", style="dim")
    return Group(table, notes, hint) if errors else Group(table, hint)


def run_details(record: dict[str, Any], steps: list[StepTime], logs: str, summary: Table) -> list[Any]:
    """`runs show`: the summary (window, every count, CRM calls and allowance, the error), the run's
    times, the time per step and where its logs are."""
    times = Table(show_header=False, box=box.SIMPLE, pad_edge=False)
    times.add_column("", style="bold")
    times.add_column("", overflow="fold")
    times.add_row("sync", escape(str(record.get("syncId"))))
    times.add_row("trigger", escape(str(record.get("trigger", "-"))))
    times.add_row("started", str(record.get("startedAt", "-")))
    times.add_row("ended", str(record.get("endedAt") or "(running)"))
    times.add_row("duration", duration(run_seconds(record)))
    progress = record.get("progress")
    if record.get("status") == "RUNNING" and isinstance(progress, dict) and progress:
        times.add_row("so far", progress_text(str(record.get("operation")), progress))
    times.add_row("logs", escape(logs))
    parts: list[Any] = [summary, times]
    if steps:
        table = Table(title="time per step", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("step")
        table.add_column("times", justify="right")
        table.add_column("took", justify="right")
        for step in steps:
            table.add_row(escape(step.state), str(step.entered), duration(step.seconds))
        parts.append(table)
    return parts


def status_table(statuses: list[SyncStatus], now: datetime | None = None) -> Table:
    """One line per sync; `status --json` has every value in full (the watermark's, the object, the
    schedule's expression and time zone)."""
    now = now or datetime.now(UTC)
    table = Table(
        title="crmsync status", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True
    )
    table.add_column("sync", no_wrap=True)
    table.add_column("operation", no_wrap=True)
    table.add_column("last run", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("read", justify="right", no_wrap=True)
    table.add_column("mark")
    table.add_column("rej", justify="right", no_wrap=True)
    table.add_column("next")
    for status in statuses:
        last = status.last_run
        if status.running:
            last_text = f"[cyan]RUNNING[/cyan]\n{short_id(status.running.get('run_id'))}"
        elif last:
            last_text = f"{coloured(last['status'])}\n{age(parse_stored_time(last['started_at']), now)}"
        else:
            last_text = "never"
        counts = (last or {}).get("counts") or {}
        mark = status.watermark
        interval = rate_interval(status.schedule) if status.schedule else None
        if not status.enabled:
            upcoming = "disabled"
        elif status.next_run:
            upcoming = age(parse_stored_time(status.next_run), now)
        elif interval is not None:
            upcoming = f"every {duration(interval.total_seconds(), coarse=True)}"
        else:
            upcoming = escape(status.schedule or "manual")
        table.add_row(
            escape(status.sync_id),
            f"{status.operation}\n[dim]{escape(status.connection)}[/dim]",
            last_text,
            duration((last or {}).get("duration_seconds")) if last else "-",
            count(first_count(counts, "read", "selected")),
            age(parse_stored_time(mark["updated_at"]) or now, now) if mark else "-",
            count(status.rejects_waiting),
            upcoming,
        )
    failed = [s.sync_id for s in statuses if (s.last_run or {}).get("status") == "FAILED"]
    if failed:
        table.caption = f"[red]last run failed: {escape(', '.join(failed))}[/red] (crmsync runs SYNC)"
    return table


def progress_text(operation: str, progress: dict[str, Any]) -> str:
    unit = STEP_UNIT.get(operation, "step")
    steps, total = progress.get("steps", 0), progress.get("total")
    plural = unit + ("es" if unit == "batch" else "s")
    parts = [f"{steps:,}/{total:,} {plural}" if total else f"{steps:,} {plural if steps != 1 else unit}"]
    for key in ("read", "selected", "reported", "compared", "created", "updated", "deleted", "rejected"):
        if isinstance(progress.get(key), int) and progress[key]:
            parts.append(f"{progress[key]:,} {key}")
    return " · ".join(parts)


class RunProgress:
    """`run --wait`'s live line: a bar when the number of batches is known, pages and records as the run's
    item reports them."""

    def __init__(self, console: Any, run_id: str, operation: str) -> None:
        self.operation = operation
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID = self.progress.add_task(f"run {short_id(run_id)}", total=None, detail="starting")

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, record: dict[str, Any] | None) -> None:
        progress = (record or {}).get("progress")
        if not isinstance(progress, dict):
            return
        total = progress.get("total")
        self.progress.update(
            self.task,
            total=total if isinstance(total, int) and total > 0 else None,
            completed=int(progress.get("steps", 0)),
            detail=progress_text(self.operation, progress),
        )
