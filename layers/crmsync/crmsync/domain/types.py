"""Field types on both sides, normalised, and which pairs may be mapped onto each other (SPEC S3)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class CrmFieldType(StrEnum):
    """A CRM field type reduced to what the mapping needs to know."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    TIME = "time"
    ID = "id"
    REFERENCE = "reference"
    PICKLIST = "picklist"
    MULTIPICKLIST = "multipicklist"
    OTHER = "other"


class LocalType(StrEnum):
    """Types of attributes on the marketing side."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"
    """A list of texts: where a multi-select picklist's values land (SPEC S2)."""


class AttributeType(StrEnum):
    """What the configuration may declare a marketing attribute to be (`attributes:`, SPEC S3): a local
    type, or an enumeration - a text whose values come from an enumeration sync."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"
    ENUMERATION = "enumeration"

    @property
    def local_type(self) -> LocalType:
        """How values of the attribute are stored: an enumeration's are its values, as text."""
        return LocalType.STRING if self is AttributeType.ENUMERATION else LocalType(self.value)


class Conversion(StrEnum):
    """Per-field conversion (SPEC I3)."""

    DEFAULT = "default"
    """Automatic; date-times are converted to the target's time zone."""
    DATE_ONLY = "date_only"
    """Drops the time of a date-time (the date in the target's time zone)."""
    NO_OFFSET = "no_offset"
    """No time-zone handling: the CRM's wall-clock time, offset dropped."""
    RAW = "raw"
    """The value as a string, untouched."""


TEXT_LIKE = frozenset(
    {
        CrmFieldType.STRING,
        CrmFieldType.ID,
        CrmFieldType.REFERENCE,
        CrmFieldType.PICKLIST,
        CrmFieldType.OTHER,
        CrmFieldType.MULTIPICKLIST,
        CrmFieldType.TIME,
    }
)

COMPATIBLE: dict[CrmFieldType, frozenset[LocalType]] = {
    **{t: frozenset({LocalType.STRING}) for t in TEXT_LIKE},
    CrmFieldType.PICKLIST: frozenset({LocalType.STRING, LocalType.LIST}),
    CrmFieldType.MULTIPICKLIST: frozenset({LocalType.STRING, LocalType.LIST}),
    CrmFieldType.INTEGER: frozenset({LocalType.INTEGER, LocalType.NUMBER, LocalType.STRING}),
    CrmFieldType.NUMBER: frozenset({LocalType.NUMBER, LocalType.STRING}),
    CrmFieldType.BOOLEAN: frozenset({LocalType.BOOLEAN, LocalType.INTEGER, LocalType.STRING}),
    CrmFieldType.DATE: frozenset({LocalType.DATE, LocalType.STRING}),
    CrmFieldType.DATETIME: frozenset({LocalType.DATETIME, LocalType.DATE, LocalType.STRING}),
}

NATURAL_LOCAL_TYPE: dict[CrmFieldType, LocalType] = {
    **{t: LocalType.STRING for t in TEXT_LIKE},
    CrmFieldType.INTEGER: LocalType.INTEGER,
    CrmFieldType.NUMBER: LocalType.NUMBER,
    CrmFieldType.BOOLEAN: LocalType.BOOLEAN,
    CrmFieldType.DATE: LocalType.DATE,
    CrmFieldType.DATETIME: LocalType.DATETIME,
}

DATE_LIKE = frozenset({CrmFieldType.DATE, CrmFieldType.DATETIME})
NUMERIC_FILTERABLE = frozenset({CrmFieldType.INTEGER, CrmFieldType.NUMBER, CrmFieldType.BOOLEAN})


def is_compatible(crm: CrmFieldType, local: LocalType, conversion: Conversion, has_replacements: bool) -> bool:
    """Whether CRM values of type `crm` can land in a local attribute of type `local`.

    `raw` always gives text; replacement rules may turn text into any type, checked per value.
    """
    if conversion is Conversion.RAW:
        return local is LocalType.STRING or has_replacements
    if has_replacements:
        return True
    return local in COMPATIBLE[crm]


def typed_text(text: str, crm_type: CrmFieldType | None) -> Any:
    """A value written as text (a CSV cell: a transfer file, a Bulk API result) as the CRM's JSON API
    would give it: numbers and booleans typed, an empty cell absent (None); `ValueError` saying why a
    cell is not of its type."""
    if text == "":
        return None
    if crm_type is CrmFieldType.BOOLEAN:
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError("is not a boolean (true, false, 1, 0)")
    if crm_type is CrmFieldType.INTEGER:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("is not an integer") from None
    if crm_type is CrmFieldType.NUMBER:
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError("is not a number") from None
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return text
