"""`MemoryCache`: a bounded LRU dict in this process."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

__all__ = ["DEFAULT_MAX_ENTRIES", "MemoryCache"]

#: Entries a `MemoryCache` keeps by default.
DEFAULT_MAX_ENTRIES: Final = 10_000


class MemoryCache:
    """Responses kept in this process, least recently used dropped past ``max_entries``.

    ``ttl`` (seconds, ``None``: forever) bounds how long an entry is served. Not shared
    with other processes; gone when the process ends.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, *, ttl: float | None = None,
                 namespace: str = "") -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be an int >= 1")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds, or None")
        self.max_entries = max_entries
        self.ttl = ttl
        #: Separates tenants sharing a backend: part of every key.
        self.namespace = namespace
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entries = self._entries
        found = entries.get(key)
        if found is None:
            return None
        if found[1] and found[1] < time.monotonic():
            del entries[key]
            return None
        entries.move_to_end(key)
        return found[0]

    async def set(self, key: str, value: bytes) -> None:
        entries = self._entries
        expires = time.monotonic() + self.ttl if self.ttl is not None else 0.0
        entries[key] = (value, expires)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    async def aclose(self) -> None:
        """Nothing to release (the entries stay)."""

    def clear(self) -> None:
        self._entries.clear()

    def __repr__(self) -> str:
        return f"MemoryCache(max_entries={self.max_entries}, entries={len(self._entries)})"
