"""Object and field definitions (standard objects, a custom object, custom ones added at run time) and
their describe output, shaped as the REST API's describeGlobal / describe results.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

STRING_TYPES = frozenset(
    {"id", "string", "email", "phone", "textarea", "picklist", "multipicklist", "url", "reference"}
)
PICKLIST_TYPES = frozenset({"picklist", "multipicklist"})
MASTER_RECORD_TYPE_ID = "012000000000000AAA"
"""The id Salesforce gives every object's master record type."""
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})
FIELD_TYPES = STRING_TYPES | NUMBER_TYPES | {"boolean", "date", "datetime"}
# Compound fields are read-only views over their component fields (`MailingAddress` over `MailingStreet`,
# `MailingCity`, ...): they are selected, described and returned, never stored or written.
COMPOUND_TYPES = frozenset({"address"})
# An address's JSON keys and the component field suffixes they come from, as the REST API returns them.
# countryCode and stateCode are null unless the org has state and country picklists (this one has not).
ADDRESS_KEYS: tuple[tuple[str, str | None], ...] = (
    ("city", "City"),
    ("country", "Country"),
    ("countryCode", None),
    ("geocodeAccuracy", "GeocodeAccuracy"),
    ("latitude", "Latitude"),
    ("longitude", "Longitude"),
    ("postalCode", "PostalCode"),
    ("state", "State"),
    ("stateCode", None),
    ("street", "Street"),
)

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "address": "urn:address",
}
_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")


@dataclass(frozen=True)
class FieldDef:
    name: str
    label: str
    type: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    unique: bool = False
    external_id: bool = False
    id_lookup: bool = False
    case_sensitive: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    default_value: Any = None
    defaulted_on_create: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    custom: bool = False
    calculated: bool = False
    name_field: bool = False
    precision: int = 0
    scale: int = 0
    picklist_labels: tuple[tuple[str, str], ...] = ()
    """(value, label) where a value's label differs from the value."""
    inactive_values: tuple[str, ...] = ()
    """Values kept on old records but no longer offered (describe: `active: false`)."""

    def label_of(self, value: str) -> str:
        return dict(self.picklist_labels).get(value, value)

    def picklist_entries(self) -> list[dict[str, Any]]:
        return [
            {
                "active": value not in self.inactive_values,
                "defaultValue": value == self.default_value,
                "label": self.label_of(value),
                "validFor": None,
                "value": value,
            }
            for value in self.picklist_values
        ]

    # The compound field this one is a component of (`MailingAddress` for `MailingCity`; `Name` for
    # `FirstName`), as describe's `compoundFieldName` says.
    compound_field_name: str | None = None
    # For a compound field: (JSON key, component field name) pairs its value is built from.
    components: tuple[tuple[str, str | None], ...] = ()

    def compound_value(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """A compound field's value from a stored row: null when every component is null."""
        value = {key: row.get(component) if component else None for key, component in self.components}
        return value if any(v is not None for v in value.values()) else None

    @property
    def required(self) -> bool:
        """REQUIRED_FIELD_MISSING applies to non-nillable, createable fields Salesforce does not default."""
        return not self.nillable and self.createable and not self.defaulted_on_create

    def describe(self) -> dict[str, Any]:
        """The Field result of describeSObject with every key the REST API documents, in its order."""
        is_text = self.type in STRING_TYPES
        compound = self.type in COMPOUND_TYPES
        return {
            "aggregatable": self.type not in {"textarea"} and not compound,
            "aiPredictionField": False,
            "autoNumber": False,
            "byteLength": self.length * 3 if is_text else 0,
            "calculated": self.calculated,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": self.case_sensitive,
            "compoundFieldName": self.compound_field_name,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default_value if self.type not in PICKLIST_TYPES else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.precision if self.type == "int" else 0,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": "plaintextarea" if self.type == "textarea" else None,
            "filterable": (self.type != "textarea" or self.length <= 255) and not compound,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.type not in {"textarea", "double", "currency", "percent", "datetime"}
            and not compound,
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.id_lookup,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length if is_text else 0,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": len(self.reference_to) > 1,
            "nillable": self.nillable,
            "permissionable": self.nillable and not self.calculated and self.type != "id",
            "picklistValues": self.picklist_entries(),
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": self.precision if self.type in {"double", "currency", "percent"} else 0,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "searchPrefilterable": False,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": (self.type != "textarea" or self.length <= 255) and not compound,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


@dataclass
class RecordTypeDef:
    """A record type: which values of each picklist it offers, and its default per picklist."""

    id: str
    developer_name: str
    name: str
    picklists: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    defaults: dict[str, str] = dataclasses.field(default_factory=dict)
    default: bool = False


@dataclass
class ObjectDef:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool = False
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    queryable: bool = True
    fields: dict[str, FieldDef] = dataclasses.field(default_factory=dict)
    # Fields combined into the read-only Name (Contact, Lead, User): Name = "First Last".
    compound_name: tuple[str, str] | None = None
    record_types: list[RecordTypeDef] = dataclasses.field(default_factory=list)
    metadata_changed_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    """When the object's metadata last changed (real time: `If-Modified-Since` compares HTTP dates)."""

    def touch(self) -> None:
        self.metadata_changed_at = datetime.now(UTC)

    def remove_field(self, name: str) -> FieldDef:
        definition = self.field(name)
        if definition is None:
            raise SchemaError(f"{self.name} has no field {name!r}")
        if not definition.custom:
            raise SchemaError(
                f"{definition.name} is a standard field of {self.name}; only custom fields can be deleted"
            )
        del self.fields[definition.name]
        del self._lower[definition.name.lower()]
        if definition.relationship_name:
            self._relationships.pop(definition.relationship_name.lower(), None)
        self.touch()
        return definition

    def record_type_infos(self) -> list[dict[str, Any]]:
        """The master record type (always there) and the defined ones, as describe lists them."""
        infos = [
            {
                "active": True,
                "available": True,
                "defaultRecordTypeMapping": not any(r.default for r in self.record_types),
                "developerName": "Master",
                "master": True,
                "name": "Master",
                "recordTypeId": MASTER_RECORD_TYPE_ID,
                "urls": {
                    "layout": f"/services/data/v62.0/sobjects/{self.name}/describe/layouts/{MASTER_RECORD_TYPE_ID}"
                },
            }
        ]
        for record_type in self.record_types:
            infos.append(
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": record_type.default,
                    "developerName": record_type.developer_name,
                    "master": False,
                    "name": record_type.name,
                    "recordTypeId": record_type.id,
                    "urls": {
                        "layout": f"/services/data/v62.0/sobjects/{self.name}/describe/layouts/{record_type.id}"
                    },
                }
            )
        return infos

    def record_type(self, record_type_id: str) -> RecordTypeDef | None:
        """None for the master record type; a defined one by its 15- or 18-character id."""
        for record_type in self.record_types:
            if record_type.id[:15] == record_type_id[:15]:
                return record_type
        return None

    def __post_init__(self) -> None:
        self._lower: dict[str, FieldDef] = {}
        self._relationships: dict[str, FieldDef] = {}
        for definition in list(self.fields.values()):
            self._index(definition)

    def _index(self, definition: FieldDef) -> None:
        self.fields[definition.name] = definition
        self._lower[definition.name.lower()] = definition
        if definition.relationship_name:
            self._relationships[definition.relationship_name.lower()] = definition

    def add_field(self, definition: FieldDef) -> None:
        self._index(definition)

    def field(self, name: str) -> FieldDef | None:
        """Field names are case-insensitive everywhere in the API."""
        return self._lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._relationships.get(name.lower())

    @property
    def has_recycle_bin(self) -> bool:
        return "IsDeleted" in self.fields

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "describe": f"{base}/describe",
            "sobject": base,
        }

    def describe_basic(self, version: str) -> dict[str, Any]:
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name in {"Contact", "Lead", "Account"},
            "mruEnabled": True,
            "name": self.name,
            "queryable": self.queryable,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.deletable,
            "updateable": self.updateable,
            "urls": self.urls(version),
        }

    def describe(self, version: str) -> dict[str, Any]:
        return {
            **self.describe_basic(version),
            "actionOverrides": [],
            "childRelationships": [],
            "compactLayoutable": True,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [definition.describe() for definition in self.fields.values()],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": self.record_type_infos(),
            "searchLayoutable": True,
            "sobjectDescribeOption": "FULL",
            "supportedScopes": [{"label": "All records", "name": "everything"}],
        }


# -- field helpers ---------------------------------------------------------------------------------
def _text(name: str, label: str, length: int, **kw: Any) -> FieldDef:
    return FieldDef(name, label, "string", length, custom=name.endswith("__c"), **kw)


def _typed(kind: str, name: str, label: str, length: int = 0, **kw: Any) -> FieldDef:
    return FieldDef(name, label, kind, length, custom=name.endswith("__c"), **kw)


def _picklist(name: str, label: str, values: Iterable[str], **kw: Any) -> FieldDef:
    return FieldDef(name, label, "picklist", 255, picklist_values=tuple(values), custom=name.endswith("__c"), **kw)


def _multipicklist(name: str, label: str, values: Iterable[str], **kw: Any) -> FieldDef:
    return FieldDef(
        name, label, "multipicklist", 4099, picklist_values=tuple(values), custom=name.endswith("__c"), **kw
    )


def _checkbox(name: str, label: str, **kw: Any) -> FieldDef:
    return FieldDef(name, label, "boolean", nillable=False, default_value=False, defaulted_on_create=True, **kw)


def _lookup(name: str, label: str, target: str, relationship: str, **kw: Any) -> FieldDef:
    return FieldDef(
        name,
        label,
        "reference",
        18,
        reference_to=(target,),
        relationship_name=relationship,
        custom=name.endswith("__c"),
        **kw,
    )


def _system_fields(*, owned: bool, deletable: bool) -> list[FieldDef]:
    read_only: dict[str, Any] = {"createable": False, "updateable": False}
    fields = [
        FieldDef(
            "Id", "Record ID", "id", 18, nillable=False, id_lookup=True, defaulted_on_create=True, **read_only
        ),
    ]
    if owned:
        fields.append(_lookup("OwnerId", "Owner ID", "User", "Owner", nillable=False, defaulted_on_create=True))
    if deletable:
        fields.append(
            FieldDef("IsDeleted", "Deleted", "boolean", nillable=False, defaulted_on_create=True, **read_only)
        )
    stamp: dict[str, Any] = {"nillable": False, "defaulted_on_create": True, **read_only}
    fields += [
        FieldDef("CreatedDate", "Created Date", "datetime", **stamp),
        _lookup("CreatedById", "Created By ID", "User", "CreatedBy", **stamp),
        FieldDef("LastModifiedDate", "Last Modified Date", "datetime", **stamp),
        _lookup("LastModifiedById", "Last Modified By ID", "User", "LastModifiedBy", **stamp),
        FieldDef("SystemModstamp", "System Modstamp", "datetime", **stamp),
    ]
    return fields


def _object(
    name: str,
    label: str,
    plural: str,
    prefix: str,
    fields: list[FieldDef],
    *,
    owned: bool = True,
    deletable: bool = True,
    compound_name: tuple[str, str] | None = None,
) -> ObjectDef:
    system = _system_fields(owned=owned, deletable=deletable)
    ordered = [system[0], *fields, *system[1:]]
    return ObjectDef(
        name=name,
        label=label,
        label_plural=plural,
        key_prefix=prefix,
        custom=name.endswith("__c"),
        deletable=deletable,
        fields={f.name: f for f in ordered},
        compound_name=compound_name,
    )


_SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")
_LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
_INDUSTRIES = ("Agriculture", "Banking", "Education", "Healthcare", "Retail", "Technology", "Other")
_NAME_PART: dict[str, Any] = {"compound_field_name": "Name"}  # the parts of a person's Name
_COMPUTED_NAME: dict[str, Any] = {"createable": False, "updateable": False, "name_field": True, "calculated": True}


def _address(prefix: str, label: str) -> list[FieldDef]:
    """The components of a standard address and the compound field over them (`MailingAddress` for the
    prefix `Mailing`, `Address` for a Lead's unprefixed fields)."""
    compound = f"{prefix}Address"
    part: dict[str, Any] = {"compound_field_name": compound}
    spaced = f"{label} " if label else ""
    geocode = ("Accurate to the address", "Nearest address", "Block", "Street", "Zip", "City", "County", "State")
    return [
        _typed("textarea", f"{prefix}Street", f"{spaced}Street", 255, **part),
        _text(f"{prefix}City", f"{spaced}City", 40, **part),
        _text(f"{prefix}State", f"{spaced}State/Province", 80, **part),
        _text(f"{prefix}PostalCode", f"{spaced}Zip/Postal Code", 20, **part),
        _text(f"{prefix}Country", f"{spaced}Country", 80, **part),
        _typed("double", f"{prefix}Latitude", f"{spaced}Latitude", precision=18, scale=15, **part),
        _typed("double", f"{prefix}Longitude", f"{spaced}Longitude", precision=18, scale=15, **part),
        _picklist(f"{prefix}GeocodeAccuracy", f"{spaced}Geocode Accuracy", geocode, **part),
        FieldDef(
            compound,
            f"{spaced}Address",
            "address",
            createable=False,
            updateable=False,
            components=tuple((key, f"{prefix}{suffix}" if suffix else None) for key, suffix in ADDRESS_KEYS),
        ),
    ]


def standard_objects() -> list[ObjectDef]:
    """The org's objects after a reset; a fresh list each time so run-time schema changes never leak."""
    user = _object(
        "User",
        "User",
        "Users",
        "005",
        [
            _text("Username", "Username", 80, nillable=False, unique=True, id_lookup=True),
            _text("FirstName", "First Name", 40, **_NAME_PART),
            _text("LastName", "Last Name", 80, nillable=False, **_NAME_PART),
            _text("Name", "Full Name", 121, **_COMPUTED_NAME),
            _typed("email", "Email", "Email", 128, nillable=False),
            _text("Alias", "Alias", 8, nillable=False),
            _checkbox("IsActive", "Active"),
            _text("Title", "Title", 80),
            _text("Department", "Department", 80),
            _text("CompanyName", "Company Name", 80),
            _picklist(
                "TimeZoneSidKey",
                "Time Zone",
                ("GMT", "Europe/Paris", "America/New_York"),
                nillable=False,
                default_value="GMT",
                defaulted_on_create=True,
            ),
        ],
        owned=False,
        deletable=False,
        compound_name=("FirstName", "LastName"),
    )
    account = _object(
        "Account",
        "Account",
        "Accounts",
        "001",
        [
            _text("Name", "Account Name", 255, nillable=False, name_field=True),
            _text("AccountNumber", "Account Number", 40),
            _picklist("Type", "Account Type", ("Prospect", "Customer - Direct", "Customer - Channel", "Partner")),
            _picklist("Industry", "Industry", _INDUSTRIES),
            _typed("phone", "Phone", "Account Phone", 40),
            _typed("phone", "Fax", "Account Fax", 40),
            _typed("url", "Website", "Website", 255),
            *_address("Billing", "Billing"),
            *_address("Shipping", "Shipping"),
            _typed("currency", "AnnualRevenue", "Annual Revenue", precision=18, scale=0),
            _typed("int", "NumberOfEmployees", "Employees", precision=8),
            _lookup("ParentId", "Parent Account ID", "Account", "Parent"),
            _typed("textarea", "Description", "Account Description", 32000),
            _text("External_Id__c", "External Id", 255, external_id=True, unique=True, id_lookup=True),
        ],
    )
    contact = _object(
        "Contact",
        "Contact",
        "Contacts",
        "003",
        [
            _picklist("Salutation", "Salutation", _SALUTATIONS, **_NAME_PART),
            _text("FirstName", "First Name", 40, **_NAME_PART),
            _text("LastName", "Last Name", 80, nillable=False, **_NAME_PART),
            _text("Name", "Full Name", 121, **_COMPUTED_NAME),
            _lookup("AccountId", "Account ID", "Account", "Account"),
            _text("Title", "Title", 128),
            _text("Department", "Department", 80),
            _typed("email", "Email", "Email", 80, id_lookup=True),
            _typed("phone", "Phone", "Business Phone", 40),
            _typed("phone", "MobilePhone", "Mobile Phone", 40),
            _typed("phone", "HomePhone", "Home Phone", 40),
            _typed("phone", "Fax", "Business Fax", 40),
            _typed("date", "Birthdate", "Birthdate"),
            _picklist("LeadSource", "Lead Source", _LEAD_SOURCES),
            _multipicklist("Interests__c", "Interests", ("Running", "Cycling", "Swimming")),
            *_address("Mailing", "Mailing"),
            _checkbox("HasOptedOutOfEmail", "Email Opt Out"),
            _checkbox("HasOptedOutOfFax", "Fax Opt Out"),
            _checkbox("DoNotCall", "Do Not Call"),
            _typed("datetime", "EmailBouncedDate", "Email Bounced Date"),
            _typed("textarea", "Description", "Contact Description", 32000),
            _text("External_Id__c", "External Id", 255, external_id=True, unique=True, id_lookup=True),
            _text("Legacy_Id__c", "Legacy Id", 50, external_id=True, id_lookup=True),
        ],
        compound_name=("FirstName", "LastName"),
    )
    lead = _object(
        "Lead",
        "Lead",
        "Leads",
        "00Q",
        [
            _picklist("Salutation", "Salutation", _SALUTATIONS, **_NAME_PART),
            _text("FirstName", "First Name", 40, **_NAME_PART),
            _text("LastName", "Last Name", 80, nillable=False, **_NAME_PART),
            _text("Name", "Full Name", 121, **_COMPUTED_NAME),
            _text("Company", "Company", 255, nillable=False),
            _text("Title", "Title", 128),
            _typed("email", "Email", "Email", 80, id_lookup=True),
            _typed("phone", "Phone", "Phone", 40),
            _typed("phone", "MobilePhone", "Mobile Phone", 40),
            _typed("url", "Website", "Website", 255),
            *_address("", ""),
            _picklist(
                "Status",
                "Status",
                ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"),
                nillable=False,
                restricted_picklist=True,
                default_value="Open - Not Contacted",
                defaulted_on_create=True,
            ),
            _picklist("LeadSource", "Lead Source", _LEAD_SOURCES),
            _picklist("Industry", "Industry", _INDUSTRIES),
            _picklist("Rating", "Rating", ("Hot", "Warm", "Cold")),
            _typed("currency", "AnnualRevenue", "Annual Revenue", precision=18, scale=0),
            _typed("int", "NumberOfEmployees", "Employees", precision=8),
            _checkbox("IsConverted", "Converted", updateable=False),
            _typed("date", "ConvertedDate", "Converted Date", createable=False, updateable=False),
            _lookup(
                "ConvertedContactId",
                "Converted Contact ID",
                "Contact",
                "ConvertedContact",
                createable=False,
                updateable=False,
            ),
            _lookup(
                "ConvertedAccountId",
                "Converted Account ID",
                "Account",
                "ConvertedAccount",
                createable=False,
                updateable=False,
            ),
            _checkbox("HasOptedOutOfEmail", "Email Opt Out"),
            _checkbox("HasOptedOutOfFax", "Fax Opt Out"),
            _checkbox("DoNotCall", "Do Not Call"),
            _typed("textarea", "Description", "Description", 32000),
            _text("External_Id__c", "External Id", 255, external_id=True, unique=True, id_lookup=True),
        ],
        compound_name=("FirstName", "LastName"),
    )
    campaign = _object(
        "Campaign",
        "Campaign",
        "Campaigns",
        "701",
        [
            _text("Name", "Name", 80, nillable=False, name_field=True),
            _picklist("Type", "Type", ("Conference", "Webinar", "Email", "Advertisement", "Other")),
            _picklist(
                "Status",
                "Status",
                ("Planned", "In Progress", "Completed", "Aborted"),
                default_value="Planned",
                defaulted_on_create=True,
            ),
            _typed("date", "StartDate", "Start Date"),
            _typed("date", "EndDate", "End Date"),
            _checkbox("IsActive", "Active"),
            _typed("currency", "BudgetedCost", "Budgeted Cost in Campaign", precision=18, scale=0),
            _typed("currency", "ActualCost", "Actual Cost in Campaign", precision=18, scale=0),
            _lookup("ParentId", "Parent Campaign ID", "Campaign", "Parent"),
            _typed("textarea", "Description", "Description", 32000),
        ],
    )
    opportunity = _object(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        [
            _text("Name", "Name", 120, nillable=False, name_field=True),
            _lookup("AccountId", "Account ID", "Account", "Account"),
            _picklist(
                "StageName",
                "Stage",
                ("Prospecting", "Qualification", "Needs Analysis", "Proposal", "Closed Won", "Closed Lost"),
                nillable=False,
            ),
            _typed("date", "CloseDate", "Close Date", nillable=False),
            _typed("currency", "Amount", "Amount", precision=18, scale=2),
            _typed("percent", "Probability", "Probability (%)", precision=3, scale=0),
            _picklist("Type", "Opportunity Type", ("New Customer", "Existing Customer - Upgrade")),
            _picklist("LeadSource", "Lead Source", _LEAD_SOURCES),
            _lookup("CampaignId", "Campaign ID", "Campaign", "Campaign"),
            _checkbox("IsClosed", "Closed", createable=False, updateable=False),
            _checkbox("IsWon", "Won", createable=False, updateable=False),
            _typed("textarea", "Description", "Description", 32000),
        ],
    )
    subscription = _object(
        "Subscription__c",
        "Subscription",
        "Subscriptions",
        "a01",
        [
            _text("Name", "Subscription Name", 80, name_field=True, defaulted_on_create=True),
            _text("Subscription_Key__c", "Subscription Key", 64, external_id=True, unique=True, id_lookup=True),
            _lookup("Contact__c", "Contact", "Contact", "Contact__r"),
            _picklist(
                "Status__c",
                "Status",
                ("Active", "Paused", "Cancelled"),
                restricted_picklist=True,
                default_value="Active",
                defaulted_on_create=True,
            ),
            _picklist(
                "Channel__c",
                "Channel",
                ("Email", "SMS", "Post", "Fax"),
                picklist_labels=(("Post", "Postal mail"),),
                inactive_values=("Fax",),
            ),
            _typed("date", "Start_Date__c", "Start Date"),
            _typed("datetime", "Opted_In_At__c", "Opted In At"),
            _typed("currency", "Monthly_Fee__c", "Monthly Fee", precision=16, scale=2),
            _typed("double", "Seats__c", "Seats", precision=18, scale=0),
            _typed("textarea", "Notes__c", "Notes", 32768),
        ],
    )
    # The e-mail events' timeline object (SPEC M1): one record per event, unique by its External ID, so
    # an upsert through sObject Collections never makes a second record for a redelivered event.
    marketing_event = _object(
        "Marketing_Event__c",
        "Marketing Event",
        "Marketing Events",
        "a02",
        [
            _text("Name", "Subject", 80, name_field=True, nillable=False),
            _text("Event_Id__c", "Event Id", 100, external_id=True, unique=True, id_lookup=True),
            _picklist(
                "Event_Type__c", "Event Type", ("send", "open", "click", "bounce"), restricted_picklist=True
            ),
            _lookup("Contact__c", "Contact", "Contact", "Contact__r"),
            _lookup("Lead__c", "Lead", "Lead", "Lead__r"),
            _text("Campaign_Name__c", "Campaign Name", 255),
            _text("Delivery_Name__c", "Delivery Name", 255),
            _typed("datetime", "Event_At__c", "Event Date/Time"),
            _typed("url", "Clicked_URL__c", "Clicked URL", 255),
            _typed("url", "Mirror_Page_URL__c", "Mirror Page URL", 255),
        ],
    )
    return [account, contact, lead, opportunity, campaign, user, subscription, marketing_event]


class SchemaError(ValueError):
    """A control-API schema definition that Salesforce itself would refuse."""


class Schema:
    """The org's objects, looked up case-insensitively by name or by key prefix."""

    def __init__(self, objects: Iterable[ObjectDef]) -> None:
        self._objects: dict[str, ObjectDef] = {}
        self._by_prefix: dict[str, ObjectDef] = {}
        for definition in objects:
            self._register(definition)

    def _register(self, definition: ObjectDef) -> None:
        self._objects[definition.name.lower()] = definition
        self._by_prefix[definition.key_prefix] = definition

    def get(self, name: str) -> ObjectDef | None:
        return self._objects.get(name.lower())

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    def all(self) -> list[ObjectDef]:
        return sorted(self._objects.values(), key=lambda o: o.name)

    def describe_global(self, version: str) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [definition.describe_basic(version) for definition in self.all()],
        }

    def _next_custom_prefix(self) -> str:
        number = 1
        while f"a{number:02d}" in self._by_prefix:
            number += 1
        return f"a{number:02d}"

    def define(self, name: str, spec: dict[str, Any]) -> ObjectDef:
        """Create a custom object (name ends in `__c`) or add custom fields to any object."""
        definition = self.get(name)
        if definition is None:
            if not _CUSTOM_NAME.match(name):
                raise SchemaError(f"a new object must be a custom object named like Thing__c, not {name!r}")
            label = str(spec.get("label") or name[:-3].replace("_", " "))
            definition = _object(
                name,
                label,
                str(spec.get("labelPlural") or label + "s"),
                self._next_custom_prefix(),
                [_text("Name", f"{label} Name", 80, name_field=True, defaulted_on_create=True)],
            )
            self._register(definition)
        for field_spec in spec.get("fields") or []:
            definition.add_field(custom_field(field_spec, self))
        for type_spec in spec.get("recordTypes") or []:
            definition.record_types.append(self._record_type(definition, type_spec))
        definition.touch()
        return definition

    def retype_field(self, name: str, field_name: str, spec: dict[str, Any]) -> FieldDef:
        """Change a custom field's type (Setup's "Change Field Type"); records keep no value of it."""
        definition = self.get(name)
        if definition is None:
            raise SchemaError(f"no object {name!r}")
        current = definition.field(field_name)
        if current is None:
            raise SchemaError(f"{definition.name} has no field {field_name!r}")
        if not current.custom:
            raise SchemaError(f"{current.name} is a standard field; only custom fields change type")
        changed = custom_field({"label": current.label, **spec, "name": current.name}, self)
        definition.add_field(changed)
        definition.touch()
        return changed

    def _record_type(self, definition: ObjectDef, spec: dict[str, Any]) -> RecordTypeDef:
        developer_name = str(spec.get("developerName") or "")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", developer_name):
            raise SchemaError(f"a record type needs a developerName like Partner_Contact, not {developer_name!r}")
        picklists: dict[str, tuple[str, ...]] = {}
        defaults: dict[str, str] = {}
        for field_name, chosen in (spec.get("picklists") or {}).items():
            field_def = definition.field(field_name)
            if field_def is None or field_def.type not in PICKLIST_TYPES:
                raise SchemaError(f"{definition.name}.{field_name} is not a picklist")
            values = tuple(str(v) for v in (chosen.get("values") if isinstance(chosen, dict) else chosen) or ())
            unknown = [v for v in values if v not in field_def.picklist_values]
            if unknown:
                raise SchemaError(f"{field_def.name} has no values {unknown}")
            picklists[field_def.name] = values
            if isinstance(chosen, dict) and chosen.get("default") is not None:
                defaults[field_def.name] = str(chosen["default"])
        number = sum(len(o.record_types) for o in self._objects.values()) + 1
        return RecordTypeDef(
            id=f"0125g00000{number:05d}AAA",
            developer_name=developer_name,
            name=str(spec.get("name") or developer_name.replace("_", " ")),
            picklists=picklists,
            defaults=defaults,
            default=bool(spec.get("default", False)),
        )


def custom_field(spec: dict[str, Any], schema: Schema) -> FieldDef:
    """A FieldDef from a control-API field spec (`name`, `type`, `length`, `externalId`, ...)."""
    name = str(spec.get("name", ""))
    if not _CUSTOM_NAME.match(name):
        raise SchemaError(f"custom field names end in __c: {name!r}")
    kind = str(spec.get("type", "string")).lower()
    if kind not in FIELD_TYPES - {"id"}:
        raise SchemaError(f"unsupported field type {kind!r}; use one of {sorted(FIELD_TYPES - {'id'})}")
    default_length = {
        "string": 255,
        "textarea": 32768,
        "email": 80,
        "phone": 40,
        "url": 255,
        "picklist": 255,
        "multipicklist": 4099,
    }
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    if kind == "reference":
        target = schema.get(str(spec.get("referenceTo", "")))
        if target is None:
            raise SchemaError(f"referenceTo must name an existing object, not {spec.get('referenceTo')!r}")
        reference_to = (target.name,)
        relationship = str(spec.get("relationshipName") or name[:-3] + "__r")
    required = bool(spec.get("required", False))
    definition = FieldDef(
        name=name,
        label=str(spec.get("label") or name[:-3].replace("_", " ")),
        type=kind,
        length=int(spec.get("length", default_length.get(kind, 18 if kind == "reference" else 0))),
        nillable=not required and kind != "boolean",
        unique=bool(spec.get("unique", False)),
        external_id=bool(spec.get("externalId", False)),
        id_lookup=bool(spec.get("externalId", False)),
        case_sensitive=bool(spec.get("caseSensitive", False)),
        picklist_values=tuple(
            str(v["value"]) if isinstance(v, dict) else str(v) for v in spec.get("picklistValues") or ()
        ),
        picklist_labels=tuple(
            (str(v["value"]), str(v["label"]))
            for v in spec.get("picklistValues") or ()
            if isinstance(v, dict) and v.get("label") not in (None, v["value"])
        ),
        inactive_values=tuple(
            str(v["value"])
            for v in spec.get("picklistValues") or ()
            if isinstance(v, dict) and v.get("active") is False
        ),
        restricted_picklist=bool(spec.get("restrictedPicklist", False)),
        default_value=spec.get("defaultValue", False if kind == "boolean" else None),
        reference_to=reference_to,
        relationship_name=relationship,
        custom=True,
        precision=int(spec.get("precision", 18 if kind in NUMBER_TYPES else 0)),
        scale=int(spec.get("scale", 0)),
    )
    if definition.default_value is not None:
        definition = replace(definition, defaulted_on_create=True)
    return definition
