"""`$skiptoken` paging cookies in the shape Dataverse writes them ("Page results using OData").

The token is `<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e…" istracking="False" />`:
the inner, URL-encoded cookie names the last row of the previous page by the values of its sort columns
and its primary key, so the next page starts after that row even if rows were inserted or deleted in
between (keyset paging, like Dataverse's). The emulator adds its own attributes to the inner cookie where
change tracking needs them (the delta token to hand out at the end, the offset in a delta result).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import quoteattr, unescape

from . import errors
from .metadata import AttributeDef

_ENTITIES = {"&quot;": '"', "&apos;": "'"}


@dataclass
class PagingCookie:
    page: int  # the page this cookie follows (1 for the cookie handed out with the first page)
    last: list[tuple[str, str | None]] = field(default_factory=list)  # (property, text) of the last row
    extra: dict[str, str] = field(default_factory=dict)
    tracking: bool = False


def to_text(value: Any, attribute: AttributeDef | None) -> str | None:
    if value is None:
        return None
    if attribute is not None and attribute.edm_type == "Edm.Guid":
        return "{" + str(value).upper() + "}"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def from_text(text: str | None, attribute: AttributeDef) -> Any:
    if text is None:
        return None
    edm = attribute.edm_type
    if edm == "Edm.Guid":
        return text.strip("{}").lower()
    if edm == "Edm.Boolean":
        return text == "1"
    if edm in {"Edm.Int32", "Edm.Int64"}:
        return int(text)
    if edm in {"Edm.Decimal", "Edm.Double"}:
        return float(text)
    return text


def encode(cookie: PagingCookie) -> str:
    inner_attrs = "".join(f" {k}={quoteattr(v)}" for k, v in cookie.extra.items())
    columns = "".join(
        f'<{prop} lastnull="1" />' if text is None else f"<{prop} last={quoteattr(text)} />"
        for prop, text in cookie.last
    )
    inner = f'<cookie page="{cookie.page}"{inner_attrs}>{columns}</cookie>'
    tracking = "True" if cookie.tracking else "False"
    return (
        f'<cookie pagenumber="{cookie.page + 1}" pagingcookie="{quote(inner, safe="")}" istracking="{tracking}" />'
    )


_OUTER_RE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([^"]*)" istracking="(True|False)" />$')
_INNER_RE = re.compile(r'^<cookie page="(\d+)"((?: [\w]+="[^"]*")*)>(.*)</cookie>$', re.DOTALL)
_ATTR_RE = re.compile(r' ([\w]+)="([^"]*)"')
_COLUMN_RE = re.compile(r'<([\w]+) (?:lastnull="1"|last="([^"]*)") />')


def decode(token: str) -> PagingCookie:
    """Parse a cookie this module encoded (by pattern: the token is client input, not trusted XML)."""
    outer = _OUTER_RE.match(token.strip())
    inner = _INNER_RE.match(unquote(outer.group(2))) if outer else None
    if outer is None or inner is None:
        raise errors.bad_request("The $skiptoken query option value is not valid.")
    last: list[tuple[str, str | None]] = []
    for match in _COLUMN_RE.finditer(inner.group(3)):
        last.append((match.group(1), None if match.group(2) is None else unescape(match.group(2), _ENTITIES)))
    extra = {name: unescape(value, _ENTITIES) for name, value in _ATTR_RE.findall(inner.group(2))}
    return PagingCookie(int(outer.group(1)) - 1, last, extra, outer.group(3) == "True")


def skiptoken_param(cookie: PagingCookie) -> str:
    """The cookie as it appears in `@odata.nextLink` (percent-encoded, `=` left readable)."""
    return quote(encode(cookie), safe="=")
