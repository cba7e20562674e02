"""MemoryCache: least recently used entries go past max_entries; ttl; bad settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from anyapi_async.cache import Cache, MemoryCache, SQLiteCache


async def test_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"  # "a" is now the most recently used
    await cache.set("c", b"3")
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1" and await cache.get("c") == b"3"
    assert len(cache) == 2


async def test_entries_expire_after_ttl() -> None:
    cache = MemoryCache(ttl=1e-9)
    await cache.set("a", b"1")
    assert await cache.get("a") is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MemoryCache(max_entries=0), "max_entries"),
        (lambda: MemoryCache(ttl=0), "ttl"),
        (lambda: SQLiteCache("x.sqlite", ttl=-1), "ttl"),
        (lambda: SQLiteCache("x.sqlite", max_size=0), "max_size"),
        (lambda: SQLiteCache("x.sqlite", retry_interval=-1), "retry_interval"),
    ],
)
def test_bad_settings_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_the_backends_are_caches() -> None:
    assert isinstance(MemoryCache(), Cache)
    assert isinstance(SQLiteCache("x.sqlite"), Cache)
