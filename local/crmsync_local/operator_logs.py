"""Where the core package's log lines go when the CLI runs an operation in its own process.

`crmsync transfer SYNC FILE` and `crmsync demo` run the core package (`crmsync.*` loggers) in the CLI's
process, not in a Lambda function whose log group keeps every line. With no handler configured, Python's
last-resort handler printed every WARNING to the terminal - one "reject CODE on FIELD" line per rejected
row, ahead of the summary that already counts them. So the CLI configures the `crmsync` logger once per
command (`configure`):

- the terminal (stderr) shows ERROR and above, or every line from the level `--log-level` /
  CRMSYNC_LOG_LEVEL asks for (`crmsync --log-level info transfer ...`);
- the local stack's log file, when CRMSYNC_LOCAL_LOG names one (`crmsync local up`'s environment, the
  demo), gets INFO and above, one JSON object a line with the record's keys (`sync_id`, `run_id`,
  `crm_id`, `error_symbol`, `fields`...), so `crmsync logs RUN_ID` finds an in-process run's lines as it
  finds a function's. Lines logged inside a local function invocation are left to the local runtime,
  which writes them there already.

A line carries the message and the keys the library logged - codes, field names, ids - and of an
exception only its type: an exception's text may quote a record's values (a CRM's error message does), and
logs never carry a personal value. The handlers look up stderr and CRMSYNC_LOCAL_LOG when they write, so a
test runner's captured streams and an environment started after the command began are both honoured.
Nothing stops propagation: the root logger (pytest's caplog) still sees every record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmsync.services.insight import LOCAL_LOG_VARIABLE

LIBRARY = "crmsync"
LEVELS = ("debug", "info", "warning", "error")
DEFAULT_TERMINAL_LEVEL = logging.ERROR
LOCAL_FILE_LEVEL = logging.INFO
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def record_keys(record: logging.LogRecord) -> dict[str, Any]:
    """The keys the library logged with the line (`extra=`), and an exception's type, never its text."""
    keys = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    if record.exc_info and record.exc_info[0] is not None:
        keys["exception"] = record.exc_info[0].__name__
    return keys


class _Terminal(logging.Handler):
    """`LEVEL logger: message key=value ...` on the stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            keys = " ".join(
                f"{k}={json.dumps(v, default=str, ensure_ascii=False)}" for k, v in record_keys(record).items()
            )
            sys.stderr.write(
                f"{record.levelname} {record.name}: {record.getMessage()}{' ' + keys if keys else ''}\n"
            )
        except Exception:  # a log line never fails the command
            self.handleError(record)


class _LocalLogFile(logging.Handler):
    """One JSON object a line, appended to the file CRMSYNC_LOCAL_LOG names when it names one."""

    def emit(self, record: logging.LogRecord) -> None:
        path = os.environ.get(LOCAL_LOG_VARIABLE)
        if not path or _in_local_invocation():
            return
        try:
            line = {
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                **record_keys(record),
            }
            stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            with Path(path).open("a", encoding="utf-8") as handle:
                handle.write(f"{stamp}Z [cli] {json.dumps(line, default=str, ensure_ascii=False)}\n")
        except Exception:
            self.handleError(record)


def _in_local_invocation() -> bool:
    """A local function invocation runs on this thread: the local runtime writes its lines to the file."""
    runtime = sys.modules.get("crmsync_local.stack.runtime")
    return runtime is not None and bool(runtime.in_invocation())


def terminal_level(name: str | None) -> int:
    """The terminal's level: `name` (debug, info, warning, error) or ERROR."""
    if not name:
        return DEFAULT_TERMINAL_LEVEL
    if name.lower() not in LEVELS:
        raise ValueError(f"{name!r} is not a log level ({', '.join(LEVELS)})")
    return int(getattr(logging, name.upper()))


def configure(level: str | None = None) -> None:
    """Send the `crmsync` loggers' lines to the terminal from `level` (default ERROR) and to the local
    stack's log file from INFO; called again (each command of a test run), it replaces what it set."""
    logger = logging.getLogger(LIBRARY)
    for handler in [h for h in logger.handlers if isinstance(h, _Terminal | _LocalLogFile)]:
        logger.removeHandler(handler)
    terminal = _Terminal(terminal_level(level))
    local_file = _LocalLogFile(LOCAL_FILE_LEVEL)
    logger.addHandler(terminal)
    logger.addHandler(local_file)
    wanted = min(terminal.level, local_file.level)
    if logger.level == logging.NOTSET or logger.level > wanted:
        logger.setLevel(wanted)


__all__ = ["LEVELS", "configure", "record_keys", "terminal_level"]
