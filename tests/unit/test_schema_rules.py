"""Type checks at validation (SPEC S3), the published compatibility table, snapshots and drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.connectors.port import FieldDescription, ObjectDescription, PicklistValue
from crmsync.domain.conversions import coerce_to_local, convert_to_crm
from crmsync.domain.schema import (
    AttributeType,
    FieldKind,
    compare,
    compatibility_markdown,
    description_from_json,
    description_to_json,
    field_kind,
    mapping_problem,
    suggested_local_name,
)
from crmsync.domain.types import Conversion, CrmFieldType, LocalType
from crmsync.errors import ConfigurationError
from crmsync.services.schema import check_config

ROOT = Path(__file__).parents[2]


def field(name: str, crm_type: CrmFieldType, raw_type: str = "", **kw) -> FieldDescription:
    return FieldDescription(name=name, crm_type=crm_type, raw_type=raw_type or crm_type.value, **kw)


CONTACT = ObjectDescription(
    name="Contact",
    id_field="Id",
    fields={
        f.name.lower(): f
        for f in (
            field("Id", CrmFieldType.ID),
            field("SystemModstamp", CrmFieldType.DATETIME),
            field("Email", CrmFieldType.STRING, "email"),
            field("Birthdate", CrmFieldType.DATE),
            field("LeadSource", CrmFieldType.PICKLIST, picklist=(PicklistValue("Web", "Web"),)),
            field("Interests__c", CrmFieldType.MULTIPICKLIST),
            field("HasOptedOutOfEmail", CrmFieldType.BOOLEAN),
            field("Title", CrmFieldType.STRING),
            field("NumberOfEmployees", CrmFieldType.INTEGER, "int"),
        )
    },
)

HEAD = """
version: 1
connections:
  - { kind: salesforce, name: sf, instance_url: "https://acme.my.salesforce.com", secret: crmsync/sf }
"""


def config(syncs: str, attributes: str = ""):
    return load_config(HEAD + attributes + "syncs:\n" + syncs)


def problems(text: str, attributes: str = "") -> list[str]:
    return check_config(config(text, attributes), lambda c, o: CONTACT).problems


def test_a_crm_date_onto_a_local_number_is_refused_naming_sync_field_types_and_rule():
    found = problems(
        "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: Birthdate, local: age, type: number } ] }\n"
    )
    assert any("syncs[0] (c)" in p and "Birthdate (date) -> age (number)" in p and "rule S3" in p for p in found)


def test_a_multi_select_onto_a_scalar_enumeration_is_refused():
    found = problems(
        "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: Interests__c, local: hobby } ] }\n",
        "attributes:\n  - { name: hobby, type: enumeration, enumeration: hobbies }\n",
    )
    assert any("Interests__c (multipicklist) -> hobby (enumeration)" in p and "rule S2" in p for p in found)


def test_a_multi_select_onto_a_list_attribute_is_accepted():
    assert (
        problems(
            "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: Interests__c, local: hobbies } ] }\n",
            "attributes:\n  - { name: hobbies, type: list }\n",
        )
        == []
    )


def test_a_text_onto_a_boolean_is_refused_in_an_export():
    found = problems(
        "  - { id: e, operation: export, connection: sf, object: Contact, write: update, fields: [ { remote: HasOptedOutOfEmail, local: title } ] }\n",
        "attributes:\n  - { name: title, type: string }\n",
    )
    assert any("title (string) -> HasOptedOutOfEmail (boolean)" in p for p in found)


def test_a_built_in_attribute_is_typed_without_being_declared():
    found = problems(
        "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: Birthdate, local: denyListEmail } ] }\n"
    )
    assert any("Birthdate (date) -> denyListEmail (boolean)" in p for p in found)


def test_two_mappings_of_one_undeclared_attribute_with_incompatible_types_are_refused():
    found = problems(
        "  - { id: a, operation: import, connection: sf, object: Contact, fields: [ { remote: Birthdate, local: x } ] }\n"
        "  - { id: b, operation: import, connection: sf, object: Contact, fields: [ { remote: HasOptedOutOfEmail, local: x } ] }\n"
    )
    assert any("attribute x would be boolean" in p and "makes it date" in p for p in found)


def test_an_integer_and_a_number_mapping_of_one_attribute_agree():
    assert (
        problems(
            "  - { id: a, operation: import, connection: sf, object: Contact, fields: [ { remote: NumberOfEmployees, local: x } ] }\n"
            "  - { id: b, operation: import, connection: sf, object: Contact, fields: [ { remote: NumberOfEmployees, local: x, type: number } ] }\n"
        )
        == []
    )


def test_an_unknown_field_is_refused_offline_with_a_hint():
    found = problems(
        "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: Emial, local: email } ] }\n"
    )
    assert any("has no field 'Emial' (did you mean Email?)" in p for p in found)


def test_an_enumeration_sync_of_a_multi_select_is_refused_with_a_clear_message():
    found = problems(
        "  - { id: n, operation: enumerations, connection: sf, object: Contact, enumerations: [ { name: hobbies, field: Interests__c } ] }\n"
    )
    assert any("multi-select values are not supported by enumeration sync" in p for p in found)


def test_an_enumeration_sync_of_a_text_field_is_refused():
    found = problems(
        "  - { id: n, operation: enumerations, connection: sf, object: Contact, enumerations: [ { name: t, field: Title } ] }\n"
    )
    assert any("not a picklist, option set or Boolean" in p for p in found)


def test_an_object_without_a_snapshot_is_a_note_not_a_problem():
    check = check_config(
        config(
            "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: Email, local: email } ] }\n"
        ),
        lambda c, o: None,
    )
    assert check.problems == []
    assert "crmsync schema pull sf Contact" in check.notes[0]


def test_a_declared_attribute_gives_its_type_to_the_mappings_onto_it():
    parsed = config(
        "  - { id: c, operation: import, connection: sf, object: Contact, fields: [ { remote: LeadSource, local: source } ] }\n",
        "attributes:\n  - { name: source, type: enumeration, enumeration: leadSource }\n",
    )
    assert parsed.syncs[0].fields[0].type is LocalType.STRING


def test_an_enumeration_attribute_must_name_its_enumeration():
    with pytest.raises(ConfigurationError, match="'enumeration' names the enumeration"):
        config("", "attributes:\n  - { name: source, type: enumeration }\n")


def test_an_enumeration_names_a_field_or_an_option_set_not_both():
    with pytest.raises(ConfigurationError, match="either 'field'"):
        config(
            "  - { id: n, operation: enumerations, connection: sf, object: Contact, enumerations: [ { name: a, field: LeadSource, option_set: x } ] }\n"
        )


@pytest.mark.parametrize(
    ("kind", "attribute", "ok"),
    [
        (CrmFieldType.DATETIME, AttributeType.DATE, True),
        (CrmFieldType.DATE, AttributeType.DATETIME, False),
        (CrmFieldType.PICKLIST, AttributeType.ENUMERATION, True),
        (CrmFieldType.BOOLEAN, AttributeType.INTEGER, True),
        (CrmFieldType.STRING, AttributeType.BOOLEAN, False),
        (CrmFieldType.NUMBER, AttributeType.INTEGER, False),
    ],
)
def test_import_compatibility(kind, attribute, ok):
    assert (mapping_problem(field("F", kind), attribute, "import") is None) is ok


def test_raw_gives_text_and_replacements_are_checked_per_value():
    date = field("D", CrmFieldType.DATE)
    assert mapping_problem(date, AttributeType.NUMBER, "import", conversion=Conversion.RAW) is not None
    assert mapping_problem(date, AttributeType.NUMBER, "import", replacements=True) is None


def test_a_dataverse_choice_is_an_option_set():
    assert field_kind(field("statuscode", CrmFieldType.INTEGER, "Status")) is FieldKind.OPTION_SET


def test_the_published_compatibility_table_is_the_one_the_code_applies():
    assert compatibility_markdown() in (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")


def test_a_snapshot_round_trips():
    assert description_from_json(description_to_json(CONTACT)) == CONTACT


def test_drift_names_new_removed_and_retyped_fields():
    now = ObjectDescription(
        name="Contact",
        id_field="Id",
        fields={
            **{k: v for k, v in CONTACT.fields.items() if k != "title"},
            "birthdate": field("Birthdate", CrmFieldType.STRING, "string"),
            "score__c": field("Score__c", CrmFieldType.NUMBER, "double"),
        },
    )
    drift = compare(CONTACT, now)
    assert drift.added == ("Score__c",)
    assert drift.removed == ("Title",)
    assert drift.retyped == (("Birthdate", "date", "string"),)


@pytest.mark.parametrize(
    ("remote", "local"),
    [("MailingCity", "mailingCity"), ("Opted_In_At__c", "optedInAt"), ("new_interests", "interests")],
)
def test_suggested_local_names(remote, local):
    assert suggested_local_name(remote) == local


def test_a_multi_select_value_lands_in_a_list_and_goes_back_joined():
    assert coerce_to_local("Running;Cycling", LocalType.LIST, "I", "i") == ["Running", "Cycling"]
    assert coerce_to_local("100000000,100000002", LocalType.LIST, "I", "i") == ["100000000", "100000002"]
    assert convert_to_crm(["Running", "Cycling"], CrmFieldType.MULTIPICKLIST, Conversion.DEFAULT, None, "I") == (
        "Running;Cycling"
    )
