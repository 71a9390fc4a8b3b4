"""Field mappings, the mapper that turns one CRM record into local attributes (SPEC I2-I4, S3), and the
one that turns local attributes into a CRM record's fields (SPEC E3)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .conversions import (
    ISO_DATE,
    coerce_to_local,
    convert_from_crm,
    convert_to_crm,
    format_local_datetime,
    parse_crm_datetime,
    replacement_key,
)
from .filters import check_field_name
from .records import LocalRecord, RecordRejected, RejectCode
from .types import NATURAL_LOCAL_TYPE, TEXT_LIKE, Conversion, CrmFieldType, LocalType

LOCAL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
ENUMERATION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
RESERVED_LOCAL_NAMES = frozenset(
    {
        "pk",
        "profileId",
        "externalId",
        "externalIds",
        "crm",
        "deletedInCrm",
        "deletedInCrmAt",
        "createdAt",
        "updatedAt",
        "attrChangedAt",
        "kind",
    }
)


class FieldMapping(BaseModel):
    """One remote field onto one local attribute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote: str
    local: str
    conversion: Conversion = Conversion.DEFAULT
    replace: dict[str, Any] = Field(default_factory=dict, description="value replacement rules (SPEC I4)")
    type: LocalType | None = Field(default=None, description="local type; inferred from the CRM when unset")
    max_length: int | None = Field(default=None, ge=1, le=400_000)
    label: bool = Field(
        default=False,
        description="import the CRM's display label instead of the stored value: option-set labels, "
        "yes/no labels, the name of a looked-up record (Dynamics formatted values)",
    )
    enumeration: str | None = Field(
        default=None,
        description="a conversion through a synced enumeration (SPEC S2): an import stores the label of the "
        "CRM's value, an export sends the value of the local label (option-set integers <-> labels)",
    )

    _check_remote = field_validator("remote")(check_field_name)

    @field_validator("local")
    @classmethod
    def _local_name(cls, name: str) -> str:
        if not LOCAL_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid local attribute name (letters, digits, _; 64 max)")
        if name in RESERVED_LOCAL_NAMES:
            raise ValueError(f"{name!r} is reserved by crmsync; choose another local name")
        return name

    @field_validator("enumeration")
    @classmethod
    def _enumeration_name(cls, name: str | None) -> str | None:
        if name is not None and not ENUMERATION_NAME.match(name):
            raise ValueError(f"{name!r} is not an enumeration name (letters, digits, _ . -; 64 max)")
        return name

    @field_validator("replace")
    @classmethod
    def _replacement_values_are_scalars(cls, rules: dict[str, Any]) -> dict[str, Any]:
        for key, value in rules.items():
            if isinstance(value, dict | list):
                raise ValueError(f"replacement for {key!r} must be a single value, not {type(value).__name__}")
        return rules

    @model_validator(mode="after")
    def _replacements_fit_the_local_type(self) -> FieldMapping:
        if self.type is None:
            return self
        for key, value in self.replace.items():
            try:
                coerce_to_local(value, self.type, self.remote, self.local)
            except RecordRejected:
                raise ValueError(
                    f"replacement {key!r} -> {value!r} does not fit the local type {self.type.value}"
                ) from None
        if self.max_length is not None and self.type is not LocalType.STRING:
            raise ValueError("max_length applies to string attributes only")
        if self.enumeration is not None and self.type not in (None, LocalType.STRING):
            raise ValueError("an enumeration conversion gives the label, a text: the local type must be string")
        return self


@dataclass(frozen=True)
class ResolvedField:
    """A mapping whose remote name and type were checked against the CRM's schema."""

    remote: str
    local: str
    crm_type: CrmFieldType
    local_type: LocalType
    conversion: Conversion
    replace: dict[str, Any]
    max_length: int | None
    label: bool = False
    enumeration: str | None = None
    """Converted through this enumeration: its values and labels were added to `replace` at the run's start."""

    def to_state(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "local": self.local,
            "crm_type": self.crm_type.value,
            "local_type": self.local_type.value,
            "conversion": self.conversion.value,
            "replace": self.replace,
            "max_length": self.max_length,
            "label": self.label,
            **({"enumeration": self.enumeration} if self.enumeration else {}),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ResolvedField:
        return cls(
            remote=data["remote"],
            local=data["local"],
            crm_type=CrmFieldType(data["crm_type"]),
            local_type=LocalType(data["local_type"]),
            conversion=Conversion(data["conversion"]),
            replace=dict(data.get("replace") or {}),
            max_length=data.get("max_length"),
            label=bool(data.get("label", False)),
            enumeration=data.get("enumeration"),
        )

    def reversed(self) -> ResolvedField:
        """The same field for writing to the CRM (SPEC B1): its import replacements turned round, each local
        value back to the CRM value it came from (`PayloadMapper` then applies the conversion in reverse).
        Two CRM values replaced by one local value go back as the first of them."""
        back: dict[str, Any] = {}
        for crm_value, local_value in self.replace.items():
            back.setdefault(replacement_key(local_value), crm_value)
        return dataclasses.replace(self, replace=back)

    @classmethod
    def resolve(cls, mapping: FieldMapping, remote: str, crm_type: CrmFieldType) -> ResolvedField:
        local_type = mapping.type or (
            LocalType.STRING if mapping.conversion is Conversion.RAW else NATURAL_LOCAL_TYPE[crm_type]
        )
        if (
            mapping.type is None
            and mapping.conversion is Conversion.DATE_ONLY
            and crm_type is CrmFieldType.DATETIME
        ):
            local_type = LocalType.DATE
        if mapping.type is None and mapping.enumeration is not None:
            local_type = LocalType.STRING  # the enumeration's label
        return cls(
            remote,
            mapping.local,
            crm_type,
            local_type,
            mapping.conversion,
            dict(mapping.replace),
            mapping.max_length,
            mapping.label,
            mapping.enumeration,
        )


class RecordMapper:
    """Maps CRM records to `LocalRecord`s; a value that cannot be mapped rejects its record.

    Each field's conversion is compiled once, when the mapper is made (once per page step), into one
    function: the common cases (text onto text, a date-time onto a date-time with the default conversion,
    a value already of its local type) take a short path, everything else `map_value`, the general one.
    Both give the same value or the same reject for every input (tests/unit/test_conversions.py checks).
    """

    def __init__(self, fields: list[ResolvedField], id_field: str, watermark_field: str, timezone: str) -> None:
        self.fields = fields
        self.id_field = id_field
        self.watermark_field = watermark_field
        self.tz = ZoneInfo(timezone)
        self._compiled = [(f.local, f.remote, self.compile(f)) for f in fields]

    def compile(self, field: ResolvedField) -> Callable[[Any], Any]:
        """`map_value` for this field as one function, with the field's settings looked at once."""

        def general(raw: Any) -> Any:
            return self.map_value(field, raw)

        if field.replace or field.conversion is Conversion.RAW:
            return general
        limit = field.max_length
        crm, local = field.crm_type, field.local_type
        if crm in TEXT_LIKE and local is LocalType.STRING:
            if limit is None:
                return lambda raw: raw if raw is None or type(raw) is str else general(raw)
            return lambda raw: raw if raw is None or (type(raw) is str and len(raw) <= limit) else general(raw)
        if limit is not None:
            return general
        native = {
            (CrmFieldType.BOOLEAN, LocalType.BOOLEAN): (bool,),
            (CrmFieldType.INTEGER, LocalType.INTEGER): (int,),
            (CrmFieldType.INTEGER, LocalType.NUMBER): (int,),
            (CrmFieldType.NUMBER, LocalType.NUMBER): (int, float),
        }.get((crm, local))
        if native is not None:
            return lambda raw: raw if raw is None or type(raw) in native else general(raw)
        tz = self.tz
        if crm is CrmFieldType.DATETIME and field.conversion is Conversion.DEFAULT and local is LocalType.DATETIME:

            def moment(raw: Any) -> Any:
                if type(raw) is not str:
                    return general(raw)
                try:
                    return format_local_datetime(parse_crm_datetime(raw).astimezone(tz))
                except ValueError:
                    return general(raw)  # the general path words the reject

            return moment
        if crm is CrmFieldType.DATETIME and field.conversion is Conversion.DATE_ONLY and local is LocalType.DATE:

            def day_of(raw: Any) -> Any:
                if type(raw) is not str:
                    return general(raw)
                try:
                    return parse_crm_datetime(raw).astimezone(tz).date().isoformat()
                except ValueError:
                    return general(raw)

            return day_of
        if crm is CrmFieldType.DATE and local is LocalType.DATE:

            def day(raw: Any) -> Any:
                if type(raw) is not str or not ISO_DATE.match(raw):
                    return general(raw)
                try:
                    return date.fromisoformat(raw).isoformat()
                except ValueError:
                    return general(raw)

            return day
        return general

    def map(self, record: dict[str, Any]) -> LocalRecord:
        crm_id = record.get(self.id_field)
        if not crm_id:
            raise RecordRejected(RejectCode.MISSING_ID, f"the record has no {self.id_field}", (self.id_field,))
        modified_raw = record.get(self.watermark_field)
        modified_at: datetime
        try:
            modified_at = parse_crm_datetime(str(modified_raw))
        except ValueError:
            raise RecordRejected(
                RejectCode.MISSING_WATERMARK,
                f"{self.watermark_field}: {modified_raw!r} is not a valid date-time",
                (self.watermark_field,),
            ) from None
        attributes = {local: convert(record.get(remote)) for local, remote, convert in self._compiled}
        return LocalRecord(crm_id=str(crm_id), modified_at=modified_at, attributes=attributes, source=record)

    def map_value(self, field: ResolvedField, raw: Any) -> Any:
        value = convert_from_crm(raw, field.crm_type, field.conversion, self.tz, field.remote)
        if field.replace and value is not None:
            key = replacement_key(value)
            if key in field.replace:
                value = field.replace[key]
        value = coerce_to_local(value, field.local_type, field.remote, field.local)
        if field.max_length is not None and isinstance(value, str) and len(value) > field.max_length:
            raise RecordRejected(
                RejectCode.STRING_TOO_LONG,
                f"{field.remote}: {len(value)} characters, more than the {field.max_length} allowed for "
                f"{field.local}",
                (field.remote,),
            )
        return value


class PayloadMapper:
    """Maps a profile's local attributes onto CRM fields, with the import's conversions in reverse.

    In an export sync a field's `replace` rules map local values (as text) to CRM values. An attribute
    that is absent or empty is left out, so the CRM keeps its value rather than losing it; a value
    that cannot be converted rejects the record.
    """

    def __init__(self, fields: Sequence[ResolvedField], timezone: str) -> None:
        self.fields = fields
        self.tz = ZoneInfo(timezone)

    def map(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for field in self.fields:
            value = self.map_value(field, attributes.get(field.local))
            if value is not None:
                payload[field.remote] = value
        return payload

    def map_value(self, field: ResolvedField, value: Any) -> Any:
        if value is None or value == "":
            return None
        if field.replace:
            key = replacement_key(value)
            if key in field.replace:
                value = field.replace[key]
        value = convert_to_crm(value, field.crm_type, field.conversion, self.tz, field.remote)
        if field.max_length is not None and isinstance(value, str) and len(value) > field.max_length:
            raise RecordRejected(
                RejectCode.STRING_TOO_LONG,
                f"{field.remote}: {len(value)} characters, more than the {field.max_length} allowed",
                (field.remote,),
            )
        return value
