"""The `$batch` wire format of the Dataverse Web API ("Execute batch operations using the Web API"):
a multipart/mixed body of `application/http` parts, each one request with its `Content-ID`, and the
multipart answer read back into one status, header set and body per Content-ID.

Only top-level requests are written (no change sets): each record succeeds or fails on its own. GET
requests - reads and function calls such as `RetrieveRecordChangeHistory` - may be batched too, outside
any change set.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_REQUESTS = 1000
"""Dataverse runs at most 1,000 requests in one `$batch` ("Execute batch operations using the Web API")."""
CRLF = "\r\n"
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/\d\.\d\s+(\d{3})")


@dataclass(frozen=True)
class BatchPart:
    """One request of a batch; `content_id` is how its answer is found again."""

    content_id: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class PartResponse:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body.strip() else None
        except ValueError:
            return None

    def error(self) -> tuple[str, str]:
        """Dataverse's `{"error": {"code", "message"}}`, or the status when the body has none."""
        document = self.json()
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict) and error.get("code"):
            return str(error["code"]), str(error.get("message", ""))
        return f"HTTP_{self.status}", self.body.strip()[:500]


def encode(parts: list[BatchPart]) -> tuple[str, bytes]:
    """The Content-Type (with its boundary) and body of a batch of these parts."""
    boundary = f"batch_{uuid.uuid4()}"
    chunks: list[str] = []
    for part in parts:
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {part.content_id}",
            "",
            f"{part.method} {part.url} HTTP/1.1",
        ]
        headers = dict(part.headers)
        payload = ""
        if part.body is not None:
            headers.setdefault("Content-Type", "application/json; type=entry")
            payload = json.dumps(part.body, ensure_ascii=False, separators=(",", ":"), default=str)
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += ["", payload]
        chunks.append(CRLF.join(lines) + CRLF)
    chunks.append(f"--{boundary}--{CRLF}")
    return f"multipart/mixed; boundary={boundary}", "".join(chunks).encode("utf-8")


def _sections(text: str, boundary: str) -> list[str]:
    sections: list[str] = []
    for section in text.split(f"--{boundary}")[1:]:
        if section.startswith("--"):
            break
        sections.append(section)
    return sections


def _head(text: str) -> tuple[dict[str, str], str]:
    """Header lines up to the first blank line, and what follows it."""
    normalized = text.replace("\r\n", "\n").lstrip("\n")
    head, _, rest = normalized.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def decode(content_type: str, body: bytes) -> list[tuple[str | None, PartResponse]]:
    """Each answer of a batch response with the Content-ID it carries, in the order they came
    (answers inside a change set response are read the same way)."""
    match = _BOUNDARY.search(content_type or "")
    if match is None or not content_type.lower().startswith("multipart/mixed"):
        raise ValueError(f"a $batch answer is multipart/mixed with a boundary, not {content_type[:60]!r}")
    answers: list[tuple[str | None, PartResponse]] = []
    for section in _sections(body.decode("utf-8"), match.group(1)):
        part_headers, rest = _head(section)
        if part_headers.get("content-type", "").lower().startswith("multipart/mixed"):
            answers += decode(part_headers["content-type"], rest.encode("utf-8"))
            continue
        status_line, _, remainder = rest.partition("\n")
        status = _STATUS_LINE.match(status_line.strip())
        if status is None:
            raise ValueError("a $batch answer part has no HTTP status line")
        headers, payload = _head(remainder)
        answers.append(
            (part_headers.get("content-id"), PartResponse(int(status.group(1)), headers, payload.strip("\n")))
        )
    return answers
