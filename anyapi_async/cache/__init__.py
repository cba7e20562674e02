"""Response caches: where `AsyncClient(cache=...)` keeps whole successful responses.

```python
from anyapi_async import AsyncClient
from anyapi_async.cache import SQLiteCache

client = AsyncClient(cache=SQLiteCache("~/.cache/anyapi/responses.sqlite"))
```

`MemoryCache` (one process, LRU), `SQLiteCache` (one file, several processes) and
`RedisCache` (shared by many machines; extra ``[redis]``) are backends of the client's
cache step; anything with the three methods of `Cache` is one too. See docs/cache.md.
"""

from __future__ import annotations

from ._base import DEFAULT_RETRY_INTERVAL, Cache, CacheUnavailableError
from ._memory import DEFAULT_MAX_ENTRIES, MemoryCache
from ._open import open_cache
from ._redis import RedisCache
from ._sqlite import DEFAULT_MAX_SIZE, SQLiteCache

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_RETRY_INTERVAL",
    "Cache",
    "CacheUnavailableError",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "open_cache",
]

for _name in ("Cache", "CacheUnavailableError", "MemoryCache", "RedisCache", "SQLiteCache",
              "open_cache"):
    globals()[_name].__module__ = __name__
del _name
