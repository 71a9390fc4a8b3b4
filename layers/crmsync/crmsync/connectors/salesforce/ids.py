"""Salesforce record ids in their 18-character, case-safe form.

Salesforce writes an id two ways: 15 characters, case-sensitive (what reports, list views and Data Loader
exports often show), and 18 characters, the 15 followed by three characters that say which of them are
upper case - five at a time, bit n set when character n of the five is A-Z, the five bits indexing
`A..Z0..5`. The APIs accept either form and always answer with the 18-character one, so the local store
holds 18-character ids; an id a person gives (a transfer file, `--ids`, a stored reject) is brought to that
form before it is compared with them (`SalesforceConnector.normalize_id`), or `003...AbC` and `003...AbCIAQ`
would be two records.

An 18-character id whose case was lost to lower case (a tool that lower-cases) is still one record: its
suffix, which Salesforce writes in upper case, tells the case back, so it is restored. (An id upper-cased
by a tool keeps a valid-looking suffix and is taken as it is.) Anything that is not an id's shape is
returned unchanged, for the caller to refuse (`is_record_id`).
"""

from __future__ import annotations

from .soql import is_salesforce_id

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_UPPER_AS_ONE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "1" * 26 + "0" * 36
)


def _suffix(head: str) -> str:
    """The three case-safe characters of a 15-character id: one per five, bit n for character n."""
    bits = head.translate(_UPPER_AS_ONE)
    return _SUFFIX[int(bits[4::-1], 2)] + _SUFFIX[int(bits[9:4:-1], 2)] + _SUFFIX[int(bits[14:9:-1], 2)]


def _with_case_of(head: str, suffix: str) -> str | None:
    """The fifteen characters in the case `suffix` says, or None when it cannot be this id's suffix."""
    chars = []
    for index, char in enumerate(head):
        flags = _SUFFIX.find(suffix[index // 5])
        upper = flags >= 0 and bool(flags >> (index % 5) & 1)
        if flags < 0 or (upper and char.isdigit()):
            return None
        chars.append(char.upper() if upper else char.lower())
    return "".join(chars)


def case_safe_id(value: str) -> str:
    """The 18-character form of a Salesforce id given in either form; `value` itself when it is not one.

    Every id the CRM answers goes through here (the deletion import's id set, the completeness check), so
    an 18-character id whose suffix has no lower-case letter - as Salesforce writes every suffix - is taken
    as it is, without recomputing its suffix (a check of about 0.3 us rather than 5)."""
    if len(value) == 18:
        suffix = value[15:]
        if suffix == suffix.upper() or not is_salesforce_id(value):
            return value
        restored = _with_case_of(value[:15], suffix.upper())
        return value if restored is None else restored + _suffix(restored)
    if len(value) == 15 and is_salesforce_id(value):
        return value + _suffix(value)
    return value


__all__ = ["case_safe_id"]
