"""The stores' own attribute-value (de)serialiser gives what boto3's TypeSerializer/TypeDeserializer do."""

from __future__ import annotations

from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from crmsync.stores.dynamo import _from_dynamo_value, _to_dynamo_value, deserialize, serialize

VALUES = [
    "", "été", 0, -7, 10**20, 1.5, 0.1, 1e-7, 2.0, True, False, None, Decimal("3.25"),
    [1, "a", None, {"x": [True]}], (1, 2), {"a": {"b": {"c": 1.25}}, "d": []}, {1, 2}, {"x", "y"}, b"raw",
]  # fmt: skip
# Sets repr in hash order, which differs between xdist workers: their ids are sorted so every worker
# collects the same tests.
IDS = [repr(sorted(v) if isinstance(v, set) else v)[:20] for v in VALUES]


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_serialize_writes_what_boto3_writes(value):
    assert serialize({"v": value}) == {"v": TypeSerializer().serialize(_to_dynamo_value(value))}


@pytest.mark.parametrize("value", VALUES, ids=IDS)
def test_deserialize_reads_what_boto3_reads(value):
    wire = {"v": TypeSerializer().serialize(_to_dynamo_value(value))}

    assert deserialize(wire) == {"v": _from_dynamo_value(TypeDeserializer().deserialize(wire["v"]))}


@pytest.mark.parametrize("number", ["1.0", "1E+2", "-0", "12345678901234567890.5", "3.14"])
def test_numbers_read_back_as_int_when_integral(number):
    assert deserialize({"n": {"N": number}}) == {"n": _from_dynamo_value(Decimal(number))}


def test_a_float_that_is_not_finite_is_refused_as_boto3_refuses_it():
    with pytest.raises(TypeError):
        serialize({"v": float("nan")})
