"""Dataverse OData rendering: names checked, literals escaped, nothing a value holds can become query text."""

from datetime import UTC, datetime

import pytest

from crmsync.connectors.dynamics.odata import encode, ids_in, query_options, render_filter, string_literal
from crmsync.connectors.port import RecordQuery
from crmsync.domain.filters import AllOf, AnyOf, Condition, NotOf, OrderBy
from crmsync.domain.types import CrmFieldType
from crmsync.errors import ConfigurationError
from crmsync_local.emulators.dynamics.odata import tokenize

TYPES = {"donotemail": CrmFieldType.BOOLEAN, "parentcustomerid": CrmFieldType.REFERENCE}
GUID = "1f0c3a5e-2b4d-4c6e-8f0a-1b2c3d4e5f60"


@pytest.mark.parametrize("value", ["O'Brien", "' or 1 eq 1 or '", "''", "a'); $delete", "é'ü"])
def test_a_string_with_quotes_stays_one_literal_with_its_value(value):
    """Dataverse's own lexer (the emulator's) reads the rendered literal back as one string, unchanged."""
    tokens = [(t.kind, t.value) for t in tokenize(string_literal(value)) if t.kind != "END"]
    assert tokens == [("STRING", value)]


def test_quotes_are_doubled():
    assert string_literal("O'Brien") == "'O''Brien'"


def test_filters_render_levels_nulls_booleans_and_lookups():
    tree = AllOf(
        all=[
            Condition(field="donotemail", op="eq", value=0),
            AnyOf(
                any=[
                    Condition(field="parentcustomerid", op="is_empty"),
                    NotOf.model_validate({"not": Condition(field="numberofemployees", op="gt", value=2.5)}),
                ]
            ),
        ]
    )
    assert render_filter(tree, TYPES) == (
        "(donotemail eq false and (_parentcustomerid_value eq null or (not numberofemployees gt 2.5)))"
    )


def test_a_boolean_compared_with_another_number_is_refused():
    with pytest.raises(ConfigurationError, match="eq/ne and 1 or 0"):
        render_filter(Condition(field="donotemail", op="gt", value=0), TYPES)


def test_record_ids_must_be_guids_and_are_written_as_string_literals():
    assert ids_in("contactid", [GUID.upper()]) == (
        f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['{GUID}'])"
    )
    with pytest.raises(ConfigurationError, match="not a Dataverse record id"):
        ids_in("contactid", ["x') or true or ('"])


def test_a_window_reads_start_inclusive_end_exclusive_ordered_by_the_watermark_then_the_id():
    query = RecordQuery(
        object="contact",
        fields=("contactid", "modifiedon", "parentcustomerid"),
        window_field="modifiedon",
        window_start=datetime(2024, 3, 1, 9, tzinfo=UTC),
        window_end=datetime(2024, 3, 2, 9, tzinfo=UTC),
        filter=Condition(field="donotemail", op="eq", value=1),
        field_types=TYPES,
    )
    assert query_options(query, "contactid") == {
        "$select": "contactid,modifiedon,_parentcustomerid_value",
        "$filter": "modifiedon ge 2024-03-01T09:00:00Z and modifiedon lt 2024-03-02T09:00:00Z and donotemail eq true",
        "$orderby": "modifiedon asc,contactid asc",
    }


def test_a_configured_sort_replaces_the_default_one():
    query = RecordQuery(
        object="contact",
        fields=("contactid",),
        window_field="modifiedon",
        order_by=(OrderBy(field="parentcustomerid", direction="desc"),),
        field_types=TYPES,
    )
    assert query_options(query, "contactid")["$orderby"] == "_parentcustomerid_value desc"


def test_the_query_string_encodes_spaces_ampersands_and_hashes():
    assert encode({"$filter": "a eq 'x & y #1'"}) == "$filter=a%20eq%20'x%20%26%20y%20%231'"


@pytest.mark.parametrize("name", ["contact'", "_x_value", "a b", "contact;drop", ""])
def test_names_that_are_not_identifiers_are_refused(name):
    with pytest.raises(ConfigurationError, match="not a Dataverse table or column name"):
        query_options(RecordQuery(object="contact", fields=(name,)), "contactid")
