"""What "a snapshot only grows" means, for the partial-object tests."""

from __future__ import annotations

from typing import Any


def grows(old: Any, new: Any) -> bool:
    """Whether ``new`` extends ``old``: same keys in the same order plus more, longer
    lists and strings, and every scalar unchanged."""
    if isinstance(old, dict):
        if not isinstance(new, dict) or list(new)[: len(old)] != list(old):
            return False
        return all(grows(value, new[key]) for key, value in old.items())
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) < len(old):
            return False
        return all(grows(a, b) for a, b in zip(old, new, strict=False))
    if isinstance(old, str):
        return isinstance(new, str) and new.startswith(old)
    return type(old) is type(new) and old == new


def strings_in(value: Any) -> list[str]:
    """Every string value (not key) in ``value``, depth first."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []
