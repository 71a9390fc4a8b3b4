"""The one conversion table between CRM values and local values (SPEC I3, I4, S3).

Import reads CRM values with `convert_from_crm` and `coerce_to_local`; export writes local values with
`convert_to_crm`, the same conversions in reverse (SPEC E3).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from .records import RecordRejected, RejectCode
from .types import Conversion, CrmFieldType, LocalType

_SF_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_crm_datetime(value: str) -> datetime:
    """An aware datetime from the CRM's ISO 8601 text (`…Z`, `…+0000`, `…+02:00`, with or without ms)."""
    text = value.strip()
    if not text or len(text) > 40:
        raise ValueError(f"{value!r} is not a date-time")
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():  # Salesforce's +0000 -> +00:00
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_stored_time(value: Any) -> datetime | None:
    """An ISO 8601 time crmsync stored itself (a run's startedAt, endedAt), or None when absent or unreadable:
    for what is shown or measured, never for what is applied."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_crm_datetime(value)
    except ValueError:
        return None


def parse_crm_date(value: str) -> date:
    if not ISO_DATE.match(value.strip()):
        raise ValueError(f"{value!r} is not a date (yyyy-mm-dd)")
    return date.fromisoformat(value.strip())


def format_local_datetime(moment: datetime) -> str:
    timespec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=timespec)


def _as_text(value: Any) -> str:
    """A value as text, the way the CRM sent it (JSON literals for booleans and numbers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


OPTION_VALUES = re.compile(r"^-?\d+(?:,-?\d+)*$")


def split_multi_select(text: str) -> list[str]:
    """A multi-select value as the CRM sends it: Salesforce joins values with `;`, Dataverse joins option
    values (integers) with `,`."""
    separator = "," if OPTION_VALUES.match(text.strip()) else ";"
    return [part.strip() for part in text.split(separator) if part.strip()]


def join_multi_select(values: list[Any]) -> str:
    """The reverse of `split_multi_select`: option values (integers) with `,`, other values with `;`."""
    texts = [value if isinstance(value, str) else _as_text(value) for value in values]
    return ("," if texts and all(OPTION_VALUES.match(t) for t in texts) else ";").join(texts)


def convert_from_crm(
    value: Any, crm_type: CrmFieldType, conversion: Conversion, tz: ZoneInfo, remote_name: str
) -> Any:
    """Apply the field's conversion to one CRM value."""
    if value is None:
        return None
    if conversion is Conversion.RAW:
        return _as_text(value)
    if crm_type is CrmFieldType.DATETIME:
        try:
            moment = parse_crm_datetime(str(value))
        except ValueError:
            raise RecordRejected(
                RejectCode.INVALID_DATE, f"{remote_name}: {value!r} is not a valid date-time", (remote_name,)
            ) from None
        if conversion is Conversion.NO_OFFSET:
            return format_local_datetime(moment.replace(tzinfo=None))
        local = moment.astimezone(tz)
        if conversion is Conversion.DATE_ONLY:
            return local.date().isoformat()
        return format_local_datetime(local)
    if crm_type is CrmFieldType.DATE:
        try:
            return parse_crm_date(str(value)).isoformat()
        except ValueError:
            raise RecordRejected(
                RejectCode.INVALID_DATE, f"{remote_name}: {value!r} is not a valid date", (remote_name,)
            ) from None
    return value


def replacement_key(value: Any) -> str:
    """Replacement rules are keyed by the value's text, so `F`, `true` and `3` can all be matched."""
    return _as_text(value)


def coerce_to_local(value: Any, local_type: LocalType, remote_name: str, local_name: str) -> Any:
    """Check (and losslessly widen) a value for its local attribute's type, or reject the record."""
    if value is None:
        return None

    def mismatch(kind: str) -> RecordRejected:
        return RecordRejected(
            RejectCode.TYPE_MISMATCH,
            f"{remote_name}: {value!r} is not {kind} (local attribute {local_name} is {local_type.value})",
            (remote_name,),
        )

    if local_type is LocalType.STRING:
        return value if isinstance(value, str) else _as_text(value)
    if local_type is LocalType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise mismatch("a boolean")
    if local_type is LocalType.LIST:
        if isinstance(value, list):
            return [item if isinstance(item, str) else _as_text(item) for item in value]
        if isinstance(value, str):
            return split_multi_select(value)
        raise mismatch("a list")
    if local_type is LocalType.INTEGER:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise mismatch("an integer")
    if local_type is LocalType.NUMBER:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise mismatch("a number")
    if local_type is LocalType.DATE:
        if isinstance(value, str):
            try:
                return parse_crm_date(value).isoformat()
            except ValueError:
                pass
            try:
                return parse_crm_datetime(value).date().isoformat()
            except ValueError:
                pass
        raise mismatch("a date")
    if isinstance(value, str):
        try:
            parse_crm_datetime(value)
            return value
        except ValueError:
            pass
    raise mismatch("a date-time")


def format_crm_datetime(moment: datetime) -> str:
    """The UTC text CRMs accept for a date-time: `2024-03-01T08:00:00.000Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local_datetime(text: str, tz: ZoneInfo) -> datetime:
    """A local date-time; one written without an offset is wall-clock time in the sync's time zone."""
    stripped = text.strip()
    parsed = datetime.fromisoformat(_SF_OFFSET.sub(r"\1:\2", stripped).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def convert_to_crm(
    value: Any, crm_type: CrmFieldType, conversion: Conversion, tz: ZoneInfo, remote_name: str
) -> Any:
    """Apply the field's conversion to one local value, the reverse of `convert_from_crm`.

    `default` sends local date-times (with their offset, or in the sync's time zone) as UTC;
    `no_offset` sends the wall-clock digits as they are; `date_only` sends a local date as that day's
    midnight in the sync's time zone; `raw` sends the value's text untouched.
    """
    if value is None:
        return None
    if conversion is Conversion.RAW:
        return _as_text(value)

    def mismatch(kind: str, code: RejectCode = RejectCode.TYPE_MISMATCH) -> RecordRejected:
        return RecordRejected(code, f"{remote_name}: {value!r} is not {kind}", (remote_name,))

    if crm_type is CrmFieldType.DATETIME:
        if not isinstance(value, str):
            raise mismatch("a date-time", RejectCode.INVALID_DATE)
        try:
            if conversion is Conversion.DATE_ONLY:
                return format_crm_datetime(datetime.combine(parse_crm_date(value), time(0), tz))
            moment = _local_datetime(value, tz)
        except ValueError:
            raise mismatch("a date-time", RejectCode.INVALID_DATE) from None
        if conversion is Conversion.NO_OFFSET:
            moment = moment.replace(tzinfo=UTC)
        return format_crm_datetime(moment)
    if crm_type is CrmFieldType.DATE:
        if not isinstance(value, str):
            raise mismatch("a date", RejectCode.INVALID_DATE)
        try:
            return parse_crm_date(value).isoformat()
        except ValueError:
            pass
        try:
            return _local_datetime(value, tz).astimezone(tz).date().isoformat()
        except ValueError:
            raise mismatch("a date", RejectCode.INVALID_DATE) from None
    if crm_type is CrmFieldType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise mismatch("a boolean")
    if crm_type in (CrmFieldType.INTEGER, CrmFieldType.NUMBER):
        number: Any = value
        if isinstance(value, str):
            try:
                number = json.loads(value.strip())
            except ValueError:
                raise mismatch("a number") from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise mismatch("a number")
        if crm_type is CrmFieldType.INTEGER:
            if isinstance(number, float) and not number.is_integer():
                raise mismatch("an integer")
            return int(number)
        return number
    if isinstance(value, list):
        return join_multi_select(value)
    return value if isinstance(value, str) else _as_text(value)
