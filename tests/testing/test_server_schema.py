"""sample_schema: values that conform to JSON Schemas (pure; no server)."""

from __future__ import annotations

import datetime
import json
import random
import uuid
from typing import Any, Literal

import pydantic
from hypothesis import given
from hypothesis import strategies as st

from anyapi_async.testing import sample_schema


def sample(schema: Any, seed: int = 0) -> Any:
    return sample_schema(schema, random.Random(seed))


@given(st.integers(-1000, 1000), st.integers(0, 50), st.booleans(), st.integers(0, 99))
def test_integer_bounds(low: int, width: int, exclusive: bool, seed: int) -> None:
    """Integers respect minimum/maximum, inclusive or exclusive (draft 2020 numbers)."""
    if exclusive:
        schema = {
            "type": "integer",
            "exclusiveMinimum": low - 1,
            "exclusiveMaximum": low + width + 1,
        }
    else:
        schema = {"type": "integer", "minimum": low, "maximum": low + width}
    value = sample(schema, seed)
    assert isinstance(value, int) and low <= value <= low + width


@given(st.floats(-1e6, 1e6), st.floats(0.1, 1e3), st.integers(0, 99))
def test_number_bounds(low: float, width: float, seed: int) -> None:
    """Numbers stay strictly inside exclusive bounds."""
    value = sample(
        {"type": "number", "exclusiveMinimum": low, "exclusiveMaximum": low + width}, seed
    )
    assert isinstance(value, float) and low < value < low + width


def test_draft4_boolean_exclusive_bounds_and_multiple_of() -> None:
    """Boolean exclusiveMinimum modifies minimum; multipleOf is honoured."""
    for seed in range(50):
        value = sample(
            {"type": "integer", "minimum": 0, "maximum": 2, "exclusiveMinimum": True}, seed
        )
        assert value in (1, 2)
        step = sample({"type": "integer", "minimum": 1, "maximum": 40, "multipleOf": 7}, seed)
        assert step % 7 == 0 and 1 <= step <= 40


def test_strings_formats_and_lengths() -> None:
    """Formats parse; minLength/maxLength hold; enum and const are used as given."""
    assert datetime.datetime.fromisoformat(sample({"type": "string", "format": "date-time"})[:-1])
    assert datetime.date.fromisoformat(sample({"type": "string", "format": "date"}))
    assert uuid.UUID(sample({"type": "string", "format": "uuid"})).version == 4
    assert "@" in sample({"type": "string", "format": "email"})
    assert sample({"type": "string", "format": "uri"}).startswith("https://")
    assert len(sample({"type": "string", "minLength": 40})) >= 40
    assert len(sample({"type": "string", "maxLength": 3})) <= 3
    assert sample({"enum": ["a", "b"]}) in ("a", "b")
    assert sample({"const": {"x": [1]}}) == {"x": [1]}
    assert sample({"type": ["null", "boolean"]}) in (True, False)


def test_arrays() -> None:
    """minItems/maxItems, uniqueItems and prefixItems are honoured."""
    many = sample({"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 6})
    assert 4 <= len(many) <= 6 and all(isinstance(i, int) for i in many)
    assert sample({"type": "array", "items": {"type": "string"}, "maxItems": 0}) == []
    unique = sample(
        {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 3, "uniqueItems": True}
    )
    assert sorted(unique) == [1, 2, 3]
    pair = sample({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]})
    assert isinstance(pair[0], str) and isinstance(pair[1], int)


def test_objects_combinators_and_refs() -> None:
    """Required properties, additionalProperties schemas, anyOf/oneOf, allOf and $ref."""
    schema = {
        "type": "object",
        "properties": {
            "kind": {"anyOf": [{"const": "first"}, {"type": "integer"}]},
            "pick": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
            "merged": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "string"}}, "required": ["b"]},
                ]
            },
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "item": {"$ref": "#/definitions/Item"},
            "undescribed": {"$ref": "#/definitions/Nope"},
        },
        "required": ["kind", "extra"],
        "additionalProperties": False,
        "definitions": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}}},
    }
    value = sample(schema)
    assert value["kind"] == "first" and isinstance(value["pick"], bool)
    assert isinstance(value["merged"]["a"], int) and isinstance(value["merged"]["b"], str)
    assert value["counts"] and all(isinstance(v, int) for v in value["counts"].values())
    assert isinstance(value["item"]["id"], int)
    assert "extra" in value
    json.dumps(value)


def test_recursive_schema_ends() -> None:
    """A self-referencing tree still produces a finite value."""
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["children", "parent"],
            }
        },
    }
    assert len(json.dumps(sample(tree))) < 100_000


class Item(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(ge=1, le=10)
    price: float = pydantic.Field(gt=0)


class Order(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    id: uuid.UUID
    status: Literal["open", "shipped"]
    items: list[Item] = pydantic.Field(min_length=1)
    note: str | None = None
    placed: datetime.datetime


def test_pydantic_schemas_validate() -> None:
    """Values for a pydantic model's schema validate against the model, for many seeds."""
    schema = Order.model_json_schema()
    for seed in range(20):
        order = Order.model_validate_json(json.dumps(sample(schema, seed)))
        assert order.items and all(1 <= i.quantity <= 10 for i in order.items)


def test_same_seed_same_value() -> None:
    """Sampling is a pure function of the seed."""
    schema = Order.model_json_schema()
    assert sample(schema, 3) == sample(schema, 3)
    assert any(sample(schema, 3) != sample(schema, s) for s in range(4, 10))
