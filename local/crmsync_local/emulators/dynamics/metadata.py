"""Table (entity) and column (attribute) definitions, as Dataverse describes them through `EntityDefinitions`.

Names follow Dataverse exactly because clients depend on the differences: the *logical name* (`contact`)
names the type, the *entity set name* (`contacts`) names the URL segment, the *primary id attribute*
(`contactid`) names the key, a lookup column `parentcustomerid` is read as the property
`_parentcustomerid_value` and written through a navigation property (`parentcustomerid_account@odata.bind`).
The JSON shapes of `EntityMetadata`, `AttributeMetadata` subtypes, `OptionSetMetadata` and `EntityKeyMetadata`
follow "Query table definitions using the Web API" and the Web API metadata type reference.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

_NS = uuid.UUID("0b4f3c1e-7e2a-4f59-9c1d-5a1f0e6d2b10")
LANGUAGE_CODE = 1033
CUSTOM_OPTION_VALUE_BASE = 100_000_000


def stable_id(*parts: str) -> str:
    """A MetadataId that stays the same across resets, so clients may cache it as they do against Dataverse."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


def label(text: str, *parts: str) -> dict[str, Any]:
    """A `Label` with one en-US `LocalizedLabel`, also returned as `UserLocalizedLabel`."""
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {
        "Label": text,
        "LanguageCode": LANGUAGE_CODE,
        "IsManaged": True,
        "MetadataId": stable_id("label", *parts, text),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def managed(value: Any, name: str) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": True, "ManagedPropertyLogicalName": name}


# AttributeType -> (metadata type name, AttributeTypeName, Edm type of the Web API property)
ATTRIBUTE_TYPES: dict[str, tuple[str, str, str]] = {
    "Uniqueidentifier": ("UniqueIdentifierAttributeMetadata", "UniqueidentifierType", "Edm.Guid"),
    "String": ("StringAttributeMetadata", "StringType", "Edm.String"),
    "Memo": ("MemoAttributeMetadata", "MemoType", "Edm.String"),
    "Integer": ("IntegerAttributeMetadata", "IntegerType", "Edm.Int32"),
    "BigInt": ("BigIntAttributeMetadata", "BigIntType", "Edm.Int64"),
    "Decimal": ("DecimalAttributeMetadata", "DecimalType", "Edm.Decimal"),
    "Double": ("DoubleAttributeMetadata", "DoubleType", "Edm.Double"),
    "Money": ("MoneyAttributeMetadata", "MoneyType", "Edm.Decimal"),
    "Boolean": ("BooleanAttributeMetadata", "BooleanType", "Edm.Boolean"),
    "DateTime": ("DateTimeAttributeMetadata", "DateTimeType", "Edm.DateTimeOffset"),
    "Picklist": ("PicklistAttributeMetadata", "PicklistType", "Edm.Int32"),
    # A multi-select choice column: AttributeType "Virtual"; its Web API value is the selected option
    # values joined by commas ("1,3"), its formatted value the labels joined by "; ".
    "MultiSelectPicklist": ("MultiSelectPicklistAttributeMetadata", "MultiSelectPicklistType", "Edm.String"),
    "State": ("StateAttributeMetadata", "StateType", "Edm.Int32"),
    "Status": ("StatusAttributeMetadata", "StatusType", "Edm.Int32"),
    "Lookup": ("LookupAttributeMetadata", "LookupType", "Edm.Guid"),
    "Owner": ("LookupAttributeMetadata", "OwnerType", "Edm.Guid"),
    "Customer": ("LookupAttributeMetadata", "CustomerType", "Edm.Guid"),
}
LOOKUP_TYPES = frozenset({"Lookup", "Owner", "Customer"})
OPTION_TYPES = frozenset({"Picklist", "State", "Status"})
MULTI_SELECT = "MultiSelectPicklist"
WIRE_ATTRIBUTE_TYPE = {MULTI_SELECT: "Virtual"}
"""The AttributeType Dataverse reports where it differs from our internal kind."""
INT32_RANGE = (-2_147_483_648, 2_147_483_647)


@dataclass
class OptionDef:
    value: int
    label: str
    state: int | None = None  # Status options: the state they belong to
    default_status: int | None = None  # State options: the status set when the state is entered
    invariant_name: str | None = None  # State options: e.g. "Active"


@dataclass
class OptionSetDef:
    name: str
    option_type: str  # "Picklist" | "State" | "Status" | "Boolean"
    options: list[OptionDef] = field(default_factory=list)
    is_global: bool = False
    is_custom: bool = False

    def label_of(self, value: int) -> str | None:
        for option in self.options:
            if option.value == value:
                return option.label
        return None

    def values(self) -> list[int]:
        return [option.value for option in self.options]


@dataclass
class AttributeDef:
    logical_name: str
    attribute_type: str
    schema_name: str = ""
    display_name: str = ""
    max_length: int | None = None
    required_level: str = "None"
    valid_for_create: bool = True
    valid_for_update: bool = True
    valid_for_read: bool = True
    valid_for_advanced_find: bool = True
    option_set: OptionSetDef | None = None
    true_label: str = "Yes"
    false_label: str = "No"
    targets: list[str] = field(default_factory=list)
    navigation: dict[str, str] = field(default_factory=dict)  # target logical name -> navigation property
    date_behavior: str = "UserLocal"  # "UserLocal" | "DateOnly" | "TimeZoneIndependent"
    string_format: str = "Text"
    min_value: int | float | None = None
    max_value: int | float | None = None
    is_primary_id: bool = False
    is_primary_name: bool = False
    is_custom: bool = False
    entity_logical_name: str = ""

    def __post_init__(self) -> None:
        if self.attribute_type not in ATTRIBUTE_TYPES:
            raise ValueError(f"unknown AttributeType {self.attribute_type!r}")
        self.schema_name = self.schema_name or self.logical_name
        self.display_name = self.display_name or self.logical_name
        if self.is_lookup and not self.navigation:
            self.navigation = (
                {target: self.logical_name for target in self.targets}
                if len(self.targets) == 1
                else {target: f"{self.logical_name}_{target}" for target in self.targets}
            )
        if self.attribute_type == "Integer" and self.min_value is None:
            self.min_value, self.max_value = INT32_RANGE
        # The Web API property: `_x_value` for lookups, the logical name otherwise.
        self.property_name = f"_{self.logical_name}_value" if self.is_lookup else self.logical_name

    @property
    def is_lookup(self) -> bool:
        return self.attribute_type in LOOKUP_TYPES

    @property
    def is_date_only(self) -> bool:
        return self.attribute_type == "DateTime" and self.date_behavior == "DateOnly"

    @property
    def edm_type(self) -> str:
        if self.is_date_only:
            return "Edm.Date"
        return ATTRIBUTE_TYPES[self.attribute_type][2]

    @property
    def metadata_id(self) -> str:
        return stable_id("attribute", self.entity_logical_name, self.logical_name)


@dataclass
class AlternateKeyDef:
    schema_name: str
    attributes: list[str]  # logical names
    display_name: str = ""

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()


@dataclass
class EntityDef:
    logical_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None
    display_name: str
    display_collection_name: str
    object_type_code: int
    is_custom: bool = False
    change_tracking: bool = True
    ownership: str = "UserOwned"
    schema_name: str = ""
    attributes: dict[str, AttributeDef] = field(default_factory=dict)
    keys: list[AlternateKeyDef] = field(default_factory=list)
    is_activity: bool = False
    """An activity table: keyed by `activityid`, each row also listed in `activitypointers` (timelines)."""

    def __post_init__(self) -> None:
        self.schema_name = self.schema_name or self.logical_name
        self._index()

    def _index(self) -> None:
        """Lookup tables the hot paths (writes of 10,000 rows, pages of 5,000) read instead of scanning."""
        self.properties: dict[str, AttributeDef] = {}
        self.navigations: dict[str, tuple[AttributeDef, str]] = {}
        for attribute in self.attributes.values():
            attribute.entity_logical_name = self.logical_name
            self.properties[attribute.property_name] = attribute
            for target, navigation in attribute.navigation.items():
                self.navigations[navigation] = (attribute, target)
        self.boolean_properties = [
            a.property_name for a in self.attributes.values() if a.attribute_type == "Boolean"
        ]
        self.system_required = [
            a for a in self.attributes.values() if a.required_level == "SystemRequired" and not a.is_primary_id
        ]
        self.readable_properties = [a.property_name for a in self.attributes.values() if a.valid_for_read]

    def add_attribute(self, attribute: AttributeDef) -> None:
        self.attributes[attribute.logical_name] = attribute
        self._index()

    @property
    def metadata_id(self) -> str:
        return stable_id("entity", self.logical_name)

    def key_for(self, attribute_names: set[str]) -> AlternateKeyDef | None:
        for key in self.keys:
            if set(key.attributes) == attribute_names:
                return key
        return None


# -- builders for the standard tables ---------------------------------------------------------------------
def _string(name: str, length: int, display: str = "", *, fmt: str = "Text", **kw: Any) -> AttributeDef:
    return AttributeDef(name, "String", display_name=display, max_length=length, string_format=fmt, **kw)


def _bool(name: str, display: str, true_label: str = "Yes", false_label: str = "No") -> AttributeDef:
    return AttributeDef(name, "Boolean", display_name=display, true_label=true_label, false_label=false_label)


def _picklist(
    entity: str, name: str, display: str, options: list[tuple[int, str]], *, global_name: str | None = None
) -> AttributeDef:
    option_set = OptionSetDef(
        global_name or f"{entity}_{name}",
        "Picklist",
        [OptionDef(value, text) for value, text in options],
        is_global=global_name is not None,
        is_custom=entity.startswith("new_") or name.startswith("new_"),
    )
    return AttributeDef(name, "Picklist", display_name=display, option_set=option_set)


def _multi_select(entity: str, name: str, display: str, options: list[tuple[int, str]], **kw: Any) -> AttributeDef:
    option_set = OptionSetDef(
        f"{entity}_{name}", "Picklist", [OptionDef(value, text) for value, text in options], is_custom=True
    )
    return AttributeDef(name, MULTI_SELECT, display_name=display, option_set=option_set, is_custom=True, **kw)


def _state_status(
    entity: str, states: list[tuple[int, str, int]], statuses: list[tuple[int, str, int]]
) -> list[AttributeDef]:
    """statecode/statuscode pair: states (value, label, default status), statuses (value, label, state)."""
    state_set = OptionSetDef(
        f"{entity}_statecode",
        "State",
        [OptionDef(v, text, default_status=d, invariant_name=text) for v, text, d in states],
    )
    status_set = OptionSetDef(
        f"{entity}_statuscode", "Status", [OptionDef(v, text, state=s) for v, text, s in statuses]
    )
    return [
        AttributeDef(
            "statecode", "State", display_name="Status", option_set=state_set, required_level="SystemRequired"
        ),
        AttributeDef("statuscode", "Status", display_name="Status Reason", option_set=status_set),
    ]


def _system_columns(*, owned: bool = True) -> list[AttributeDef]:
    columns = [
        AttributeDef(
            "createdon", "DateTime", display_name="Created On", valid_for_create=False, valid_for_update=False
        ),
        AttributeDef(
            "modifiedon", "DateTime", display_name="Modified On", valid_for_create=False, valid_for_update=False
        ),
        AttributeDef(
            "versionnumber",
            "BigInt",
            display_name="Version Number",
            valid_for_create=False,
            valid_for_update=False,
        ),
        AttributeDef(
            "createdby",
            "Lookup",
            display_name="Created By",
            targets=["systemuser"],
            valid_for_create=False,
            valid_for_update=False,
        ),
        AttributeDef(
            "modifiedby",
            "Lookup",
            display_name="Modified By",
            targets=["systemuser"],
            valid_for_create=False,
            valid_for_update=False,
        ),
    ]
    if owned:
        columns.append(
            AttributeDef(
                "ownerid", "Owner", display_name="Owner", targets=["systemuser"], required_level="SystemRequired"
            )
        )
    return columns


def _contact_preferences(entity: str) -> list[AttributeDef]:
    """The do-not-contact flags; Dataverse labels them "Do Not Allow" (true) and "Allow" (false)."""
    names = [
        ("donotemail", "Do not allow Emails"),
        ("donotphone", "Do not allow Phone Calls"),
        ("donotbulkemail", "Do not allow Bulk Emails"),
        ("donotfax", "Do not allow Faxes"),
        ("donotpostalmail", "Do not allow Mails"),
    ]
    return [_bool(name, display, "Do Not Allow", "Allow") for name, display in names]


def _entity(
    logical: str,
    entity_set: str,
    primary_name: str | None,
    display: str,
    collection: str,
    code: int,
    attributes: list[AttributeDef],
    *,
    primary_id: str | None = None,
    **kw: Any,
) -> EntityDef:
    primary = AttributeDef(
        primary_id or f"{logical}id",
        "Uniqueidentifier",
        display_name=display,
        is_primary_id=True,
        valid_for_update=False,
        required_level="SystemRequired",
    )
    by_name = {primary.logical_name: primary}
    for attribute in attributes:
        by_name[attribute.logical_name] = attribute
        if attribute.logical_name == primary_name:
            attribute.is_primary_name = True
    return EntityDef(
        logical,
        entity_set,
        primary.logical_name,
        primary_name,
        display,
        collection,
        code,
        attributes=by_name,
        **kw,
    )


def default_entities() -> list[EntityDef]:
    """contact, lead, account, systemuser and the custom `new_subscription` table."""
    contact = _entity(
        "contact",
        "contacts",
        "fullname",
        "Contact",
        "Contacts",
        2,
        [
            _string("firstname", 50, "First Name"),
            _string("middlename", 50, "Middle Name"),
            _string("lastname", 50, "Last Name", required_level="ApplicationRequired"),
            _string("fullname", 160, "Full Name", valid_for_create=False, valid_for_update=False),
            _string("emailaddress1", 100, "Email", fmt="Email"),
            _string("emailaddress2", 100, "Email Address 2", fmt="Email"),
            _string("telephone1", 50, "Business Phone", fmt="Phone"),
            _string("mobilephone", 50, "Mobile Phone", fmt="Phone"),
            _string("jobtitle", 100, "Job Title"),
            _string("address1_city", 80, "Address 1: City"),
            _string("address1_postalcode", 20, "Address 1: ZIP/Postal Code"),
            _string("address1_country", 80, "Address 1: Country/Region"),
            AttributeDef("birthdate", "DateTime", display_name="Birthday", date_behavior="DateOnly"),
            _string(
                "new_marketingprofileid",
                100,
                "Marketing Profile ID",
                schema_name="new_MarketingProfileId",
                is_custom=True,
            ),
            *_contact_preferences("contact"),
            _picklist("contact", "gendercode", "Gender", [(1, "Male"), (2, "Female")]),
            _multi_select(
                "contact",
                "new_interests",
                "Interests",
                [(100_000_000, "Running"), (100_000_001, "Cycling"), (100_000_002, "Swimming")],
                schema_name="new_Interests",
            ),
            _picklist(
                "contact",
                "preferredcontactmethodcode",
                "Preferred Method of Contact",
                [(1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")],
            ),
            AttributeDef(
                "parentcustomerid", "Customer", display_name="Company Name", targets=["account", "contact"]
            ),
            *_state_status(
                "contact", [(0, "Active", 1), (1, "Inactive", 2)], [(1, "Active", 0), (2, "Inactive", 1)]
            ),
            *_system_columns(),
        ],
        keys=[AlternateKeyDef("new_contact_emailaddress1_key", ["emailaddress1"], "Email key")],
    )
    lead = _entity(
        "lead",
        "leads",
        "fullname",
        "Lead",
        "Leads",
        4,
        [
            _string("subject", 300, "Topic"),
            _string("firstname", 50, "First Name"),
            _string("lastname", 50, "Last Name", required_level="ApplicationRequired"),
            _string("fullname", 160, "Name", valid_for_create=False, valid_for_update=False),
            _string("companyname", 100, "Company Name"),
            _string("emailaddress1", 100, "Email", fmt="Email"),
            _string("telephone1", 50, "Business Phone", fmt="Phone"),
            _string("mobilephone", 20, "Mobile Phone", fmt="Phone"),
            _string("jobtitle", 100, "Job Title"),
            *_contact_preferences("lead"),
            _picklist(
                "lead",
                "leadsourcecode",
                "Lead Source",
                [
                    (1, "Advertisement"),
                    (2, "Employee Referral"),
                    (3, "External Referral"),
                    (4, "Partner"),
                    (5, "Public Relations"),
                    (6, "Seminar"),
                    (7, "Trade Show"),
                    (8, "Web"),
                    (9, "Word of Mouth"),
                    (10, "Other"),
                ],
            ),
            AttributeDef("parentcontactid", "Lookup", display_name="Existing Contact", targets=["contact"]),
            AttributeDef("parentaccountid", "Lookup", display_name="Existing Account", targets=["account"]),
            *_state_status(
                "lead",
                [(0, "Open", 1), (1, "Qualified", 3), (2, "Disqualified", 4)],
                [
                    (1, "New", 0),
                    (2, "Contacted", 0),
                    (3, "Qualified", 1),
                    (4, "Lost", 2),
                    (5, "Cannot Contact", 2),
                    (6, "No Longer Interested", 2),
                    (7, "Canceled", 2),
                ],
            ),
            *_system_columns(),
        ],
    )
    account = _entity(
        "account",
        "accounts",
        "name",
        "Account",
        "Accounts",
        1,
        [
            _string("name", 160, "Account Name", required_level="ApplicationRequired"),
            _string("accountnumber", 20, "Account Number"),
            _string("emailaddress1", 100, "Email", fmt="Email"),
            _string("telephone1", 50, "Main Phone", fmt="Phone"),
            _string("websiteurl", 200, "Website", fmt="Url"),
            AttributeDef(
                "numberofemployees",
                "Integer",
                display_name="Number of Employees",
                min_value=0,
                max_value=1_000_000_000,
            ),
            AttributeDef("revenue", "Money", display_name="Annual Revenue"),
            _picklist(
                "account",
                "industrycode",
                "Industry",
                [
                    (1, "Accounting"),
                    (2, "Agriculture and Non-petrol Natural Resource Extraction"),
                    (3, "Broadcasting Printing and Publishing"),
                    (7, "Consulting"),
                    (33, "Wholesale"),
                ],
            ),
            AttributeDef("primarycontactid", "Lookup", display_name="Primary Contact", targets=["contact"]),
            AttributeDef("parentaccountid", "Lookup", display_name="Parent Account", targets=["account"]),
            *_contact_preferences("account"),
            *_state_status(
                "account", [(0, "Active", 1), (1, "Inactive", 2)], [(1, "Active", 0), (2, "Inactive", 1)]
            ),
            *_system_columns(),
        ],
    )
    systemuser = _entity(
        "systemuser",
        "systemusers",
        "fullname",
        "User",
        "Users",
        8,
        [
            _string("firstname", 64, "First Name"),
            _string("lastname", 64, "Last Name"),
            _string("fullname", 200, "Full Name", valid_for_create=False, valid_for_update=False),
            _string("domainname", 1024, "User Name", required_level="SystemRequired"),
            _string("internalemailaddress", 100, "Primary Email", fmt="Email"),
            AttributeDef("applicationid", "Uniqueidentifier", display_name="Application ID"),
            AttributeDef("azureactivedirectoryobjectid", "Uniqueidentifier", display_name="Azure AD Object ID"),
            _bool("isdisabled", "Status", "Disabled", "Enabled"),
            _picklist(
                "systemuser",
                "accessmode",
                "Access Mode",
                [
                    (0, "Read-Write"),
                    (1, "Administrative"),
                    (2, "Read"),
                    (3, "Support User"),
                    (4, "Non-interactive"),
                    (5, "Delegated Admin"),
                ],
            ),
            *_system_columns(owned=False),
        ],
        change_tracking=False,
        ownership="BusinessOwned",
    )
    subscription = _entity(
        "new_subscription",
        "new_subscriptions",
        "new_name",
        "Subscription",
        "Subscriptions",
        10_000,
        [
            _string(
                "new_name",
                100,
                "Name",
                required_level="ApplicationRequired",
                is_custom=True,
                schema_name="new_Name",
            ),
            _string("new_externalid", 100, "External ID", is_custom=True, schema_name="new_ExternalId"),
            _string("new_email", 100, "Email", fmt="Email", is_custom=True, schema_name="new_Email"),
            AttributeDef(
                "new_contactid",
                "Lookup",
                schema_name="new_ContactId",
                display_name="Contact",
                targets=["contact"],
                navigation={"contact": "new_ContactId"},
                is_custom=True,
            ),
            _picklist(
                "new_subscription",
                "new_channel",
                "Channel",
                [(100_000_000, "Email"), (100_000_001, "SMS"), (100_000_002, "Postal Mail")],
                global_name="new_channel",
            ),
            AttributeDef("new_optin", "Boolean", schema_name="new_OptIn", display_name="Opted In", is_custom=True),
            AttributeDef(
                "new_subscribedon",
                "DateTime",
                schema_name="new_SubscribedOn",
                display_name="Subscribed On",
                is_custom=True,
            ),
            AttributeDef("new_score", "Integer", schema_name="new_Score", display_name="Score", is_custom=True),
            *_state_status(
                "new_subscription", [(0, "Active", 1), (1, "Inactive", 2)], [(1, "Active", 0), (2, "Inactive", 1)]
            ),
            *_system_columns(),
        ],
        is_custom=True,
        schema_name="new_Subscription",
        keys=[AlternateKeyDef("new_externalid_key", ["new_externalid"], "External ID key")],
    )
    return [contact, lead, account, systemuser, subscription, *activity_entities()]


ACTIVITY_POINTER = "activitypointer"
REGARDING_TARGETS = ("contact", "lead", "account")


def _activity_columns(table: str) -> list[AttributeDef]:
    """What every activity has: subject, description, times, the polymorphic regarding lookup (one
    navigation property per target, `regardingobjectid_<target>_<table>`), owner and system columns."""
    return [
        _string("subject", 200, "Subject"),
        AttributeDef("description", "Memo", display_name="Description", max_length=2000),
        AttributeDef("actualstart", "DateTime", display_name="Actual Start"),
        AttributeDef("actualend", "DateTime", display_name="Actual End"),
        AttributeDef(
            "regardingobjectid",
            "Lookup",
            display_name="Regarding",
            targets=list(REGARDING_TARGETS),
            navigation={t: f"regardingobjectid_{t}_{table}" for t in REGARDING_TARGETS},
        ),
        *_system_columns(),
    ]


def _activity_table(
    logical: str, entity_set: str, display: str, collection: str, code: int, columns: list[AttributeDef], **kw: Any
) -> EntityDef:
    """Every activity table is keyed by `activityid` and named by its `subject`."""
    columns = [*_activity_columns(logical), *columns]
    return _entity(
        logical,
        entity_set,
        "subject",
        display,
        collection,
        code,
        columns,
        primary_id="activityid",
        is_activity=True,
        **kw,
    )


def activity_entities() -> list[EntityDef]:
    """`activitypointer` (every activity, what timelines read) and the custom activity table
    `cr_marketingevent` that e-mail events are written to (SPEC M1)."""
    pointer = _activity_table(
        ACTIVITY_POINTER,
        "activitypointers",
        "Activity",
        "Activities",
        4200,
        [_string("activitytypecode", 64, "Activity Type", valid_for_create=False, valid_for_update=False)],
        change_tracking=False,
    )
    pointer.is_activity = False  # the base of the activities, not one of them

    def custom(name: str, kind: str, display: str, **kw: Any) -> AttributeDef:
        return AttributeDef(
            name,
            kind,
            display_name=display,
            is_custom=True,
            schema_name="cr_" + name.removeprefix("cr_").title(),
            **kw,
        )

    marketing_event = _activity_table(
        "cr_marketingevent",
        "cr_marketingevents",
        "Marketing Event",
        "Marketing Events",
        10_001,
        [
            custom("cr_eventtype", "String", "Event Type", max_length=20),
            custom("cr_campaignname", "String", "Campaign Name", max_length=255),
            custom("cr_deliveryname", "String", "Delivery Name", max_length=255),
            custom("cr_clickedurl", "String", "Clicked URL", max_length=500, string_format="Url"),
            custom("cr_mirrorpageurl", "String", "Mirror Page URL", max_length=2000, string_format="Url"),
        ],
        is_custom=True,
        schema_name="cr_MarketingEvent",
        change_tracking=False,  # a new custom table has change tracking off until someone turns it on
    )
    return [pointer, marketing_event]


class MetadataRegistry:
    """Every table the org knows, by logical name and by entity set name."""

    def __init__(self, entities: list[EntityDef] | None = None) -> None:
        self.entities: dict[str, EntityDef] = {}
        self.by_set: dict[str, EntityDef] = {}
        for entity in entities if entities is not None else default_entities():
            self.add(entity)

    def add(self, entity: EntityDef) -> None:
        self.entities[entity.logical_name] = entity
        self.by_set[entity.entity_set_name] = entity

    def entity(self, logical_name: str) -> EntityDef | None:
        return self.entities.get(logical_name)

    def entity_for_set(self, entity_set: str) -> EntityDef | None:
        return self.by_set.get(entity_set)

    def global_option_sets(self) -> dict[str, OptionSetDef]:
        found: dict[str, OptionSetDef] = {}
        for entity in self.entities.values():
            for attribute in entity.attributes.values():
                if attribute.option_set is not None and attribute.option_set.is_global:
                    found[attribute.option_set.name] = attribute.option_set
        return found

    # -- control API: remove and retype columns ------------------------------------------------------
    def remove_attribute(self, logical: str, name: str) -> AttributeDef:
        """Delete a custom column, as a maker deletes it in the Power Apps designer."""
        entity, attribute = self._column(logical, name)
        if not attribute.is_custom:
            raise ValueError(f"{name} is a system column of {logical}; only custom columns can be deleted")
        if any(attribute.logical_name in key.attributes for key in entity.keys):
            raise ValueError(f"{name} is part of an alternate key of {logical}; delete the key first")
        del entity.attributes[attribute.logical_name]
        entity._index()
        return attribute

    def retype_attribute(self, logical: str, name: str, spec: dict[str, Any]) -> AttributeDef:
        """Replace a column by one of another type under the same name (delete and re-create, the only
        way Dataverse changes most column types)."""
        entity, attribute = self._column(logical, name)
        if attribute.is_primary_id:
            raise ValueError(f"{name} is the primary key of {logical}")
        new = attribute_from_spec(
            logical,
            {
                "schema_name": attribute.schema_name,
                "display_name": attribute.display_name,
                **spec,
                "logical_name": attribute.logical_name,
            },
        )
        new.is_custom = attribute.is_custom
        entity.add_attribute(new)
        return new

    def _column(self, logical: str, name: str) -> tuple[EntityDef, AttributeDef]:
        entity = self.entities.get(logical.lower())
        if entity is None:
            raise ValueError(f"no table {logical!r}")
        attribute = entity.attributes.get(name.lower())
        if attribute is None:
            raise ValueError(f"table {logical} has no column {name!r}")
        return entity, attribute

    # -- control API: define tables, columns, keys --------------------------------------------------
    def define(self, spec: dict[str, Any]) -> EntityDef:
        """Create or extend a table from a JSON spec (see `DynamicsControl.define_entity`)."""
        logical = _required(spec, "logical_name").lower()
        entity = self.entities.get(logical)
        if entity is None:
            entity = self._new_entity(logical, spec)
        elif "entity_set_name" in spec and spec["entity_set_name"] != entity.entity_set_name:
            raise ValueError(f"{logical} already has the entity set name {entity.entity_set_name!r}")
        for attribute_spec in spec.get("attributes", []):
            entity.add_attribute(attribute_from_spec(logical, attribute_spec))
        for key_spec in spec.get("keys", []):
            key = AlternateKeyDef(
                _required(key_spec, "schema_name"),
                [name.lower() for name in _required(key_spec, "attributes")],
                key_spec.get("display_name", ""),
            )
            missing = [name for name in key.attributes if name not in entity.attributes]
            if missing:
                raise ValueError(f"key {key.schema_name} names unknown columns {missing}")
            entity.keys = [k for k in entity.keys if k.schema_name != key.schema_name] + [key]
        if "change_tracking" in spec:
            entity.change_tracking = bool(spec["change_tracking"])
        self.add(entity)
        return entity

    def _new_entity(self, logical: str, spec: dict[str, Any]) -> EntityDef:
        if "_" not in logical:
            raise ValueError("a custom table's logical name carries its publisher prefix, e.g. new_subscription")
        entity_set = spec.get("entity_set_name") or f"{logical}s"
        if entity_set in self.by_set:
            raise ValueError(f"entity set {entity_set!r} is taken")
        primary_name = spec.get("primary_name", f"{logical.split('_', 1)[0]}_name")
        columns: list[AttributeDef] = []
        if primary_name:
            columns.append(
                _string(primary_name, int(spec.get("primary_name_max_length", 100)), "Name", is_custom=True)
            )
        columns += _state_status(
            logical, [(0, "Active", 1), (1, "Inactive", 2)], [(1, "Active", 0), (2, "Inactive", 1)]
        )
        columns += _system_columns()
        code = 10_000 + len([e for e in self.entities.values() if e.is_custom]) + 1
        display = spec.get("display_name", logical)
        return _entity(
            logical,
            entity_set,
            primary_name or None,
            display,
            spec.get("display_collection_name", f"{display}s"),
            code,
            columns,
            is_custom=True,
            schema_name=spec.get("schema_name", logical),
            change_tracking=bool(spec.get("change_tracking", True)),
        )


def _required(spec: dict[str, Any], name: str) -> Any:
    if name not in spec:
        raise ValueError(f"missing {name!r}")
    return spec[name]


def attribute_from_spec(entity_logical: str, spec: dict[str, Any]) -> AttributeDef:
    """One column from the control API: {"logical_name", "type", "max_length", "options", "targets", …}."""
    name = _required(spec, "logical_name").lower()
    kind = spec.get("type", "String")
    options_spec = spec.get("options")
    option_set: OptionSetDef | None = None
    if kind in {"Picklist", MULTI_SELECT}:
        if not options_spec:
            raise ValueError(f"{kind} {name} needs 'options'")
        pairs = (
            options_spec.items()
            if isinstance(options_spec, dict)
            else [(o["value"], o["label"]) for o in options_spec]
        )
        option_set = OptionSetDef(
            spec.get("option_set_name", f"{entity_logical}_{name}"),
            "Picklist",
            [OptionDef(int(value), str(text)) for value, text in pairs],
            is_global=bool(spec.get("global", False)),
            is_custom=True,
        )
        if option_set.is_global and "option_set_name" not in spec:
            raise ValueError(f"a global option set needs 'option_set_name' ({name})")
    elif kind in {"State", "Status"}:
        raise ValueError("statecode/statuscode come with every table; define Picklist columns instead")
    attribute = AttributeDef(
        name,
        kind,
        schema_name=spec.get("schema_name", name),
        display_name=spec.get("display_name", name),
        max_length=spec.get("max_length", 100 if kind == "String" else 2000 if kind == "Memo" else None),
        required_level=spec.get("required_level", "None"),
        option_set=option_set,
        targets=[t.lower() for t in spec.get("targets", [])],
        navigation=dict(spec.get("navigation", {})),
        date_behavior=spec.get("date_behavior", "UserLocal"),
        string_format=spec.get("format", "Text"),
        true_label=spec.get("true_label", "Yes"),
        false_label=spec.get("false_label", "No"),
        min_value=spec.get("min_value"),
        max_value=spec.get("max_value"),
        is_custom=True,
    )
    if attribute.is_lookup and not attribute.targets:
        raise ValueError(f"lookup {name} needs 'targets'")
    return attribute


# -- EntityDefinitions JSON --------------------------------------------------------------------------------
def entity_json(entity: EntityDef) -> dict[str, Any]:
    """`EntityMetadata` properties (without the expandable Attributes and Keys)."""
    return {
        "MetadataId": entity.metadata_id,
        "LogicalName": entity.logical_name,
        "SchemaName": entity.schema_name,
        "EntitySetName": entity.entity_set_name,
        "LogicalCollectionName": entity.entity_set_name,
        "CollectionSchemaName": entity.schema_name + "s",
        "PrimaryIdAttribute": entity.primary_id,
        "PrimaryNameAttribute": entity.primary_name,
        "ObjectTypeCode": entity.object_type_code,
        "IsCustomEntity": entity.is_custom,
        "IsManaged": not entity.is_custom,
        "IsActivity": entity.is_activity,
        "IsIntersect": False,
        "IsValidForAdvancedFind": True,
        "TableType": "Standard",
        "OwnershipType": entity.ownership,
        "ChangeTrackingEnabled": entity.change_tracking,
        "CanChangeTrackingBeEnabled": managed(True, "canchangetrackingbeenabled"),
        "IsOptimisticConcurrencyEnabled": True,
        "DisplayName": label(entity.display_name, entity.logical_name),
        "DisplayCollectionName": label(entity.display_collection_name, entity.logical_name, "collection"),
        "Description": label("", entity.logical_name),
    }


def key_json(entity: EntityDef, key: AlternateKeyDef) -> dict[str, Any]:
    return {
        "MetadataId": stable_id("key", entity.logical_name, key.schema_name),
        "LogicalName": key.logical_name,
        "SchemaName": key.schema_name,
        "EntityLogicalName": entity.logical_name,
        "KeyAttributes": list(key.attributes),
        "EntityKeyIndexStatus": "Active",
        "IsManaged": False,
        "DisplayName": label(key.display_name or key.schema_name, entity.logical_name, key.schema_name),
    }


def option_set_json(attribute: AttributeDef) -> dict[str, Any] | None:
    """`OptionSetMetadata` (or `BooleanOptionSetMetadata`) for the expandable OptionSet property."""
    parts = (attribute.entity_logical_name, attribute.logical_name)
    if attribute.attribute_type == "Boolean":
        return {
            "MetadataId": stable_id("optionset", *parts),
            "Name": f"{attribute.entity_logical_name}_{attribute.logical_name}",
            "OptionSetType": "Boolean",
            "IsGlobal": False,
            "IsCustomOptionSet": attribute.is_custom,
            "IsManaged": not attribute.is_custom,
            "TrueOption": _option_json(OptionDef(1, attribute.true_label), "Picklist", parts),
            "FalseOption": _option_json(OptionDef(0, attribute.false_label), "Picklist", parts),
        }
    option_set = attribute.option_set
    if option_set is None:
        return None
    return {
        "MetadataId": stable_id("optionset", option_set.name),
        "HasChanged": None,
        "Name": option_set.name,
        "OptionSetType": option_set.option_type,
        "IsGlobal": option_set.is_global,
        "IsCustomOptionSet": option_set.is_custom,
        "IsManaged": not option_set.is_custom,
        "ExternalTypeName": None,
        "DisplayName": label(attribute.display_name, option_set.name),
        "Description": label("", option_set.name),
        "Options": [
            _option_json(option, option_set.option_type, (option_set.name,)) for option in option_set.options
        ],
    }


def _option_json(option: OptionDef, option_type: str, parts: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "Value": option.value,
        "Color": None,
        "IsManaged": True,
        "ExternalValue": "",
        "ParentValues": [],
        "Tag": None,
        "IsHidden": False,
        "MetadataId": None,
        "HasChanged": None,
        "Label": label(option.label, *parts, str(option.value)),
        "Description": label("", *parts, str(option.value)),
    }
    if option_type == "State":
        result["@odata.type"] = "#Microsoft.Dynamics.CRM.StateOptionMetadata"
        result["DefaultStatus"] = option.default_status
        result["InvariantName"] = option.invariant_name
    elif option_type == "Status":
        result["@odata.type"] = "#Microsoft.Dynamics.CRM.StatusOptionMetadata"
        result["State"] = option.state
        result["TransitionData"] = None
    return result


def attribute_json(attribute: AttributeDef, column_number: int = 0) -> dict[str, Any]:
    """`AttributeMetadata` of the attribute's subtype, without the expandable OptionSet/GlobalOptionSet."""
    metadata_type, type_name, _ = ATTRIBUTE_TYPES[attribute.attribute_type]
    parts = (attribute.entity_logical_name, attribute.logical_name)
    result: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{metadata_type}",
        "MetadataId": attribute.metadata_id,
        "HasChanged": None,
        "LogicalName": attribute.logical_name,
        "SchemaName": attribute.schema_name,
        "EntityLogicalName": attribute.entity_logical_name,
        "AttributeType": WIRE_ATTRIBUTE_TYPE.get(attribute.attribute_type, attribute.attribute_type),
        "AttributeTypeName": {"Value": type_name},
        "AttributeOf": None,
        "ColumnNumber": column_number,
        "DisplayName": label(attribute.display_name, *parts),
        "Description": label("", *parts),
        "RequiredLevel": managed(attribute.required_level, "canmodifyrequirementlevelsettings"),
        "IsValidForCreate": attribute.valid_for_create,
        "IsValidForUpdate": attribute.valid_for_update,
        "IsValidForRead": attribute.valid_for_read,
        "IsValidForAdvancedFind": managed(attribute.valid_for_advanced_find, "canmodifysearchsettings"),
        "IsPrimaryId": attribute.is_primary_id,
        "IsPrimaryName": attribute.is_primary_name,
        "IsCustomAttribute": attribute.is_custom,
        "IsManaged": not attribute.is_custom,
        "IsLogical": False,
        "SourceType": 0,
    }
    kind = attribute.attribute_type
    if kind in {"String", "Memo"}:
        result["MaxLength"] = attribute.max_length
        result["DatabaseLength"] = (attribute.max_length or 0) * 2
        result["Format"] = attribute.string_format if kind == "String" else "TextArea"
        if kind == "String":
            result["FormatName"] = {"Value": attribute.string_format}
    elif kind in {"Integer", "BigInt", "Decimal", "Double", "Money"}:
        result["MinValue"] = attribute.min_value
        result["MaxValue"] = attribute.max_value
        if kind == "Integer":
            result["Format"] = "None"
    elif kind == "DateTime":
        result["Format"] = "DateOnly" if attribute.is_date_only else "DateAndTime"
        result["DateTimeBehavior"] = {"Value": attribute.date_behavior}
        result["CanChangeDateTimeBehavior"] = managed(True, "canchangedatetimebehavior")
    elif kind == "Boolean":
        result["DefaultValue"] = False
    elif kind in OPTION_TYPES:
        result["DefaultFormValue"] = -1 if kind == "Picklist" else None
    elif kind == MULTI_SELECT:
        result["DefaultFormValue"] = -1
    elif attribute.is_lookup:
        result["Targets"] = list(attribute.targets)
        result["Format"] = "None"
    return result


def attribute_json_with_options(attribute: AttributeDef, expand: set[str]) -> dict[str, Any]:
    result = attribute_json(attribute)
    if "OptionSet" in expand:
        result["OptionSet"] = option_set_json(attribute)
    if "GlobalOptionSet" in expand and (
        attribute.attribute_type in OPTION_TYPES or attribute.attribute_type == MULTI_SELECT
    ):
        is_global = attribute.option_set is not None and attribute.option_set.is_global
        result["GlobalOptionSet"] = option_set_json(attribute) if is_global else None
    return result


# -- CSDL ($metadata) --------------------------------------------------------------------------------------
def csdl(registry: MetadataRegistry, *, annotations: bool = False) -> str:
    """A CSDL subset: each table's EntityType (key, properties, navigation properties), the entity sets,
    WhoAmI, and — with `?annotations=true` — the change-tracking annotation on tracked entity sets."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        '<EntityType Name="crmbaseentity" Abstract="true"/>',
        '<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false"/>'
        '<Property Name="UserId" Type="Edm.Guid" Nullable="false"/>'
        '<Property Name="OrganizationId" Type="Edm.Guid" Nullable="false"/></ComplexType>',
        '<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>',
    ]
    for entity in registry.entities.values():
        lines.append(f'<EntityType Name="{entity.logical_name}" BaseType="mscrm.crmbaseentity">')
        lines.append(f'<Key><PropertyRef Name="{entity.primary_id}"/></Key>')
        for attribute in entity.attributes.values():
            extra = ' Unicode="false"' if attribute.edm_type == "Edm.String" else ""
            lines.append(f'<Property Name="{attribute.property_name}" Type="{attribute.edm_type}"{extra}/>')
        for navigation, (_, target) in entity.navigations.items():
            lines.append(f'<NavigationProperty Name={quoteattr(navigation)} Type="mscrm.{target}"/>')
        lines.append("</EntityType>")
    lines.append('<EntityContainer Name="System">')
    for entity in registry.entities.values():
        open_tag = (
            f'<EntitySet Name="{entity.entity_set_name}" EntityType="Microsoft.Dynamics.CRM.{entity.logical_name}"'
        )
        if annotations and entity.change_tracking:
            lines.append(
                open_tag + '><Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
                '<PropertyValue Property="Supported" Bool="true"/></Record></Annotation></EntitySet>'
            )
        else:
            lines.append(open_tag + "/>")
    lines.append('<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI"/>')
    lines.append("</EntityContainer>")
    lines.append("</Schema>")
    lines += ["</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(lines)
