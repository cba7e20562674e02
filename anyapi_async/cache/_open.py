"""`open_cache`: a backend from one string, as ``--cache`` and the Ray stage take it."""

from __future__ import annotations

from ._base import Cache
from ._redis import RedisCache
from ._sqlite import SQLiteCache

__all__ = ["open_cache"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_cache(where: str, *, ttl: float | None = None) -> Cache:
    """A `RedisCache` for a ``redis://``, ``rediss://`` or ``unix://`` URL, else a
    `SQLiteCache` at the path ``where`` (``~`` expanded)."""
    if not isinstance(where, str) or not where.strip():
        raise ValueError(f"a cache is a file path or a redis:// URL, not {where!r}")
    if where.startswith(_REDIS_SCHEMES):
        return RedisCache(where, ttl)
    return SQLiteCache(where, ttl)
