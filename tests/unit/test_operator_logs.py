"""The log lines of work the CLI does in its own process (`crmsync transfer FILE`, the demo): a reject's
warning stays off the terminal unless `--log-level` asks for it, and lands in the local stack's log file
(CRMSYNC_LOCAL_LOG) as one JSON object a line that `crmsync logs RUN_ID` finds - without a value."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from crmsync.domain.records import Reject
from crmsync.stores.rejects import RejectContext, RejectRouter
from crmsync_local import operator_logs
from crmsync_local.cli import app

CONTEXT = RejectContext(sync_id="sf-contacts", run_id="run-7", operation="import", direction="crm-to-marketing")
REJECT = Reject("MALFORMED_ROW", "row 3: 'Zoé Mégret' is not a boolean", {"FirstName": "Zoé"}, "003A", ("Flag",))


@pytest.fixture(autouse=True)
def library_logger():
    """Each test configures the `crmsync` logger afresh; what it set is taken away after."""
    logger = logging.getLogger(operator_logs.LIBRARY)
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def reject_once() -> None:
    RejectRouter(None, None, "").route([REJECT], CONTEXT, enabled=False)


def test_a_reject_warning_stays_off_the_terminal_by_default(capsys, monkeypatch):
    monkeypatch.delenv("CRMSYNC_LOCAL_LOG", raising=False)
    operator_logs.configure(None)
    reject_once()
    assert capsys.readouterr().err == ""


def test_log_level_warning_shows_the_reject_with_its_code_field_and_ids_but_no_value(capsys, monkeypatch):
    monkeypatch.delenv("CRMSYNC_LOCAL_LOG", raising=False)
    operator_logs.configure("warning")
    reject_once()
    err = capsys.readouterr().err
    assert err.startswith("WARNING crmsync.stores.rejects: reject MALFORMED_ROW on Flag ")
    assert 'run_id="run-7"' in err
    assert 'crm_id="003A"' in err
    assert "Zoé" not in err


def test_the_local_stacks_log_file_gets_the_reject_as_a_json_line_carrying_the_run_id(tmp_path, monkeypatch):
    log = tmp_path / "local-lambda.log"
    monkeypatch.setenv("CRMSYNC_LOCAL_LOG", str(log))
    operator_logs.configure(None)
    reject_once()
    (line,) = log.read_text(encoding="utf-8").splitlines()
    stamp, source, body = line.split(" ", 2)
    assert stamp.endswith("Z")
    assert source == "[cli]"
    record = json.loads(body)
    assert (record["level"], record["message"], record["run_id"], record["fields"]) == (
        "WARNING",
        "reject MALFORMED_ROW on Flag",
        "run-7",
        ["Flag"],
    )
    assert "Zoé" not in line


def test_an_exception_is_logged_by_its_type_only(tmp_path, monkeypatch):
    log = tmp_path / "local.log"
    monkeypatch.setenv("CRMSYNC_LOCAL_LOG", str(log))
    operator_logs.configure(None)
    try:
        raise ValueError("Zoé Mégret is not a number")
    except ValueError:
        logging.getLogger("crmsync.services.transfers").exception("page failed", extra={"run_id": "run-7"})
    text = log.read_text(encoding="utf-8")
    assert json.loads(text.split(" ", 2)[2])["exception"] == "ValueError"
    assert "Zoé" not in text


def test_configuring_again_replaces_the_handlers_rather_than_doubling_lines(capsys, monkeypatch):
    monkeypatch.delenv("CRMSYNC_LOCAL_LOG", raising=False)
    operator_logs.configure("warning")
    operator_logs.configure("warning")
    reject_once()
    assert capsys.readouterr().err.count("reject MALFORMED_ROW") == 1


def test_an_unknown_log_level_exits_2():
    result = CliRunner().invoke(app, ["--log-level", "loud", "config", "validate", "examples/syncs.yaml"])
    assert result.exit_code == 2
    assert "--log-level: 'loud' is not a log level" in result.output
