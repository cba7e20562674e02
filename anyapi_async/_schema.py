"""JSON schemas from msgspec types, rewritten for what providers accept.

`json_schema` starts from `msgspec.json.schema` and rewrites it: the root ``$ref`` msgspec
emits is resolved, non-recursive ``$defs`` are inlined (several providers reject ``$ref``),
enums get a ``type``, and OpenAPI's ``discriminator`` is dropped. It also says whether
OpenAI's strict mode can take the schema as it is: an object at the root, every object
listing all its properties as required, and only keywords strict mode supports
(https://platform.openai.com/docs/guides/structured-outputs#supported-schemas). Those
objects then get ``additionalProperties: false``, which costs nothing: msgspec ignores
unknown fields when it decodes.

Pydantic models (and types holding them, such as ``list[Model]``) are described and
validated by pydantic instead (`anyapi_async._pydantic`, imported only then): their schema
is first made the way OpenAI-style strict mode wants it (every property required, defaults
dropped, so an optional field is one whose type allows ``null``; ``oneOf`` becomes
``anyOf``) and then rewritten like msgspec's; if strict mode still cannot take it, pydantic's
schema is sent as it is, non-strict. `uses_pydantic` tells such types apart without
importing pydantic: no model can exist before pydantic is imported.

`ResponseSchema` is a type prepared for structured output (``parse()``): the schema, a
name for it, the ``response_format`` to send, and the decoder for the reply. Tool
parameters (`anyapi_async._tools`) use `json_schema` too.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, Protocol, TypeVar, get_args, get_type_hints

import msgspec

from ._types import ResponseFormatJSONSchema

__all__ = [
    "DEFAULT_SCHEMA_NAME",
    "ContentDecoder",
    "clean_schema_name",
    "decode_fenced",
    "provider_schema",
    "require_all",
    "STRICT_FORMATS",
    "STRICT_KEYWORDS",
    "ResponseSchema",
    "json_schema",
    "response_schema",
    "uses_msgspec",
    "uses_pydantic",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Schema name used when the type has no usable ``__name__`` (``list[int]``…).
DEFAULT_SCHEMA_NAME: Final = "response"
#: Keywords OpenAI's strict mode accepts; any other makes the schema non-strict.
STRICT_KEYWORDS: Final = frozenset(
    (
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "$ref", "$defs", "title", "description", "pattern", "format", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    )
)  # fmt: skip
#: ``format`` values strict mode accepts (msgspec also emits ``decimal``, for example).
STRICT_FORMATS: Final = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
)
_NAME_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_-]+")
_DEF_PREFIX: Final = "#/$defs/"
_FENCE: Final = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
# Keywords whose value maps names to schemas: the names are data, never keywords.
_SCHEMA_MAPS: Final = frozenset(("properties", "$defs", "definitions", "patternProperties"))
_SCHEMA_LISTS: Final = frozenset(("anyOf", "allOf", "oneOf", "prefixItems"))
_SCHEMA_ONE: Final = frozenset(("items", "additionalProperties", "not", "contains"))


def _refs_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEF_PREFIX):
            found.add(ref[len(_DEF_PREFIX) :])
        for value in node.values():
            found |= _refs_in(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs_in, node)) if node else set()
    return set()


def _recursive_defs(defs: dict[str, Any]) -> set[str]:
    """Names of the definitions that can reach themselves through ``$ref``."""
    edges = {name: _refs_in(schema) for name, schema in defs.items()}
    recursive = set()
    for start in defs:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            name = todo.pop()
            if name == start:
                recursive.add(start)
                break
            if name not in seen and name in edges:
                seen.add(name)
                todo.extend(edges[name])
    return recursive


def _rewrite(node: Any, defs: dict[str, Any], keep: set[str]) -> Any:
    """Inline ``$ref`` to non-recursive defs; tidy enums; drop ``discriminator``."""
    if isinstance(node, list):
        return [_rewrite(item, defs, keep) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEF_PREFIX):
        name = ref[len(_DEF_PREFIX) :]
        if name not in keep and name in defs:
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _rewrite({**defs[name], **extra}, defs, keep)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "discriminator":
            continue  # OpenAPI's, not JSON Schema's; the tag field itself stays required
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            # Names here are properties (one may well be called "discriminator").
            out[key] = {name: _rewrite(v, defs, keep) for name, v in value.items()}
        else:
            out[key] = _rewrite(value, defs, keep)
    enum = out.get("enum")
    if isinstance(enum, list) and enum and "type" not in out:
        # Gemini-backed models, among others, want a type beside every enum.
        if all(isinstance(v, str) for v in enum):
            out["type"] = "string"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in enum):
            out["type"] = "integer"
    return out


def _strict_ok(node: Any, root: bool = False) -> bool:
    """Whether ``node`` (and all below it) fits OpenAI's strict mode."""
    if not isinstance(node, dict) or not node:
        return False  # ``items: false``, or ``{}`` (Any): strict mode needs a type
    if root and node.get("type") != "object":
        return False
    if not node.keys() <= STRICT_KEYWORDS:
        return False
    if "format" in node and node["format"] not in STRICT_FORMATS:
        return False
    if node.get("type") == "object" or "properties" in node:
        props = node.get("properties")
        if not isinstance(props, dict):
            return False  # a free-form dict: strict mode cannot describe it
        if set(node.get("required", ())) != props.keys():
            return False
        if node.get("additionalProperties", False) is not False:
            return False
        if not all(_strict_ok(p) for p in props.values()):
            return False
    if "items" in node and not _strict_ok(node["items"]):
        return False
    if "anyOf" in node and not all(_strict_ok(s) for s in node["anyOf"]):
        return False
    defs = node.get("$defs", {})
    return all(_strict_ok(s) for s in defs.values())


def _close_objects(node: Any) -> None:
    """Add ``additionalProperties: false`` to every object schema, in place."""
    if isinstance(node, dict):
        if node.get("type") == "object":
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


def _classes_in(tp: Any, seen: dict[int, Any]) -> Iterator[Any]:
    """Every class and ``Annotated`` metadata object ``tp`` is made of, fields included."""
    if id(tp) in seen:
        return
    seen[id(tp)] = tp  # kept alive, so no later object can take its id during the walk
    yield tp
    args = get_args(tp)
    metadata = getattr(tp, "__metadata__", None)
    if isinstance(metadata, tuple):  # Annotated[X, ...]: get_args gives X and the metadata
        yield from metadata
        args = args[:1]
    for arg in args:
        yield from _classes_in(arg, seen)
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or _is_typeddict(tp)):
        try:
            hints = get_type_hints(tp, include_extras=True)
        except (NameError, TypeError, AttributeError, SyntaxError):
            return  # unresolvable annotations: whoever builds the schema will say so
        for hint in hints.values():
            yield from _classes_in(hint, seen)


def _is_typeddict(tp: type) -> bool:
    return issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def uses_pydantic(tp: Any) -> bool:
    """Whether ``tp`` is or holds a pydantic model, or pydantic ``Field`` metadata.

    Never imports pydantic: while ``pydantic.main`` is not loaded, no model exists.
    """
    main = sys.modules.get("pydantic.main")
    if main is None:
        return False
    base = main.BaseModel
    for item in _classes_in(tp, {}):
        if isinstance(item, type):
            if issubclass(item, base) or "__pydantic_fields__" in vars(item):
                return True  # a model, or a pydantic dataclass
        elif type(item).__module__.split(".", 1)[0] == "pydantic":
            return True  # Field(...) metadata in Annotated
    return False


def uses_msgspec(tp: Any) -> bool:
    """Whether ``tp`` is or holds a msgspec Struct, or ``msgspec.Meta`` metadata."""
    for item in _classes_in(tp, {}):
        if isinstance(item, msgspec.Meta):
            return True
        if isinstance(item, type) and issubclass(item, msgspec.Struct):
            return True
    return False


def require_all(node: Any) -> Any:
    """A copy of schema ``node`` made the way OpenAI-style strict mode wants every object.

    Every object lists all its properties as required and ``default`` goes (strict mode has
    neither optional properties nor defaults): a field whose type allows ``null`` is then
    the optional one, and the model gives a value for a field with a default. ``oneOf``
    (pydantic's discriminated unions, whose tags keep the branches apart) becomes
    ``anyOf``, and a lone ``allOf`` is merged into its parent.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: require_all(v) for name, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [require_all(v) for v in value]
        elif key in _SCHEMA_ONE:
            out[key] = require_all(value)
        else:
            out[key] = value
    if "oneOf" in out and "anyOf" not in out:
        out["anyOf"] = out.pop("oneOf")
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        del out["allOf"]
        out = {**all_of[0], **out}
    properties = out.get("properties")
    if isinstance(properties, dict):
        out["required"] = list(properties)
    return out


def json_schema(tp: Any) -> tuple[dict[str, Any], bool]:
    """The JSON schema of ``tp`` ready to send, and whether strict mode can take it.

    Pydantic models are described by pydantic (see the module docstring), other types by
    msgspec. Raises `TypeError` when neither can describe ``tp``.
    """
    if uses_pydantic(tp):
        from ._pydantic import raw_schema

        raw = raw_schema(tp)
        schema, strict = provider_schema(require_all(raw))
        return (schema, strict) if strict else provider_schema(raw)
    try:
        raw = msgspec.json.schema(tp)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Cannot build a JSON schema for {tp!r}: {exc}") from exc
    return provider_schema(raw)


def provider_schema(raw: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``raw`` (a JSON schema with its ``$defs`` at the root) rewritten for providers, and
    whether strict mode can take it; ``raw`` itself is not changed.
    """
    raw = dict(raw)
    defs: dict[str, Any] = raw.pop("$defs", {})
    keep = _recursive_defs(defs)
    root = raw.get("$ref")
    if isinstance(root, str) and root.startswith(_DEF_PREFIX) and len(raw) == 1:
        # Strict mode wants an object at the root, even for a recursive type.
        raw = defs[root[len(_DEF_PREFIX) :]]
    schema = _rewrite(raw, defs, keep)
    if keep:
        schema["$defs"] = {name: _rewrite(defs[name], defs, keep) for name in sorted(keep)}
    strict = _strict_ok(schema, root=True)
    if strict:
        _close_objects(schema)
    return schema, strict


def clean_schema_name(name: str) -> str:
    """``name`` as a ``json_schema`` name: letters, digits, ``_`` and ``-``, 64 at most."""
    return _NAME_UNSAFE.sub("_", name)[:64] or DEFAULT_SCHEMA_NAME


def decode_fenced(content: str, decode: Callable[[str], T]) -> T:
    """``decode(content)``, tolerating a Markdown code fence around the JSON.

    Models without native structured output often wrap JSON in ```json fences.
    """
    try:
        return decode(content)
    except msgspec.DecodeError:
        fenced = _FENCE.match(content.strip())
        if fenced is None:
            raise
        return decode(fenced.group(1))


def _schema_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    if not isinstance(name, str) or getattr(tp, "__args__", None):
        return DEFAULT_SCHEMA_NAME  # ``list[int]`` has a __name__ of "list": not telling
    return clean_schema_name(name)


class ContentDecoder(Protocol[T_co]):
    """What decodes a reply: a `msgspec.json.Decoder`, or pydantic's for its models."""

    def decode(self, buf: str | bytes, /) -> T_co:
        """Decode and validate ``buf``; raises `msgspec.DecodeError`/`ValidationError`."""
        ...


class ResponseSchema(Generic[T]):
    """A type prepared for structured output: its name, JSON schema, strictness, decoder.

    ``tp`` may be anything msgspec describes, or a pydantic model (or a type holding
    one, such as ``list[Model]``), which pydantic then describes and validates.
    """

    __slots__ = ("decoder", "name", "schema", "strict", "type")

    def __init__(self, tp: type[T]) -> None:
        self.type = tp
        self.name = _schema_name(tp)
        self.schema, self.strict = json_schema(tp)
        self.decoder: ContentDecoder[T]
        if uses_pydantic(tp):
            from ._pydantic import PydanticDecoder

            self.decoder = PydanticDecoder(tp)
        else:
            self.decoder = msgspec.json.Decoder(tp)

    def response_format(self) -> ResponseFormatJSONSchema:
        """The ``response_format`` request value."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": self.strict},
        }

    def decode(self, content: str) -> T:
        """Decode and validate ``content``; a Markdown code fence around it is tolerated.

        Raises `msgspec.DecodeError` or `msgspec.ValidationError`.
        """
        return decode_fenced(content, self.decoder.decode)

    def __repr__(self) -> str:
        return f"ResponseSchema({self.name!r}, strict={self.strict})"


@functools.lru_cache(maxsize=256)
def _cached_schema(tp: Any) -> ResponseSchema[Any]:
    return ResponseSchema(tp)


def response_schema(tp: type[T]) -> ResponseSchema[T]:
    """The (cached) `ResponseSchema` of ``tp``; raises `TypeError` for unusable types."""
    if isinstance(tp, (dict, str)):
        raise TypeError(
            "parse() needs a type for response_format (a msgspec Struct, pydantic model, "
            "dataclass, TypedDict...); pass a response_format dict to create() instead"
        )
    key: Any = tp  # types are hashable; ``Annotated[...]`` with an unhashable Meta is not
    try:
        return _cached_schema(key)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return ResponseSchema(tp)
