"""Text files an operator gives crmsync - configuration, populations, records - decoded in one place.

Every such file is UTF-8 (a byte-order mark is allowed). A file that is not fails with a
`ConfigurationError` naming the file, the line and column of the first bad byte and the rule, instead of
a bare `UnicodeDecodeError` that names nothing; the offending byte is shown, never the text around it,
which may be a person's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import ConfigurationError

RULE_UTF8 = "rule N4: input files are UTF-8 text"
_BOM = b"\xef\xbb\xbf"
_CHUNK = 64 * 1024


def _not_utf8(source: str, line: int, column: int, byte: int) -> ConfigurationError:
    return ConfigurationError(
        f"{source}:{line}:{column}: byte 0x{byte:02x} is not UTF-8 ({RULE_UTF8}); save the file as UTF-8"
    )


def decode_text(data: bytes, source: str) -> str:
    """The whole of `data` as text, or a `ConfigurationError` naming where it stops being UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(_BOM) if data.startswith(_BOM) else 0)
        line_start = data.rfind(b"\n", 0, offset) + 1
        raise _not_utf8(source, data.count(b"\n", 0, offset) + 1, offset - line_start + 1, data[offset]) from None


def text_lines(stream: Any, source: str) -> Iterator[str]:
    """The lines of a binary stream (an S3 body), decoded one by one, line ends kept, so a large file is
    never held whole; a line that is not UTF-8 raises a `ConfigurationError` naming its number."""
    pending = b""
    number = 0
    first = True

    def decode(raw: bytes) -> str:
        nonlocal first
        if first and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        first = False
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(source, number, exc.start + 1, raw[exc.start]) from None

    while chunk := stream.read(_CHUNK):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            number += 1
            yield decode(raw + b"\n")
    if pending:
        number += 1
        yield decode(pending)
