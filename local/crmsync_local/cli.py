"""`crmsync`, the operator's command line.

Every command but `demo` and `local up` talks to a deployed stack through the standard boto3 chain,
so `AWS_ENDPOINT_URL` points it at the local stack and nothing else changes. Exit codes: 0 success,
1 a run or command failed, 2 invalid input or configuration, 3 a run was refused (another one holds
the sync's lease).
"""

from __future__ import annotations

import csv
import json
import shlex
import signal
import sys
import threading
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from crmsync.config import CrmsyncConfig, config_json_schema, load_config_file
from crmsync.errors import ConfigurationError, CrmsyncError
from crmsync.registry import OPERATIONS, Operation, summary_fields
from crmsync.services import insight
from crmsync.services.deletion_imports import parse_period
from crmsync.services.operations import (
    ApplyReport,
    ConnectionCheck,
    Operator,
    consent_rows,
    data_loader_error_file,
)
from crmsync.services.schema import (
    check_config,
    load_snapshot,
    objects_of,
    save_snapshot,
    snapshot_folder,
    starting_mapping,
)
from crmsync_local import operator_logs, views

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="crmsync: keep a marketing database and a CRM in step."
)
config_app = typer.Typer(no_args_is_help=True, help="Validate and apply configuration files.")
watermark_app = typer.Typer(no_args_is_help=True, help="Read or move a sync's automatic index.")
SUMMARY_LABELS = {
    "reported": "deletions reported",
    "compared": "CRM ids compared",
    "checked": "local records checked",
    "already": "flagged before",
    "already_gone": "already gone in the CRM",
    "unknown": "never imported",
}


class _RunsGroup(TyperGroup):
    """`crmsync runs SYNC` lists a sync's runs, as it did before `runs show RUN` existed: anything that is
    not a subcommand is the `list` subcommand's argument."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


runs_app = typer.Typer(
    cls=_RunsGroup,
    no_args_is_help=True,
    help="A sync's runs (crmsync runs SYNC_ID) and one run in detail (crmsync runs show RUN_ID).",
)
rejects_app = typer.Typer(no_args_is_help=True, help="Inspect, export and replay the records a sync refused.")
local_app = typer.Typer(no_args_is_help=True, help="The embedded local environment (emulated AWS and CRMs).")
connection_app = typer.Typer(no_args_is_help=True, help="Check a CRM connection.")
consent_app = typer.Typer(
    no_args_is_help=True, help="The consent ledger: every opt-out change applied, from either side."
)
enumerations_app = typer.Typer(no_args_is_help=True, help="Read the enumerations enumeration syncs keep.")
schema_app = typer.Typer(
    no_args_is_help=True, help="Discover the CRM's objects and fields, write starting mappings, save snapshots."
)
events_app = typer.Typer(no_args_is_help=True, help="E-mail events on the CRM timeline: send, back-fill.")
app.add_typer(config_app, name="config")
app.add_typer(connection_app, name="connection")
app.add_typer(schema_app, name="schema")
app.add_typer(enumerations_app, name="enumerations")
app.add_typer(watermark_app, name="watermark")
app.add_typer(runs_app, name="runs")
app.add_typer(rejects_app, name="rejects")
app.add_typer(local_app, name="local")
app.add_typer(consent_app, name="consent")
app.add_typer(events_app, name="events")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("crmsync")
        except PackageNotFoundError:  # run from a source tree (PYTHONPATH), not installed
            from crmsync import __version__ as number
        sys.stdout.write(f"crmsync {number}\n")
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="CRMSYNC_LOG_LEVEL",
            help="What the terminal shows of the log lines of work the CLI does itself (transfer from a file, "
            "demo): debug, info, warning or error (the default: a reject is counted in the summary, its line "
            "is kept in the local stack's log file under `crmsync local up`).",
        ),
    ] = None,
) -> None:
    """crmsync: keep a marketing database and a CRM in step."""
    try:
        operator_logs.configure(log_level)
    except ValueError as bad:
        raise fail(f"--log-level: {bad}", 2) from None


console = Console()
errors = Console(stderr=True)

StackOption = Annotated[str, typer.Option("--stack", envvar="CRMSYNC_STACK", help="CloudFormation stack name.")]
RULES_DOC = "docs/rules.md of crmsync's repository"
STATUS_EXIT = {"SUCCEEDED": 0, "FAILED": 1, "REFUSED": 3}


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def operator(stack: str) -> Operator:
    try:
        return Operator(stack)
    except NoCredentialsError:
        raise fail(
            "no AWS credentials found (configure a profile, or point AWS_ENDPOINT_URL at a local stack)"
        ) from None
    except NoRegionError:
        raise fail("no AWS region set (AWS_REGION or a profile's region)") from None
    except ConfigurationError as exc:
        raise fail(str(exc), 2) from None


def read_config(path: Path) -> CrmsyncConfig:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from None
    try:
        return load_config_file(data, source=str(path))
    except ConfigurationError as exc:
        errors.print(f"[red]{path}: {len(exc.problems)} problem(s)[/red]", highlight=False, soft_wrap=True)
        for problem in exc.problems:
            errors.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
        if any("rule " in problem for problem in exc.problems):
            errors.print(f"(the rules are explained in {RULES_DOC})", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def guarded(call: Any) -> Any:
    """Run `call`, turning the errors an operator can act on into one clear line and an exit code."""
    try:
        return call()
    except ConfigurationError as exc:
        raise fail("; ".join(exc.problems), 2) from None
    except CrmsyncError as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None
    except (ClientError, BotoCoreError) as exc:
        raise fail(f"AWS: {exc}") from None
    except TimeoutError as exc:
        raise fail(str(exc)) from None


# ------------------------------------------------------------------------------------- config
@config_app.command("validate")
def config_validate(
    file: Path,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Check fields and types against the live CRMs (the stack's secrets) instead of snapshots.",
        ),
    ] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Validate FILE; exit 0, or 2 with one line per problem. Fields and types are checked against the
    schema snapshots beside FILE (`crmsync schema pull`), or the live CRMs with --online (rule S3)."""
    config = read_config(file)
    if online:
        op = operator(stack)
        connectors: dict[str, Any] = {}

        unreachable: dict[str, str] = {}

        def describe(connection: str, object_name: str) -> Any:
            if connection in unreachable:
                return None
            try:
                if connection not in connectors:
                    connectors[connection] = op.connector(connection, config)
                return connectors[connection].describe(object_name)
            except ConfigurationError:
                raise
            except CrmsyncError as exc:
                unreachable[connection] = f"{type(exc).__name__}: {exc}"
                return None

        check = guarded(lambda: check_config(config, describe))
        source = "the live CRMs"
        for connection, reason in unreachable.items():
            errors.print(f"[red]could not check the syncs of {connection}:[/red] {reason}", highlight=False)
        if unreachable and not check.problems:
            raise typer.Exit(1)
    else:
        folder = snapshot_folder(file, config)
        check = guarded(lambda: check_config(config, lambda c, o: load_snapshot(folder, c, o)))
        source = f"snapshots in {folder}"
    if check.problems:
        errors.print(
            f"[red]{file}: {len(check.problems)} problem(s) against {source}[/red]",
            highlight=False,
            soft_wrap=True,
        )
        for problem in check.problems:
            errors.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2)
    for note in check.notes:
        errors.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    checked = f"; {check.checked} sync(s) checked against {source}" if check.checked else ""
    console.print(
        f"[green]{file}: valid[/green] - {len(config.connections)} connection(s), {len(config.syncs)} sync(s)"
        f"{checked}",
        highlight=False,
    )


@config_app.command("apply")
def config_apply(
    file: Path,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (added, changed, removed) and change nothing.")
    ] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Make the stack's syncs FILE's: store its connections and syncs, create or update their schedules,
    and remove the syncs (definition and schedule) FILE no longer has; their data, watermarks and rejects
    stay. The plan is printed first."""
    config = read_config(file)
    op = operator(stack)
    plan = guarded(lambda: op.apply_config(config, dry_run=True))
    console.print(plan_table(plan, config, title=f"plan for {file} on stack {stack}"))
    for sync_id, why in plan.waiting.items():
        console.print(f"[yellow]{sync_id}: removal waits - {why}[/yellow]", highlight=False, soft_wrap=True)
    if dry_run:
        console.print("dry run: nothing was changed", highlight=False)
        return
    report = guarded(lambda: op.apply_config(config))
    table = Table(title=f"applied {file} to stack {stack}")
    for column in ("sync", "operation", "object", "schedule", "schedule change"):
        table.add_column(column)
    for sync, change in zip(config.syncs, report.schedules, strict=True):
        table.add_row(sync.id, sync.operation, sync.object, sync.schedule or "-", change.action)
    for change in report.removed:
        table.add_row(change.sync_id, "-", "-", change.expression or "-", change.action)
    console.print(table)
    for change in report.schedules:
        if change.backfill is not None:
            backfilled = change.backfill
            console.print(
                f"{change.sync_id}: {', '.join(backfilled.types)} switched on - back-fill of the last "
                f"{backfilled.days} days queued: {backfilled.sent} events",
                highlight=False,
            )


def plan_table(report: ApplyReport, config: CrmsyncConfig, title: str) -> Table:
    """One row per sync and connection the apply touches: added, changed, unchanged, removed."""
    plan = report.plan
    table = Table(title=title)
    for column in ("change", "sync or connection", "operation", "object"):
        table.add_column(column)
    syncs = {s.id: s for s in config.syncs}
    for change, ids in (("added", plan.added), ("changed", plan.changed), ("unchanged", plan.unchanged)):
        for sync_id in ids:
            table.add_row(change, sync_id, syncs[sync_id].operation, syncs[sync_id].object)
    for sync_id in plan.removed:
        table.add_row("removal waits" if sync_id in report.waiting else "removed", sync_id, "-", "-")
    for change, names in (
        ("added", plan.connections_added),
        ("changed", plan.connections_changed),
        ("removed", plan.connections_removed),
    ):
        for name in names:
            table.add_row(change, f"connection {name}", "-", "-")
    return table


@config_app.command("schema")
def config_schema(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Print (or write) the JSON Schema of configuration files, for editor completion."""
    text = json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------- connections
def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value or "")


def limits_table(check: ConnectionCheck) -> Table:
    """Salesforce reports each allowance as {Max, Remaining}; Dynamics what its service-protection
    headers say is left of the 5-minute window."""
    table = Table(title=f"API limits {check.connection} reports")
    for column in ("limit", "remaining", "maximum"):
        table.add_column(column, justify="left" if column == "limit" else "right")
    limits = check.limits
    if limits.maximum is not None and not limits.details:
        table.add_row("API requests", _count(limits.remaining), _count(limits.maximum))
    for name, value in limits.details.items():
        if isinstance(value, dict):
            table.add_row(name, _count(value.get("Remaining")), _count(value.get("Max")))
        else:
            table.add_row(name.replace("_", " "), _count(value), "")
    return table


@connection_app.command("test")
def connection_test(
    name: str,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Read the connection from FILE instead of the stack's applied definitions."),
    ] = None,
    show: Annotated[int, typer.Option("--show", help="How many visible objects to list.")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Sign in with NAME's secret, list the objects it can see and the API limits the CRM reports (C3)."""
    parsed = read_config(config) if config is not None else None
    check = guarded(lambda: operator(stack).check_connection(name, parsed))
    if as_json:
        payload = {
            "connection": check.connection,
            "kind": check.kind,
            "source": check.source,
            "objects": [asdict(o) for o in check.objects],
            "limits": {**asdict(check.limits), "remaining": check.limits.remaining},
            "api_calls": check.api_calls,
            "field_tracking": check.field_tracking,
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
        return
    custom = [o for o in check.objects if o.custom]
    console.print(
        f"[green]connection {check.connection} ({check.kind}, from {check.source}): signed in[/green] - "
        f"{len(check.objects):,} objects visible, {len(custom):,} custom; {check.api_calls} API calls",
        highlight=False,
    )
    table = Table(title=f"objects {check.connection} can see (custom first)")
    for column in ("name", "label", "custom"):
        table.add_column(column)
    ordered = custom + [o for o in check.objects if not o.custom]
    for item in ordered[:show]:
        table.add_row(item.name, item.label, "yes" if item.custom else "")
    if len(ordered) > show:
        table.caption = f"{len(ordered) - show:,} more (--show N, or --json)"
    console.print(table)
    console.print(limits_table(check))
    if check.field_tracking:
        console.print(tracking_table(check))


def tracking_table(check: ConnectionCheck) -> Table:
    """Per field a two-way sync maps: field history / auditing on, or only the record's time."""
    table = Table(title=f"where change times come from ({check.connection})")
    for column in ("sync", "field", "per-field changes", "times from", "why"):
        table.add_column(column)
    for row in check.field_tracking:
        table.add_row(
            row["sync"],
            f"{row['object']}.{row['field']}",
            "[green]on[/green]" if row["tracked"] else "[yellow]off[/yellow]",
            str(row["times_from"]).replace("_", " "),
            row.get("note") or ("" if row["tracked"] else "field history / auditing is off for this field"),
        )
    return table


# ------------------------------------------------------------------------------------- schema
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Read the connection from FILE instead of the stack's applied definitions."),
]


@schema_app.command("objects")
def schema_objects(
    connection: str,
    config: ConfigOption = None,
    custom: Annotated[bool, typer.Option("--custom", help="Only custom objects / tables.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """The CRM's objects, standard and custom: queryable, createable (SPEC S1)."""
    parsed = read_config(config) if config is not None else None
    objects = guarded(lambda: operator(stack).connector(connection, parsed).list_objects())
    objects = [o for o in objects if o.custom or not custom]
    if as_json:
        sys.stdout.write(json.dumps([asdict(o) for o in objects], ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{len(objects):,} objects {connection} can see")
    for column in ("name", "label", "custom", "queryable", "createable"):
        table.add_column(column)
    for item in sorted(objects, key=lambda o: (not o.custom, o.name.lower())):
        yes = {True: "yes", False: ""}
        table.add_row(item.name, item.label, yes[item.custom], yes[item.queryable], yes[item.createable])
    console.print(table)


@schema_app.command("describe")
def schema_describe(
    connection: str,
    object_name: Annotated[str, typer.Argument(metavar="OBJECT")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as a snapshot holds it.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """OBJECT's fields: name, label, type, length, nullability, createable/updateable, external id, and
    picklist / option-set values with their labels (SPEC S1)."""
    from crmsync.domain.schema import description_to_json, field_kind

    parsed = read_config(config) if config is not None else None
    description = guarded(lambda: operator(stack).connector(connection, parsed).describe(object_name, values=True))
    if as_json:
        sys.stdout.write(json.dumps(description_to_json(description), ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{description.name} ({description.label}) - {len(description.fields)} fields")
    for column in ("name", "label", "type", "kind", "length", "null", "create", "update", "ext id", "values"):
        table.add_column(column)
    for field in sorted(description.fields.values(), key=lambda f: f.name.lower()):
        shown = ", ".join(
            f"{p.value}={p.label}" if p.label != p.value else p.value for p in field.picklist if p.active
        )
        yes = {True: "yes", False: ""}
        table.add_row(
            field.name,
            field.label,
            field.raw_type or field.crm_type.value,
            field_kind(field).value,
            str(field.length or ""),
            yes[field.nillable],
            yes[field.createable],
            yes[field.updateable],
            yes[field.external_id],
            shown[:80] + ("..." if len(shown) > 80 else ""),
        )
    console.print(table)


@schema_app.command("mapping")
def schema_mapping(
    connection: str,
    object_name: Annotated[str, typer.Argument(metavar="OBJECT")],
    operation: Annotated[str, typer.Option("--operation", help="import or export")] = "import",
    sync_id: Annotated[
        str | None, typer.Option("--id", help="The sync's id (default: <connection>-<object>-<operation>).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write FILE instead of printing.")] = None,
    config: ConfigOption = None,
    stack: StackOption = "crmsync",
) -> None:
    """Print a starting sync definition of OBJECT in crmsync's YAML: the id and watermark fields, every
    mappable field with a suggested local name and type; what is left out is listed with the reason."""
    if operation not in ("import", "export"):
        raise fail(f"--operation: {operation!r} is not import or export", 2)
    parsed = read_config(config) if config is not None else None
    op = operator(stack)

    def build() -> str:
        chosen, _ = op.connection(connection, parsed)
        described = op.connector(connection, parsed).describe(object_name, values=True)
        return starting_mapping(chosen, described, operation=operation, sync_id=sync_id)  # type: ignore[arg-type]

    text = guarded(build)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        errors.print(f"starting {operation} of {object_name} written to {output}", highlight=False)


@schema_app.command("pull")
def schema_pull(
    connection: str,
    objects: Annotated[list[str] | None, typer.Argument(metavar="[OBJECT]...")] = None,
    config: Annotated[
        Path, typer.Option("--config", help="The configuration file; snapshots go beside it.")
    ] = Path("syncs.yaml"),
    stack: StackOption = "crmsync",
) -> None:
    """Save what the CRM describes as JSON snapshots beside the configuration (its schema.snapshots
    folder), so `config validate` checks fields and types without the CRM. Default: the objects the
    configuration's syncs of CONNECTION use."""
    parsed = read_config(config)
    names = list(objects or objects_of(parsed, connection))
    if not names:
        raise fail(f"no sync of {connection} in {config}: name the objects to pull", 2)
    folder = snapshot_folder(config, parsed)
    connector = guarded(lambda: operator(stack).connector(connection, parsed))
    for name in names:
        description = guarded(lambda name=name: connector.describe(name, values=True))
        path = save_snapshot(folder, connection, description)
        console.print(f"{description.name}: {len(description.fields)} fields -> {path}", highlight=False)


# ------------------------------------------------------------------------------------- enumerations
@enumerations_app.command("show")
def enumerations_show(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """NAME's values in the CRM's order: value, label, active, default, where they came from (SPEC S2)."""
    values = guarded(lambda: operator(stack).container.enumerations.values(name))
    if as_json:
        sys.stdout.write(json.dumps([asdict(v) for v in values], ensure_ascii=False) + "\n")
        return
    table = Table(title=f"enumeration {name}: {len(values)} value(s)")
    for column in ("value", "label", "active", "default"):
        table.add_column(column)
    for value in values:
        table.add_row(value.value, value.label, "yes" if value.active else "no", "yes" if value.default else "")
    if values:
        table.caption = f"from {values[0].source}"
    console.print(table)


# ------------------------------------------------------------------------------------- runs
def _operation(summary: dict[str, Any]) -> Operation:
    """The registry's row for the operation a summary is of (an import when it says none)."""
    return OPERATIONS.get(str(summary.get("operation", "import")), OPERATIONS["import"])


def completeness_rows(table: Table, figures: dict[str, Any] | None) -> None:
    """The completeness check's figures (a transfer's end): how every CRM id was accounted for."""
    if not figures:
        return
    by_run, held = figures.get("loaded_by_run", 0), figures.get("already_held", 0)
    # The split is known when the run named the ids it loaded (a transfer from a file): it adds up then.
    split = (
        f" ({by_run:,} by this run, {held:,} held before)"
        if figures["loaded"] and by_run + held == figures["loaded"]
        else ""
    )
    table.add_row(
        "completeness",
        f"{figures['crm_ids']:,} CRM ids: {figures['loaded']:,} loaded{split}, {figures['rejected']:,} rejected, "
        f"{figures['filtered']:,} filtered, {figures['missing']:,} missing",
    )
    if figures["missing"]:
        table.add_row(
            "missing records",
            f"{figures['re_read']:,} re-read and loaded ({figures['created']:,} created, "
            f"{figures['updated']:,} updated, {figures['re_read_rejected']:,} rejected), "
            f"{figures['still_missing']:,} no longer in the CRM",
        )


def summary_table(summary: dict[str, Any], title: str | None = None) -> Table:
    table = Table(
        title=title or f"{summary.get('operation', 'import')} {summary.get('sync_id')}", show_header=False
    )
    table.add_column("", style="bold")
    table.add_column("")
    status = summary.get("status", "?")
    colour = {"SUCCEEDED": "green", "FAILED": "red", "REFUSED": "yellow"}.get(status, "white")
    table.add_row("status", f"[{colour}]{status}[/{colour}]")
    table.add_row("run", str(summary.get("run_id")))
    window = summary.get("window") or {}
    if window:
        end = "end included" if _operation(summary).window_end_included else "end excluded"
        table.add_row("window", f"{window.get('start') or '(beginning)'} -> {window.get('end')} ({end})")
        table.add_row("option", str(window.get("option")))
    reads = {
        "initial": "change tracking, first read of every record",
        "delta": "change tracking, the stored delta link",
        "resync": "change tracking, every record and an id comparison (no usable delta link)",
    }
    if summary.get("change_tracking") in reads:
        table.add_row("read by", reads[summary["change_tracking"]])
    if summary.get("resumed_from"):
        table.add_row("resumed run", str(summary["resumed_from"]))
    found_by = _operation(summary).found_by
    if found_by:
        table.add_row("found by", found_by.get(summary.get("mode", ""), str(summary.get("mode"))))
    if summary.get("operation") == "two_way":
        two_way_rows(table, summary)
    for key in summary_fields(summary.get("operation", "import")):
        if key in summary:
            table.add_row(SUMMARY_LABELS.get(key, key.replace("_", " ")), f"{summary[key]:,}")
    for item in summary.get("enumerations") or []:
        change = f"{item['values']} values: +{item['added']} ~{item['updated']} -{item['removed']}"
        if item.get("kept"):
            change += f", {item['kept']} kept (no replace)"
        table.add_row(f"enumeration {item['name']}", f"{change} from {item['source']}")
    if summary.get("new_fields"):
        table.add_row("new CRM fields", ", ".join(summary["new_fields"]))
    if summary.get("deleted_unknown"):
        table.add_row("deletions of records never imported", f"{summary['deleted_unknown']:,}")
    completeness_rows(table, summary.get("completeness"))
    check = summary.get("window_check")
    if check:
        counted = f"{check['counted']:,} counted in the window (COUNT()), {check['read']:,} read"
        if check["filtered"]:
            counted += f", {check['filtered']:,} left out by the filter"
        table.add_row("window check", counted)
        if check.get("note"):
            table.add_row("re-read", check["note"])
    elif summary.get("change_tracking") == "delta":
        table.add_row("window check", "none needed: a delta read returns every change, complete by construction")
    usage = summary.get("crm_api_usage")
    if usage:
        table.add_row(
            "CRM API allowance", f"{usage['used']:,} used of {usage['max']:,} ({usage['remaining']:,} left)"
        )
    if "watermark_moved" in summary:
        table.add_row("watermark moved", "yes" if summary["watermark_moved"] else "no")
    if summary.get("error"):
        table.add_row("error", f"{summary['error'].get('type')}: {summary['error'].get('message')}")
    return table


def two_way_rows(table: Table, summary: dict[str, Any]) -> None:
    """A two-way run: per side read / written / echoes skipped, and how each conflict was decided."""
    table.add_row("direction", str(summary.get("direction")))
    for side in ("crm", "marketing"):
        counts = summary.get(side) or {}
        table.add_row(
            side,
            f"{counts.get('records_read', 0):,} read, {counts.get('fields_written', 0):,} field(s) written on "
            f"{counts.get('records_written', 0):,} record(s), {counts.get('echoes_skipped', 0):,} echo(es) skipped",
        )
    table.add_row("changes", f"{summary.get('changes', 0):,} ({summary.get('conflicts', 0):,} conflict(s))")
    for key, label in (("decided_by", "decided by"), ("time_sources", "times from"), ("tracking", "field times")):
        if summary.get(key):
            table.add_row(label, ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(summary[key].items())))
    for name, counts in (summary.get("fields") or {}).items():
        taken = f"{counts.get('from_crm', 0):,} from the CRM, {counts.get('from_marketing', 0):,} from marketing"
        decided = f"{counts.get('by_priority', 0):,} by priority, {counts.get('by_time', 0):,} by time"
        rest = f"{counts.get('blanks_filled', 0):,} blank(s) filled, {counts.get('echoes_skipped', 0):,} echo(es) skipped"
        table.add_row(f"field {name}", f"{taken}; {decided}; {rest}")
    created = [
        f"{summary.get(key, 0):,} {label}"
        for key, label in (
            ("created_in_marketing", "created on the marketing side"),
            ("created_in_crm", "created in the CRM"),
            ("linked", "linked (created on both sides)"),
            ("linked_to_contacts", "found as Contacts and linked to them"),
        )
        if summary.get(key)
    ]
    if created:
        table.add_row("new records", ", ".join(created))
    if summary.get("unlinked"):
        table.add_row("CRM records linked to no profile", f"{summary['unlinked']:,}")


def run_and_report(
    op: Operator,
    sync_id: str,
    *,
    wait: bool,
    as_json: bool,
    population: dict[str, Any] | None,
    period: dict[str, Any] | None = None,
) -> int:
    started = guarded(lambda: op.start(sync_id, population=population, period=period))
    if not wait:
        # The start step's verdict (lease taken, run recorded) or the summary of a run that already ended:
        # a refused start exits 3 here too, not 0 with "started".
        ended = guarded(lambda: op.verdict(started))
        if ended is not None:
            if as_json:  # the keys of a started run's answer, and the summary's
                sys.stdout.write(
                    json.dumps({"execution_arn": started.execution_arn, **ended}, ensure_ascii=False) + "\n"
                )
            else:
                console.print(summary_table(ended))
            return STATUS_EXIT.get(ended.get("status", "FAILED"), 1)
        payload = {
            "sync_id": started.sync_id,
            "run_id": started.run_id,
            "execution_arn": started.execution_arn,
            "status": "RUNNING",
        }
        if as_json:
            console.print_json(json.dumps(payload))
        else:
            console.print(f"started run {started.run_id} (crmsync runs show {started.run_id})", highlight=False)
        return 0
    if as_json:
        summary = guarded(lambda: op.wait(started))
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        operation = guarded(lambda: op.container.definitions.sync(sync_id)).sync.operation
        with views.RunProgress(console, started.run_id, operation) as progress:
            summary = guarded(lambda: op.wait(started, on_poll=lambda _: progress.show(op.run_record(started))))
        console.print(summary_table(summary))
    return STATUS_EXIT.get(summary.get("status", "FAILED"), 1)


@app.command("run")
def run(
    sync_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end and print its summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ids: Annotated[
        str | None,
        typer.Option(
            "--ids",
            help="Only these (comma separated): CRM ids for an import or a deletion in the CRM, marketing "
            "profile ids for an export.",
        ),
    ] = None,
    population_uri: Annotated[
        str | None,
        typer.Option(
            "--population",
            help="s3:// file: CRM ids to import or to delete, or records to export (CSV with a header or JSON "
            "lines, with a profileId column).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Deletion imports: the period's start, included (ISO 8601 or yyyy/MM/dd hh:mm:ss, UTC); "
            "default: the watermark.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--to", help="Deletion imports: the period's end, included; default: the CRM's clock."),
    ] = None,
    stack: StackOption = "crmsync",
) -> None:
    """Start SYNC_ID now (runs of one sync never overlap: a second one is refused)."""
    if ids and population_uri:
        raise fail("give either --ids or --population", 2)
    if until and not since:
        raise fail("--to needs --from", 2)
    period = None
    if since:
        try:
            period = parse_period(since, until)
        except ValueError as bad:
            raise fail(f"--from/--to: {bad}", 2) from None
    population = None
    if ids:
        population = {"ids": [i.strip() for i in ids.split(",") if i.strip()]}
    elif population_uri:
        population = {"s3_uri": population_uri}
    raise typer.Exit(
        run_and_report(operator(stack), sync_id, wait=wait, as_json=as_json, population=population, period=period)
    )


@app.command("transfer")
def transfer(
    sync_id: Annotated[str, typer.Argument(metavar="SYNC")],
    location: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE|s3://bucket/key]",
            help="CSV with a header of CRM field names, or JSON Lines (one record object a line), UTF-8. "
            "Without it: the initial transfer of SYNC's object from the CRM (SPEC T1).",
        ),
    ] = None,
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format", help="csv or jsonl; default: from the file's name (.csv, .jsonl, .ndjson, .json)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Initial transfer: wait for it to end and print its summary.")
    ] = False,
    check: Annotated[
        bool | None,
        typer.Option(
            "--check/--no-check",
            help="End with the completeness check (every CRM id loaded, rejected or filtered; missing ones "
            "re-read by id). Default: on when the sync's watermark is not set (a first import), off otherwise.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """A first import. With FILE (SPEC T2): load its records into SYNC's target with the import's mapping,
    conversions, reconciliation and rejects. A row that cannot be read becomes a reject naming its row and
    column; a file that is not UTF-8 is refused (exit 2) naming the first bad byte's line and column. The
    watermark does not move. A first import ends with the completeness check.

    Without FILE (SPEC T1): start the initial transfer - SYNC is an initial_transfer sync, or the import
    sync one of them names. It counts the object; at or above the transfer's threshold it extracts the
    object to S3 in parts (Salesforce Bulk API 2.0, Dataverse change tracking) and loads them side by side,
    else it runs the import's ordinary first import; then it sets the import's watermark. Like `run`."""
    op = operator(stack)
    if location is None:
        if file_format is not None or check is not None:
            raise fail("--format and --check/--no-check are for a transfer from a FILE", 2)
        transfer_id = guarded(lambda: op.transfer_sync(sync_id))
        raise typer.Exit(run_and_report(op, transfer_id, wait=wait, as_json=as_json, population=None))
    if wait:
        raise fail("--wait is for an initial transfer (no FILE); a transfer from a file always waits", 2)
    summary = guarded(lambda: op.transfer(sync_id, location, fmt=file_format, check=check)).model_dump(mode="json")
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        console.print(summary_table(summary, title=f"transfer {sync_id} from {location}"))
    raise typer.Exit(STATUS_EXIT.get(summary.get("status", "FAILED"), 1))


@runs_app.command("list")
def runs_list(
    sync_id: str,
    limit: int = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """The latest runs of SYNC_ID (also `crmsync runs SYNC_ID`): when, how long, the counts, the error."""
    records = guarded(lambda: operator(stack).runs(sync_id, limit))
    if as_json:
        sys.stdout.write(json.dumps(records, default=str) + "\n")
        return
    console.print(views.runs_table(sync_id, records))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id, or the short id `crmsync runs SYNC` prints.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """One run in detail: window, every count, CRM calls and allowance, time per step, the error, its logs."""
    op = operator(stack)
    record = guarded(lambda: insight.find_run(op, run_id))
    steps = guarded(lambda: insight.step_times(op, record))
    logs = insight.log_location(op)
    if as_json:
        payload = {"run": record, "steps": [asdict(s) for s in steps], "logs": logs}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
        return
    result = record.get("result") if isinstance(record.get("result"), dict) else None
    summary = summary_table(
        result
        or {
            "sync_id": record.get("syncId"),
            "run_id": record.get("runId"),
            "status": record.get("status"),
            "operation": record.get("operation"),
            "window": record.get("window"),
            **(record.get("progress") or {}),
        }
    )
    for part in views.run_details(record, steps, logs, summary):
        console.print(part)


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array, one object per sync.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Every sync at a glance: last run, watermark, rejects waiting, next run; exit 1 if a last run failed.

    The exit code makes it usable in monitoring: 0 when no sync's last run failed, 1 when one did.
    """
    statuses = guarded(lambda: insight.sync_statuses(operator(stack)))
    if as_json:
        sys.stdout.write(json.dumps([s.as_json() for s in statuses], ensure_ascii=False, default=str) + "\n")
    else:
        console.print(views.status_table(statuses))
    if any((s.last_run or {}).get("status") == "FAILED" for s in statuses):
        raise typer.Exit(1)


@app.command("logs")
def logs(
    run_id: Annotated[str, typer.Argument(help="A run id, or the short id `crmsync runs SYNC` prints.")],
    stack: StackOption = "crmsync",
) -> None:
    """The log lines of one run (CloudWatch Logs on AWS; the local log file under `crmsync local up`).

    On AWS: every function log group of the stack (/crmsync/STACK/*), over the run's time.
    """
    op = operator(stack)
    record = guarded(lambda: insight.find_run(op, run_id))
    lines = guarded(lambda: list(insight.run_logs(op, record)))
    for line in lines:
        sys.stdout.write(line + "\n")
    if not lines:
        errors.print(
            f"no log line carries run {record.get('runId')} ({insight.log_location(op)})", highlight=False
        )


# ------------------------------------------------------------------------------------- watermarks
@watermark_app.command("get")
def watermark_get(sync_id: str, stack: StackOption = "crmsync") -> None:
    """Print the sync's option name and stored value (yyyy/MM/dd hh:mm:ss, UTC)."""
    option, mark = guarded(lambda: operator(stack).watermark(sync_id))
    console.print(
        f"{option} = {mark.text if mark else '(none: the next run imports everything)'}", highlight=False
    )
    if mark is not None and mark.delta_link:
        console.print(
            "delta link stored: the next run reads the Dynamics changes since the last one", highlight=False
        )


@watermark_app.command("set")
def watermark_set(
    sync_id: str,
    value: Annotated[str, typer.Argument(help="yyyy/MM/dd hh:mm:ss (UTC) or ISO 8601; not after the CRM's clock")],
    stack: StackOption = "crmsync",
) -> None:
    """Set the watermark; moving it back re-imports from there, a time after the CRM's clock is refused."""
    mark = guarded(lambda: operator(stack).set_watermark(sync_id, value))
    console.print(f"{mark.option} = {mark.text}", highlight=False)


@watermark_app.command("reset")
def watermark_reset(sync_id: str, stack: StackOption = "crmsync") -> None:
    """Forget the watermark: the next run is a first run (every record, inactive ones included)."""
    option = guarded(lambda: operator(stack).reset_watermark(sync_id))
    console.print(f"{option} reset", highlight=False)


# ------------------------------------------------------------------------------------- rejects
@rejects_app.command("list")
def rejects_list(
    sync_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: int = 1000,
    run_id: Annotated[str | None, typer.Option("--run", help="Only the rejects of this run.")] = None,
    stack: StackOption = "crmsync",
) -> None:
    """The sync's rejects, oldest first. Reading changes nothing: list as often as you like."""
    rejects = guarded(lambda: operator(stack).rejects(sync_id, limit=limit, run_id=run_id))
    if as_json:
        sys.stdout.write(json.dumps(rejects, ensure_ascii=False, default=str) + "\n")
        return
    table = Table(title=f"{len(rejects)} reject(s) of {sync_id}")
    for column in ("stored", "run", "crm id", "errorSymbol", "errorMessage"):
        table.add_column(column)
    for reject in rejects:
        table.add_row(
            str(reject.get("createdAt") or ""),
            reject.get("runId", ""),
            str(reject.get("crmId") or reject.get("profileId") or ""),
            reject.get("errorSymbol", ""),
            reject.get("errorMessage", ""),
        )
    console.print(table)


@rejects_app.command("count")
def rejects_count(
    sync_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """How many rejects the sync has, by error symbol."""
    counts = guarded(lambda: operator(stack).count_rejects(sync_id))
    if as_json:
        sys.stdout.write(
            json.dumps({"sync_id": sync_id, "total": sum(counts.values()), "by_symbol": counts}) + "\n"
        )
        return
    table = Table(title=f"{sum(counts.values())} reject(s) of {sync_id}")
    table.add_column("errorSymbol")
    table.add_column("count", justify="right")
    for symbol, count in counts.items():
        table.add_row(symbol, str(count))
    console.print(table)


@rejects_app.command("export")
def rejects_export(
    sync_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV file (default: standard output).")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only the rejects of this run.")] = None,
    stack: StackOption = "crmsync",
) -> None:
    """The sync's rejects as a CSV shaped like Data Loader's error file: the record's columns, then ERROR.
    Exporting changes nothing; the rejects stay until replayed, purged or past their retention."""
    rejects = guarded(lambda: operator(stack).rejects(sync_id, limit=None, run_id=run_id))
    header, rows = data_loader_error_file(rejects)
    write_csv(header, rows, output, "reject(s)")


def write_csv(header: list[str], rows: list[list[str]], output: Path | None, what: str) -> None:
    """A CSV to standard output, or to OUTPUT with a line on standard error saying how many rows."""
    if output is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    with output.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    errors.print(f"{len(rows)} {what} written to {output}", highlight=False)


@rejects_app.command("purge")
def rejects_purge(
    sync_id: str,
    run_id: Annotated[str | None, typer.Option("--run", help="Only the rejects of this run.")] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Only rejects stored before this ISO date or time (UTC if no zone)."),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every reject of the sync.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Remove rejects for good: those of a run, those stored before a date, or (--all) every one."""
    if not (run_id or before or everything):
        raise fail("say what to purge: --run RUN, --before DATE, or --all", 2)
    cutoff = None
    if before is not None:
        try:
            cutoff = datetime.fromisoformat(before)
        except ValueError:
            raise fail(
                f"--before {before!r} is not an ISO date or time (e.g. 2026-11-01 or 2026-11-01T08:00:00Z)", 2
            ) from None
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
    purged = guarded(lambda: operator(stack).purge_rejects(sync_id, run_id=run_id, before=cutoff))
    if as_json:
        sys.stdout.write(json.dumps({"sync_id": sync_id, "purged": purged}) + "\n")
        return
    console.print(f"{purged} reject(s) of {sync_id} purged", highlight=False)


@rejects_app.command("dlq")
def rejects_dlq(
    sync_id: str,
    redrive: Annotated[
        bool, typer.Option("--redrive", help="Store the rejects found and send the notices back to the queue.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """What of the sync reached the rejects queue's dead-letter queue; --redrive moves it back."""
    found = guarded(lambda: operator(stack).dead_letters(sync_id, redrive=redrive))
    if as_json:
        sys.stdout.write(json.dumps(asdict(found), ensure_ascii=False, default=str) + "\n")
        return
    table = Table(title=f"{len(found.messages)} message(s) of {sync_id} in the dead-letter queue")
    for column in ("kind", "run", "crm id", "errorSymbol", "receives"):
        table.add_column(column)
    for message in found.messages:
        table.add_row(
            message["kind"],
            str(message.get("runId") or ""),
            str(message.get("crmId") or ""),
            str(
                message.get("errorSymbol") or (f"{message.get('count')} reject(s)" if message.get("count") else "")
            ),
            str(message.get("receiveCount", "")),
        )
    console.print(table)
    if redrive:
        console.print(
            f"{found.stored} reject(s) stored, {found.requeued} notice(s) sent back to the queue", highlight=False
        )


@rejects_app.command("replay")
def rejects_replay(
    sync_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Send the rejects through the sync again (after the data was fixed) and wait for the run: an export
    exports the profiles again, an import reads the CRM ids again, a deletion retries the deletes. A
    reject leaves the store once its record went through, or once the run replaced it with a new reject.
    An events sync has no run: its rejected events go back through the events queue, and each reject
    leaves the store when the push settles its event the same way."""
    op = operator(stack)
    report = guarded(lambda: op.replay_rejects(sync_id))
    if as_json:
        sys.stdout.write(json.dumps(asdict(report), ensure_ascii=False, default=str) + "\n")
    elif report.operation == "events":
        console.print(
            f"{report.rejects} events reject(s) of {report.records} event(s): {report.queued} sent back through "
            f"the events queue, {report.skipped} without their event; each reject leaves the store when its "
            "event is on the timeline or refused again",
            highlight=False,
        )
    else:
        if report.summary:
            console.print(summary_table(report.summary, title=f"replay of {sync_id}"))
        console.print(
            f"{report.rejects} {report.operation} reject(s) of {report.records} record(s): {report.applied} went "
            f"through, {report.rejected_again} refused again, {report.skipped} without an id to replay; "
            f"{report.consumed} reject(s) left the store",
            highlight=False,
        )
    status = report.summary.get("status", "SUCCEEDED") if report.summary else "SUCCEEDED"
    raise typer.Exit(STATUS_EXIT.get(status, 1))


# ------------------------------------------------------------------------------------- consent
@consent_app.command("history")
def consent_history(
    profile_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
    stack: StackOption = "crmsync",
) -> None:
    """Every opt-out change applied to PROFILE_ID, from either side, oldest first."""
    rows = guarded(lambda: operator(stack).consent_history(profile_id))
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, default=str) + "\n")
        return
    console.print(consent_table(rows, f"consent history of {profile_id}"))


def consent_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("changed at", "channel", "value", "from", "record", "author", "time known by", "run"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.get("changedAt", "")),
            str(row.get("channel", "")),
            "opted out" if row.get("value") else "opted in",
            str(row.get("sourceSide", "")),
            str(row.get("sourceRecord", "")),
            str(row.get("author") or ""),
            str(row.get("timeSource", "")).replace("_", " "),
            str(row.get("runId", "")),
        )
    return table


def _moment(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{option}: {text!r} is not an ISO 8601 date-time", 2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@consent_app.command("export")
def consent_export(
    since: Annotated[
        str | None, typer.Option("--from", help="Changes from this time, included (ISO 8601, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="Changes before this time (ISO 8601, UTC).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV file (default: standard output).")
    ] = None,
    stack: StackOption = "crmsync",
) -> None:
    """The consent ledger as a CSV for an audit: one row per opt-out change applied, oldest first."""
    start, end = _moment(since, "--from"), _moment(until, "--to")
    header, rows = consent_rows(guarded(lambda: operator(stack).consent_between(start, end)))
    write_csv(header, rows, output, "consent row(s)")


# ------------------------------------------------------------------------------------- events
@events_app.command("send")
def events_send(
    file: Annotated[Path, typer.Argument(help="JSON Lines: one e-mail event per line.")],
    stack: StackOption = "crmsync",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Put the e-mail events of FILE on the events queue (SPEC M1). Exit 2 if a line is not an event
    (the valid lines are still sent)."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None
    result = guarded(lambda: operator(stack).send_events(lines))
    if as_json:
        print(
            json.dumps(
                {
                    "read": result.read,
                    "sent": result.sent,
                    "invalid": [{"line": n, "problem": p} for n, p in result.invalid],
                }
            )
        )
    else:
        console.print(f"{result.sent} of {result.read} events sent to the events queue of stack {stack}")
        for number, problem in result.invalid:
            errors.print(f"  - {file}:{number}: {problem}", highlight=False, markup=False, soft_wrap=True)
    if result.invalid:
        raise typer.Exit(2)


@events_app.command("backfill")
def events_backfill(
    sync_id: Annotated[str, typer.Argument(metavar="SYNC")],
    days: Annotated[
        int | None, typer.Option("--days", min=1, max=30, help="Days back; default the sync's backfill_days (7).")
    ] = None,
    stack: StackOption = "crmsync",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Push the archived events of the last N days of the types SYNC has switched on (SPEC M4).
    Idempotent: events already on the timeline stay as they are."""
    report = guarded(lambda: operator(stack).backfill_events(sync_id, days=days))
    if as_json:
        print(json.dumps(asdict(report)))
        return
    console.print(
        f"{sync_id}: {report.read} archived events of the last {report.days} days read, {report.sent} queued "
        f"({', '.join(report.types) or 'no type switched on'})",
        highlight=False,
    )


# ------------------------------------------------------------------------------------- local
def local_module(name: str) -> Any:
    """Import a module of the local stack, which needs the `local` extra (moto and the emulators' servers);
    the operator's commands never import it, so `pip install 'crmsync[cli]'` stays small."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as missing:
        raise fail(
            f"the local stack needs {missing.name!r}, which `pip install 'crmsync[local]'` installs", 2
        ) from None


@local_app.command("up")
def local_up(
    state_file: Annotated[Path, typer.Option("--state-file", help="Where to write the endpoints (JSON).")] = Path(
        ".crmsync/local.json"
    ),
    port: Annotated[int, typer.Option(help="Port of the AWS endpoint (0: any free port).")] = 0,
    seed: Annotated[
        bool,
        typer.Option(
            "--seed", help="Load the demo's data and schema into both CRMs, so examples/syncs.yaml runs as is."
        ),
    ] = False,
    contacts: Annotated[int, typer.Option(help="With --seed: Salesforce contacts (Dynamics: a quarter).")] = 2400,
) -> None:
    """Serve the local stack and the Salesforce and Dynamics emulators until interrupted.

    The state file is written once everything is up (and seeded): its `environment` holds the variables
    that point the CLI at this stack (`eval "$(crmsync local env)"` sets them).
    """
    LocalEnvironment = local_module("crmsync_local.environment").LocalEnvironment

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalEnvironment(serve=True, port=port) as env:
        if seed:
            seeded = env.seed(contacts=contacts)
            console.print(
                f"seeded {seeded['salesforce_contacts']:,} Salesforce contacts, {seeded['dynamics_contacts']:,} "
                f"Dynamics contacts and {seeded['dynamics_subscriptions']:,} new_subscription rows",
                highlight=False,
            )
        state = env.state()
        state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        temporary.replace(state_file)
        console.print(
            f"local stack at {state['aws_endpoint']}, Salesforce emulator at {state['salesforce']['url']}, "
            f"Dynamics emulator at {state['dynamics']['url']} (authority {state['dynamics']['authority']})"
        )
        console.print(f"state written to {state_file}; Ctrl-C to stop")
        try:
            # The events queue's event-source mapping, as Lambda's poller runs it on AWS.
            while not stop.wait(0.5):
                try:
                    env.deliver_events()
                except Exception as exc:  # a failed pass is reported; the next one tries again
                    errors.print(f"events delivery: {type(exc).__name__}: {exc}", highlight=False)
        except KeyboardInterrupt:
            pass
        finally:
            state_file.unlink(missing_ok=True)


@local_app.command("env")
def local_env(
    state_file: Annotated[Path, typer.Option("--state-file", help="The state file `local up` wrote.")] = Path(
        ".crmsync/local.json"
    ),
) -> None:
    """Print `export` lines pointing a shell at a running `local up`: eval "$(crmsync local env)"."""
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except OSError:
        raise fail(f"no {state_file}: start `crmsync local up` first (or give --state-file)", 2) from None
    for name, value in state["environment"].items():
        sys.stdout.write(f"export {name}={shlex.quote(str(value))}\n")


@app.command("demo")
def demo(contacts: Annotated[int, typer.Option(help="How many contacts to seed.")] = 2400) -> None:
    """Run the main job locally: emulated AWS, Salesforce and Dynamics; first imports, changes, incremental ones."""
    run_demo = local_module("crmsync_local.demo").run_demo
    raise typer.Exit(run_demo(console, contacts=contacts))


def rejects_by_symbol(rejects: list[dict[str, Any]]) -> Table:
    """Counts by error symbol with the fields refused: codes and field names only, never a value (the
    messages quote the values; `crmsync rejects list` shows them to whoever asks)."""
    table = Table(title="rejects by error symbol")
    table.add_column("errorSymbol")
    table.add_column("count", justify="right")
    table.add_column("fields")
    counts = Counter(r.get("errorSymbol", "") for r in rejects)
    for symbol, count in counts.most_common():
        fields = sorted({f for r in rejects if r.get("errorSymbol") == symbol for f in r.get("fields") or ()})
        table.add_row(symbol, str(count), ", ".join(fields) or "-")
    return table


def main() -> None:
    app()


if __name__ == "__main__":
    main()
