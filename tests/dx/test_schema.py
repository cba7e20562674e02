"""JSON schemas for structured outputs and tools: inlining, strictness, names (no sockets)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Annotated, Any, Literal, TypedDict, Union, get_type_hints

import msgspec
import pytest

from anyapi_async._parsing import CommonParams, ParseParams
from anyapi_async._schema import json_schema, response_schema
from anyapi_async._tools import ToolRunParams
from anyapi_async._types import CompletionCreateParams


class Address(msgspec.Struct):
    """A postal address."""

    city: str
    zip: str | None


class Person(msgspec.Struct):
    name: str
    age: int
    home: Address
    past: list[Address]
    kind: Literal["a", "b"]


class Tree(msgspec.Struct):
    value: int
    children: list[Tree]


class Forest(msgspec.Struct):
    trees: list[Tree]
    owner: Person


class WithDefault(msgspec.Struct):
    name: str
    nickname: str | None = None


class Cat(msgspec.Struct, tag=True):
    lives: int


class Dog(msgspec.Struct, tag=True):
    good: bool


class Pets(msgspec.Struct):
    pets: list[Union[Cat, Dog]]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Paint(msgspec.Struct):
    color: Color
    level: Level


def _walk(node: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out.extend(_walk(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_walk(v))
    return out


def test_root_ref_resolved_and_nested_defs_inlined() -> None:
    """The root is the object itself and non-recursive definitions are inlined."""
    schema, strict = json_schema(Person)
    assert strict is True
    assert schema["type"] == "object"
    assert "$ref" not in str(schema) and "$defs" not in schema
    assert schema["properties"]["home"]["properties"]["city"] == {"type": "string"}
    assert schema["properties"]["past"]["items"]["required"] == ["city", "zip"]


def test_strict_schema_closes_every_object() -> None:
    """Strict schemas have additionalProperties false on every object, all required."""
    schema, _ = json_schema(Person)
    objects = [n for n in _walk(schema) if n.get("type") == "object"]
    assert len(objects) == 3
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert set(obj["required"]) == set(obj["properties"])


def test_recursive_types_stay_in_defs() -> None:
    """A recursive type keeps one definition, referenced by $ref; others are inlined."""
    schema, strict = json_schema(Forest)
    assert strict is True
    assert set(schema["$defs"]) == {"Tree"}
    assert schema["properties"]["trees"]["items"] == {"$ref": "#/$defs/Tree"}
    tree = schema["$defs"]["Tree"]
    assert tree["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert tree["additionalProperties"] is False
    # Person was inlined, not left as a reference.
    assert schema["properties"]["owner"]["properties"]["age"] == {"type": "integer"}


def test_recursive_root() -> None:
    """A recursive root type is inlined once and refers to its own definition."""
    schema, strict = json_schema(Tree)
    assert schema["type"] == "object"
    assert schema["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert strict is True


def test_defaults_make_the_schema_non_strict() -> None:
    """A field with a default is optional, which strict mode cannot express."""
    schema, strict = json_schema(WithDefault)
    assert strict is False
    assert schema["required"] == ["name"]
    assert "additionalProperties" not in schema


@pytest.mark.parametrize(
    "tp",
    [
        dict[str, int],
        list[int],
        Any,
        Annotated[str, msgspec.Meta(min_length=2)],
        tuple[int, str],
        set[str],
        decimal.Decimal,
        bytes,
    ],
)
def test_non_strict_shapes(tp: Any) -> None:
    """Free-form dicts, non-object roots, Any and unsupported keywords are not strict."""
    assert json_schema(tp)[1] is False


def test_supported_formats_stay_strict() -> None:
    """Dates, times and UUIDs carry formats strict mode knows."""

    class Event(msgspec.Struct):
        at: datetime.datetime
        on: datetime.date
        id: uuid.UUID

    schema, strict = json_schema(Event)
    assert strict is True
    assert schema["properties"]["on"] == {"type": "string", "format": "date"}
    assert schema["properties"]["id"] == {"type": "string", "format": "uuid"}


def test_non_strict_nested_keyword() -> None:
    """An unsupported keyword deep inside makes the whole schema non-strict."""

    class Tagged(msgspec.Struct):
        tags: set[str]

    assert json_schema(Tagged)[1] is False


def test_enums_get_a_type_and_discriminator_is_dropped() -> None:
    """Enums carry a type beside their values; OpenAPI's discriminator is removed."""
    schema, strict = json_schema(Pets)
    assert "discriminator" not in str(schema)
    variants = schema["properties"]["pets"]["items"]["anyOf"]
    assert variants[0]["properties"]["type"] == {"enum": ["Cat"], "type": "string"}
    assert strict is True
    paint, _ = json_schema(Paint)
    assert paint["properties"]["color"]["type"] == "string"
    assert paint["properties"]["level"]["type"] == "integer"


def test_a_field_named_discriminator_is_kept() -> None:
    """Only the keyword goes: a property called "discriminator" stays, and strict."""

    class Rule(msgspec.Struct):
        discriminator: str
        properties: list[str]

    schema, strict = json_schema(Rule)
    assert list(schema["properties"]) == ["discriminator", "properties"]
    assert schema["properties"]["discriminator"] == {"type": "string"}
    assert strict is True


def test_response_format_shape_and_names() -> None:
    """The request value names the type; generic aliases get a default name."""
    fmt = response_schema(Person).response_format()
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Person"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["type"] == "object"
    assert response_schema(list[Person]).name == "response"


def test_dataclass_and_typeddict_are_accepted() -> None:
    """Any type msgspec can describe works, not only Structs."""

    @dataclasses.dataclass
    class Point:
        x: float
        y: float

    class Movie(TypedDict):
        title: str
        year: int

    assert response_schema(Point).decode('{"x": 1, "y": 2.5}') == Point(1.0, 2.5)
    assert response_schema(Movie).decode('{"title": "Up", "year": 2009}') == {
        "title": "Up",
        "year": 2009,
    }
    assert response_schema(Movie).strict is True


def test_unusable_response_format() -> None:
    """A dict or a type msgspec cannot describe raises TypeError before any I/O."""
    with pytest.raises(TypeError, match="needs a type"):
        response_schema({"type": "json_object"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Cannot build a JSON schema"):
        response_schema(object)


def test_schema_is_cached() -> None:
    """Building a type's schema happens once."""
    assert response_schema(Person) is response_schema(Person)


def test_param_typeddicts_do_not_drift() -> None:
    """The helpers' parameter TypedDicts track create()'s, minus what they set."""
    create = get_type_hints(CompletionCreateParams)
    common = get_type_hints(CommonParams)
    assert set(common) == set(create) - {"response_format", "tools"}
    for name, hint in common.items():
        assert hint == create[name], name
    assert set(get_type_hints(ParseParams)) == set(create) - {"response_format"}
    assert set(get_type_hints(ToolRunParams)) == set(create) - {"tools"}
