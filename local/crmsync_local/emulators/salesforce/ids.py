"""Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.

An id is `<3-char key prefix><12 chars>`; the 18-character form appends three characters that encode,
five characters at a time, which of the first fifteen are upper case. Salesforce accepts either form on
input and always answers with the 18-character one, so the emulator does the same.
"""

from __future__ import annotations

import itertools
import re
import threading

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALNUM = re.compile(r"^[0-9A-Za-z]+$")

# The two "pod" characters and the reserved character Salesforce puts after the key prefix.
_INSTANCE = "Dn0"


def checksum_suffix(id15: str) -> str:
    """The three case-safe characters Salesforce appends to a 15-character id."""
    suffix = []
    for chunk_start in range(0, 15, 5):
        bits = 0
        for position, char in enumerate(id15[chunk_start : chunk_start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_SUFFIX_ALPHABET[bits])
    return "".join(suffix)


def to_18(id15: str) -> str:
    return id15 + checksum_suffix(id15)


def normalize_id(value: str) -> str | None:
    """The canonical 18-character id for a 15- or 18-character input, or None when malformed.

    An 18-character id carries the case of its first fifteen characters in its suffix, so a lower-cased
    18-character id is still valid (Salesforce accepts it too); its case is restored from the suffix.
    """
    if not isinstance(value, str) or len(value) not in (15, 18) or not _ALNUM.match(value):
        return None
    if len(value) == 15:
        return to_18(value)
    suffix = value[15:].upper()
    chars = list(value[:15])
    for chunk, suffix_char in enumerate(suffix):
        bits = _SUFFIX_ALPHABET.find(suffix_char)
        if bits < 0:
            return None
        for position in range(5):
            index = chunk * 5 + position
            if chars[index].isalpha():
                chars[index] = chars[index].upper() if bits & (1 << position) else chars[index].lower()
            elif bits & (1 << position):
                return None  # the suffix claims a digit is upper case: not a Salesforce id
    return to_18("".join(chars))


def key_prefix(record_id: str) -> str:
    return record_id[:3]


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


class IdGenerator:
    """Hands out increasing ids, one sequence for the whole org, so ids never collide across objects."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        if len(prefix) != 3:
            raise ValueError(f"a key prefix has three characters, not {prefix!r}")
        with self._lock:
            number = next(self._counter)
        return to_18(prefix + _INSTANCE + _base62(number, 9))
