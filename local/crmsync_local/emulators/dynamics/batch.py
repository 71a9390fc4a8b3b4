"""`$batch`: multipart/mixed requests with change sets, as "Execute batch operations using the Web API"
describes them.

Parts run in order. A change set's requests run in one transaction: the first failure rolls the whole
change set back and is reported as a single response in place of the change set. `$<Content-ID>` in a
later request of the same change set (its URL or an `@odata.bind` value) stands for the URL of the record
an earlier request created. Without `Prefer: odata.continue-on-error` the batch stops at the first failure
and takes that failure's status; with it, every part runs and the batch answers 200. More than 1,000
requests (change set members counted one by one) are refused before anything runs. Responses are written
like Dataverse's: `--batchresponse_<guid>` parts, nested `changesetresponse_<guid>`, CRLF line breaks,
`HTTP/1.1 <status> <reason>` lines, `Content-ID` echoed on every part that had one (OData 4.0, 11.7.4:
a response part carries the Content-ID of its request, inside a change set or not).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from . import errors

MAX_REQUESTS = 1000
CRLF = "\r\n"
_BOUNDARY_RE = re.compile(r'boundary="?([^";,\s]+)"?', re.IGNORECASE)


@dataclass
class InnerRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class InnerResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class ChangeSet:
    requests: list[InnerRequest] = field(default_factory=list)


Part = InnerRequest | ChangeSet


def boundary_of(content_type: str) -> str | None:
    match = _BOUNDARY_RE.search(content_type or "")
    return match.group(1) if match else None


def _split(body: str, boundary: str) -> list[str]:
    delimiter = f"--{boundary}"
    sections = body.split(delimiter)
    parts: list[str] = []
    for section in sections[1:]:
        if section.startswith("--"):
            break
        parts.append(section.lstrip("\r\n") if section.startswith(("\r\n", "\n")) else section)
    return parts


def _headers_and_rest(text: str) -> tuple[dict[str, str], str]:
    normalized = text.replace("\r\n", "\n")
    head, _, rest = normalized.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _inner_request(part_headers: dict[str, str], rest: str) -> InnerRequest:
    """`METHOD URL HTTP/1.1`, header lines, a blank line, the body."""
    request_line, _, remainder = rest.replace("\r\n", "\n").lstrip("\n").partition("\n")
    words = request_line.strip().split(" ")
    if len(words) < 2:
        raise errors.bad_request("The batch request is malformed: a part has no HTTP request line.")
    head, separator, body = remainder.partition("\n\n")
    if not separator:
        head, body = remainder, ""
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    content_id = part_headers.get("content-id") or headers.get("content-id")
    return InnerRequest(words[0].upper(), words[1], headers, body.strip("\n").encode(), content_id)


def parse(body: bytes, content_type: str) -> list[Part]:
    boundary = boundary_of(content_type)
    if not content_type.lower().startswith("multipart/mixed") or boundary is None:
        raise errors.bad_request(
            "The batch request must have a 'Content-Type' header of 'multipart/mixed' with a boundary."
        )
    parts: list[Part] = []
    for section in _split(body.decode("utf-8"), boundary):
        part_headers, rest = _headers_and_rest(section)
        part_type = part_headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            inner_boundary = boundary_of(part_type)
            if inner_boundary is None:
                raise errors.bad_request("A change set must declare its boundary.")
            changeset = ChangeSet()
            for inner in _split(rest, inner_boundary):
                inner_headers, inner_rest = _headers_and_rest(inner)
                if inner_headers.get("content-type", "").lower().startswith("multipart/"):
                    raise errors.bad_request("A change set cannot contain another change set or batch.")
                changeset.requests.append(_inner_request(inner_headers, inner_rest))
            parts.append(changeset)
        else:
            parts.append(_inner_request(part_headers, rest))
    return parts


def count_requests(parts: list[Part]) -> int:
    return sum(len(p.requests) if isinstance(p, ChangeSet) else 1 for p in parts)


def validate(parts: list[Part]) -> None:
    for part in parts:
        if isinstance(part, ChangeSet):
            if len(part.requests) > MAX_REQUESTS:
                raise errors.changeset_too_large(MAX_REQUESTS)
            for request in part.requests:
                if request.method == "GET":
                    raise errors.bad_request("GET requests are not allowed inside a change set.")
    if count_requests(parts) > MAX_REQUESTS:
        raise errors.batch_too_large(MAX_REQUESTS)


Executor = Callable[[InnerRequest], InnerResponse]


def substitute_references(request: InnerRequest, created: dict[str, str]) -> InnerRequest:
    """Replace `$<Content-ID>` in the URL and in `@odata.bind` values with the created record's URL."""

    def resolve(reference: str) -> str:
        if reference not in created:
            raise errors.bad_request(f"Content-ID Reference: '${reference}' does not exist in the batch context.")
        return created[reference]

    url = request.url
    match = re.match(r"^\$(\w+)(.*)$", url)
    if match:
        url = resolve(match.group(1)) + match.group(2)
    body = request.body
    if body and b"$" in body:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for key, value in list(document.items()):
                if key.endswith("@odata.bind") and isinstance(value, str) and re.fullmatch(r"\$\w+", value):
                    document[key] = resolve(value[1:])
            body = json.dumps(document).encode()
    return InnerRequest(request.method, url, request.headers, body, request.content_id)


@dataclass
class BatchOutcome:
    status: int
    body: str
    boundary: str


def execute(
    parts: list[Part], run: Executor, *, continue_on_error: bool, transaction: Callable[..., Any]
) -> BatchOutcome:
    """Run the parts; `transaction()` is a context manager making one change set atomic."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[str] = []
    status = 200
    for part in parts:
        if isinstance(part, ChangeSet):
            failure, responses = _run_changeset(part, run, transaction)
            if failure is None:
                out.append(_changeset_section(boundary, responses))
                continue
            out.append(_section(boundary, failure[1], failure[0].content_id))
            if not continue_on_error:
                status = failure[1].status
                break
            continue
        response = run(part)
        out.append(_section(boundary, response, part.content_id))
        if response.status >= 400 and not continue_on_error:
            status = response.status
            break
    return BatchOutcome(status, "".join(out) + f"--{boundary}--{CRLF}", boundary)


class _ChangeSetFailed(Exception):
    def __init__(self, request: InnerRequest, response: InnerResponse) -> None:
        super().__init__(response.status)
        self.request = request
        self.response = response


def _run_changeset(
    changeset: ChangeSet, run: Executor, transaction: Callable[..., Any]
) -> tuple[tuple[InnerRequest, InnerResponse] | None, list[tuple[InnerRequest, InnerResponse]]]:
    responses: list[tuple[InnerRequest, InnerResponse]] = []
    created: dict[str, str] = {}
    try:
        with transaction():
            for request in changeset.requests:
                try:
                    resolved = substitute_references(request, created)
                except errors.DataverseError as exc:
                    raise _ChangeSetFailed(request, error_response(exc)) from exc
                response = run(resolved)
                if response.status >= 400:
                    raise _ChangeSetFailed(request, response)
                location = next((v for k, v in response.headers if k.lower() == "odata-entityid"), None)
                if request.content_id and location:
                    created[request.content_id] = location
                responses.append((request, response))
    except _ChangeSetFailed as failed:
        return (failed.request, failed.response), []
    return None, responses


def error_response(exc: errors.DataverseError) -> InnerResponse:
    return InnerResponse(
        exc.status,
        [
            ("Content-Type", "application/json; odata.metadata=minimal"),
            ("OData-Version", "4.0"),
            *exc.headers.items(),
        ],
        json.dumps(exc.body()).encode(),
    )


def _http_block(response: InnerResponse) -> str:
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    return CRLF.join(lines) + CRLF + CRLF + response.body.decode("utf-8") + CRLF


def _section(boundary: str, response: InnerResponse, content_id: str | None) -> str:
    head = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    return CRLF.join(head) + CRLF + CRLF + _http_block(response)


def _changeset_section(boundary: str, responses: list[tuple[InnerRequest, InnerResponse]]) -> str:
    inner = f"changesetresponse_{uuid.uuid4()}"
    body = "".join(_section(inner, response, request.content_id) for request, response in responses)
    return f"--{boundary}{CRLF}Content-Type: multipart/mixed; boundary={inner}{CRLF}{CRLF}{body}--{inner}--{CRLF}"
