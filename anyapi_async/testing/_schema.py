"""Deterministic values that conform to a JSON Schema, for tool arguments and structured output.

Covers the subset that function-calling and structured-output schemas use: ``type`` (one or
a list), ``enum``, ``const``, objects (``properties``, ``required``, ``additionalProperties``),
arrays (``items``, ``prefixItems``, ``minItems``/``maxItems``, ``uniqueItems``), strings
(``minLength``/``maxLength``, common ``format`` values), numbers and integers (inclusive and
exclusive bounds, ``multipleOf``), booleans, null, ``anyOf``/``oneOf`` (the first branch),
``allOf`` (merged) and local ``$ref`` pointers such as ``#/$defs/Name`` (what
``msgspec.json.schema`` and pydantic emit). ``pattern`` is not honoured.

One sample is bounded: a schema asking for more than ``MAX_SAMPLE_VALUES`` values or
``MAX_SAMPLE_CHARS`` characters of strings (``"minItems": 100000000``, nested arrays, a huge
``minLength``) raises `SchemaTooLarge` as soon as the bound is crossed, so no schema can
make the server spend more than a few milliseconds and a few megabytes on it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_SAMPLE_CHARS", "MAX_SAMPLE_VALUES", "SchemaTooLarge", "sample_schema"]

#: Beyond this many nested ``$ref``/object levels only required parts are produced, so
#: recursive schemas (a tree whose nodes hold nodes) still end.
MAX_DEPTH: Final = 5
DEFAULT_ARRAY_ITEMS: Final = 2
#: Deeper nesting than this (a required property that holds itself) is refused.
MAX_NESTING: Final = 48
#: The most values (array items, properties, scalars) one sample may hold.
MAX_SAMPLE_VALUES: Final = 10_000
#: The most string characters one sample may hold.
MAX_SAMPLE_CHARS: Final = 200_000

_WORDS: Final = (
    "amber", "river", "quiet", "signal", "harbor", "linen", "orbit", "maple", "copper",
    "velvet", "summit", "meadow", "ember", "canyon", "violet", "cedar", "pixel", "lantern",
)  # fmt: skip
_CITIES: Final = ("Lisbon", "Paris", "Kyoto", "Montréal", "Zürich", "Oslo", "Cusco", "Austin")
_NAMES: Final = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Émilie du Châtelet")


class SchemaTooLarge(ValueError):
    """The schema asks for a value beyond the sampler's bounds."""


class Budget:
    """What the samples of one request may still use; shared by every sample it makes."""

    __slots__ = ("chars", "values")

    def __init__(self, values: int = MAX_SAMPLE_VALUES, chars: int = MAX_SAMPLE_CHARS) -> None:
        self.values = values
        self.chars = chars

    def spend(self, values: int, chars: int = 0) -> None:
        self.values -= values
        self.chars -= chars
        if self.values < 0:
            raise SchemaTooLarge(
                f"the schema asks for more than {MAX_SAMPLE_VALUES} values in one reply"
            )
        if self.chars < 0:
            raise SchemaTooLarge(
                f"the schema asks for more than {MAX_SAMPLE_CHARS} characters in one reply"
            )


def sample_schema(schema: Any, rng: random.Random, *, budget: Budget | None = None) -> Any:
    """A value conforming to ``schema``; the same ``rng`` state gives the same value.

    Raises `SchemaTooLarge` when the value would exceed the bounds (``budget``, shared by
    several samples, defaults to a fresh one).
    """
    root = schema if isinstance(schema, Mapping) else {}
    return _Sampler(root, rng, budget or Budget()).value(schema, "", 0)


class _Sampler:
    __slots__ = ("_budget", "_rng", "_root")

    def __init__(self, root: Mapping[str, Any], rng: random.Random, budget: Budget) -> None:
        self._root = root
        self._rng = rng
        self._budget = budget

    def value(self, schema: Any, name: str, depth: int) -> Any:
        self._budget.spend(1)
        if depth > MAX_NESTING:
            raise SchemaTooLarge(f"the schema nests deeper than {MAX_NESTING} levels")
        if schema is True or not isinstance(schema, Mapping):
            return self._string({}, name)
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.value(merged, name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self._branch(branches, depth), name, depth)
        if isinstance(schema.get("allOf"), list):
            return self.value(_merge_all(schema), name, depth)
        kind = _kind(schema, shallow=depth >= MAX_DEPTH)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, ref: Any) -> Mapping[str, Any]:
        # Only local JSON pointers (RFC 6901): "#", "#/$defs/Name", "#/definitions/Name".
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        node: Any = self._root
        for part in filter(None, ref[1:].split("/")):
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return {}
        return node if isinstance(node, Mapping) else {}

    def _branch(self, branches: list[Any], depth: int) -> Any:
        # The first branch, except deep inside recursion where a null branch ends the tree.
        if depth >= MAX_DEPTH:
            for branch in branches:
                if isinstance(branch, Mapping) and branch.get("type") == "null":
                    return branch
        return branches[0]

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        required = set(required) if isinstance(required, list) else set()
        out: dict[str, Any] = {}
        for key, sub in props.items():
            if key in required or depth < MAX_DEPTH:
                out[key] = self.value(sub, key, depth + 1)
        for key in sorted(required - out.keys()):  # required but not described
            out[key] = self._string({}, key)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, Mapping) and extra and depth < MAX_DEPTH:
            for key in self._rng.sample(_WORDS, DEFAULT_ARRAY_ITEMS):
                out[key] = self.value(extra, key, depth + 1)
        return out

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), max(low, len(prefix), DEFAULT_ARRAY_ITEMS))
        count = low if depth >= MAX_DEPTH else min(max(low, DEFAULT_ARRAY_ITEMS), high)
        count = max(count, min(len(prefix), high))
        if count > self._budget.values:  # refuse at once, before building any of it
            self._budget.spend(count)
        items = schema.get("items", {})
        out: list[Any] = [self.value(sub, name, depth + 1) for sub in prefix[:count]]
        unique = bool(schema.get("uniqueItems"))
        attempts = 0
        while len(out) < count and attempts < count * 8:
            attempts += 1
            item = self.value(items if items is not False else {}, name, depth + 1)
            if not (unique and item in out):
                out.append(item)
        return out

    def _integer(self, schema: Mapping[str, Any]) -> int:
        low, high = _bounds(schema)
        lo = math.ceil(low) if low is not None else None
        hi = math.floor(high) if high is not None else None
        lo, hi = (lo if lo is not None else (hi - 100 if hi is not None else 0)), hi
        hi = hi if hi is not None else lo + 100
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first = -(-lo // step) * step
            if first > hi:
                return lo
            return first + step * self._rng.randint(0, (hi - first) // step)
        return self._rng.randint(lo, max(lo, hi))

    def _number(self, schema: Mapping[str, Any]) -> float:
        low, high = _bounds(schema)
        step = _num(schema.get("multipleOf"))
        if step is not None and step > 0:
            first = math.ceil((low if low is not None else 0.0) / step)
            last = math.floor(high / step) if high is not None else first + 100
            return float(step * self._rng.randint(first, max(first, last)))
        lo = low if low is not None else (high - 100.0 if high is not None else 0.0)
        hi = high if high is not None else lo + 100.0
        value = round(lo + (hi - lo) * self._rng.random(), 2)
        return float(min(max(value, lo), hi))

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        rng = self._rng
        fmt = schema.get("format")
        lowered = name.lower()
        if fmt == "date-time":
            text = f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T12:{rng.randint(10, 59)}:00Z"
        elif fmt == "date":
            text = f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        elif fmt == "time":
            text = f"12:{rng.randint(10, 59)}:00"
        elif fmt == "email" or "email" in lowered:
            text = f"{rng.choice(_WORDS)}@example.com"
        elif fmt in ("uri", "url") or lowered in ("url", "uri", "link"):
            text = f"https://example.com/{rng.choice(_WORDS)}"
        elif fmt == "uuid":
            text = _uuid(rng)
        elif fmt == "ipv4":
            text = f"192.0.2.{rng.randint(1, 254)}"
        elif "city" in lowered or "location" in lowered:
            text = rng.choice(_CITIES)
        elif "name" in lowered:
            text = rng.choice(_NAMES)
        else:
            text = " ".join(rng.sample(_WORDS, 2))
        low = _int(schema.get("minLength"), 0)
        high = _int(schema.get("maxLength"), max(low, len(text)))
        if len(text) < low:
            self._budget.spend(0, low)  # before building it: minLength may be huge
            text += "x" * (low - len(text))
        else:
            self._budget.spend(0, len(text))
        return text[:high]


def _kind(schema: Mapping[str, Any], *, shallow: bool) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
        if shallow and "null" in kinds:
            return "null"
        return next((k for k in kinds if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "minimum" in schema or "maximum" in schema:
        return "number"
    return "string"


def _merge_all(schema: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, Mapping):
            continue
        for key, val in part.items():
            if key == "properties" and isinstance(val, Mapping):
                merged["properties"] = {**merged.get("properties", {}), **val}
            elif key == "required" and isinstance(val, list):
                merged["required"] = [*merged.get("required", []), *val]
            else:
                merged.setdefault(key, val)
    return merged


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Inclusive (low, high) from minimum/maximum and both styles of exclusive bound."""
    low = _num(schema.get("minimum"))
    high = _num(schema.get("maximum"))
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    # Draft 4 used booleans that modify minimum/maximum; later drafts use numbers.
    nudge: float = 1 if schema.get("type") == "integer" else 0.01
    if ex_low is True:
        low = None if low is None else low + nudge
    elif (bound := _num(ex_low)) is not None:
        low = bound + nudge if low is None else max(low, bound + nudge)
    if ex_high is True:
        high = None if high is None else high - nudge
    elif (bound := _num(ex_high)) is not None:
        high = bound - nudge if high is None else min(high, bound - nudge)
    return low, high


def _num(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
