"""Filters render to SOQL with every rule kept and nothing injectable."""

import pytest

from crmsync.config import ImportSync
from crmsync.connectors.port import RecordQuery
from crmsync.connectors.salesforce.soql import render_count, render_filter, render_query, string_literal
from crmsync.domain.filters import OrderBy, evaluate_numeric_expression
from crmsync.domain.types import CrmFieldType
from crmsync.errors import ConfigurationError


def sync_with(filter_):
    return ImportSync.model_validate(
        {
            "id": "s",
            "operation": "import",
            "connection": "c",
            "object": "Contact",
            "fields": [{"remote": "Email", "local": "email"}],
            "filter": filter_,
        }
    )


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("42", 42),
        ("-3.5", -3.5),
        ("1000 * 5", 5000),
        ("(1 + 2) * 3", 9),
        ("7 // 2", 3),
        ("10 / 4", 2.5),
        ("1e3", 1000),
    ],
)
def test_value_expressions_evaluate_to_numbers(expression, value):
    assert evaluate_numeric_expression(expression) == value


@pytest.mark.parametrize(
    "expression", ["__import__('os')", "'a'", "x + 1", "[1]", "1 if 1 else 2", "2 ** 10000", "open('f')"]
)
def test_anything_but_arithmetic_is_refused(expression):
    with pytest.raises(ValueError, match="rule I5"):
        evaluate_numeric_expression(expression)


def test_division_by_zero_is_refused():
    with pytest.raises(ValueError, match="divides by zero"):
        evaluate_numeric_expression("1 / 0")


def test_nested_levels_render_with_their_own_operator():
    tree = sync_with(
        {
            "all": [
                {"field": "NumberOfEmployees", "op": "gt", "value": 10},
                {"any": [{"field": "Email", "op": "is_not_empty"}, {"not": {"field": "Phone", "op": "is_empty"}}]},
            ]
        }
    ).filter
    assert render_filter(tree) == "(NumberOfEmployees > 10 AND (Email != null OR (NOT Phone = null)))"


def test_boolean_fields_compare_with_true_and_false():
    tree = sync_with({"field": "HasOptedOutOfEmail", "op": "eq", "value": 0}).filter
    assert render_filter(tree, {"HasOptedOutOfEmail": CrmFieldType.BOOLEAN}) == "HasOptedOutOfEmail = false"


def test_boolean_field_with_another_number_is_a_configuration_error():
    tree = sync_with({"field": "HasOptedOutOfEmail", "op": "gt", "value": 0}).filter
    with pytest.raises(ConfigurationError):
        render_filter(tree, {"HasOptedOutOfEmail": CrmFieldType.BOOLEAN})


def test_floats_render_without_exponent():
    tree = sync_with({"field": "Amount", "op": "lt", "value": 0.0000125}).filter
    assert render_filter(tree) == "Amount < 0.0000125"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("O'Brien", r"'O\'Brien'"),
        ("a\\b", r"'a\\b'"),
        ("x' OR Id != '", r"'x\' OR Id != \''"),
        ("l1\nl2", r"'l1\nl2'"),
    ],
)
def test_string_literals_are_escaped(value, literal):
    assert string_literal(value) == literal


def test_window_query_is_bounded_start_inclusive_end_exclusive_and_ordered():
    from datetime import UTC, datetime

    soql = render_query(
        RecordQuery(
            object="Contact",
            fields=("Id", "SystemModstamp", "Email"),
            window_field="SystemModstamp",
            window_start=datetime(2024, 1, 1, tzinfo=UTC),
            window_end=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
    )
    assert soql == (
        "SELECT Id, SystemModstamp, Email FROM Contact WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
        "AND SystemModstamp < 2024-01-02T03:04:05Z ORDER BY SystemModstamp ASC, Id ASC"
    )


def test_user_sort_order_is_kept_with_several_columns():
    soql = render_query(
        RecordQuery(
            object="Contact",
            fields=("Id",),
            order_by=(OrderBy(field="LastName", direction="desc"), OrderBy(field="FirstName")),
        )
    )
    assert soql.endswith("ORDER BY LastName DESC, FirstName ASC")


def test_population_ids_are_rendered_as_escaped_literals():
    soql = render_query(RecordQuery(object="Contact", fields=("Id",), ids=("003000000000001AAA", "x'y")))
    assert "Id IN ('003000000000001AAA', 'x\\'y')" in soql


def test_a_window_count_has_the_reads_where_clause_and_no_fields_or_order():
    from datetime import UTC, datetime

    from crmsync.domain.filters import Condition

    soql = render_count(
        RecordQuery(
            object="Contact",
            fields=("Id", "Email"),
            filter=Condition(field="DoNotCall", op="eq", value=0),
            field_types={"DoNotCall": CrmFieldType.BOOLEAN},
            window_field="SystemModstamp",
            window_start=datetime(2024, 1, 1, tzinfo=UTC),
            window_end=datetime(2024, 1, 2, tzinfo=UTC),
            order_by=(OrderBy(field="LastName"),),
        )
    )
    assert soql == (
        "SELECT COUNT() FROM Contact WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
        "AND SystemModstamp < 2024-01-02T00:00:00Z AND DoNotCall = false"
    )
