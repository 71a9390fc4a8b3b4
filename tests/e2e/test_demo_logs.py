"""Logs carry codes, field names and ids, never a person's values (SPEC N4): a demo-sized run, scanned.

The demo seeds people in both CRMs and on the marketing side (a few with data Salesforce refuses, whose
messages quote the values), imports, exports and deletes them. Everything it logs - what the CLI
prints, every Python log record of the process (the local stack's included) and the Lambda log file - is
searched for every seeded e-mail address, phone number and name.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import pytest
from rich.console import Console

from crmsync_local import demo, demo_data

pytestmark = pytest.mark.slow
CONTACTS = 400  # the demo's smallest size with every kind of reject (one in 400 rows) and every step


def seeded_values() -> set[str]:
    now = datetime.now(UTC)
    values: set[str] = set()
    for row in demo_data.contacts(CONTACTS, now=now):
        values |= {row["Email"], row["Phone"], row["FirstName"], row["LastName"]}
    for row in demo_data.contacts(15, now=now, seed=99, rejects=False):
        values |= {row["Phone"], row["FirstName"], row["LastName"]}
    values |= {f"new.contact.{n}@example.org" for n in range(15)}
    for row in demo_data.dynamics_contacts(max(100, CONTACTS // 4), now=now):
        values |= {row["emailaddress1"], row["telephone1"], row["firstname"], row["lastname"]}
    for row in demo_data.dynamics_contacts(10, now=now, seed=101):
        values |= {row["telephone1"], row["firstname"], row["lastname"]}
    values |= {f"new.contact.{n}@{demo_data.DYNAMICS_DOMAIN}" for n in range(10)}
    for row in [*demo_data.marketing_people(demo.SIGNUPS - len(demo.REFUSED)), *demo.REFUSED]:
        values |= {str(v) for k, v in row.items() if k in ("email", "phone", "firstName", "lastName")}
    values |= {"de la Fuente y Gómez", *(f"Renée-{n}" for n in range(40))}
    # Scripts without spaces: a one-character name (王) is a character of many words; keep names of two or more.
    return {v for v in values if len(v) >= 2}


class Everything(logging.Handler):
    """Every record at every level, with its extra keys (the structured part of a Powertools line)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__!r}")


def test_a_demo_sized_run_logs_no_seeded_email_phone_or_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's .crmsync/local-lambda.log lands here
    printed = io.StringIO()
    console = Console(file=printed, width=200, force_terminal=False)
    handler = Everything()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # the stack's LOG_LEVEL; botocore's DEBUG wire dumps are opt-in
    try:
        assert demo.run_demo(console, contacts=CONTACTS) == 0, printed.getvalue()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    lambda_log = (tmp_path / ".crmsync" / "local-lambda.log").read_text(encoding="utf-8")
    sources = {"CLI output": printed.getvalue(), "Python logs": "\n".join(handler.lines), "Lambda log": lambda_log}
    hits = {(where, value) for where, text in sources.items() for value in seeded_values() if value in text}
    assert sorted(hits)[:20] == []
    assert "reject STRING_TOO_LONG on LastName" in lambda_log  # the refused rows were logged, by code and field
