"""`RedisCache`: responses shared by every process and machine that reaches one Redis.

redis-py (extra ``[redis]``) is imported when the cache is first used, not before.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from ._base import DEFAULT_RETRY_INTERVAL, Backoff

__all__ = ["RedisCache"]

_PREFIX: Final = "anyapi:"
#: Seconds to connect and to wait for an answer: a cache must not slow calls down much.
_SOCKET_TIMEOUT: Final = 1.0


class RedisCache:
    """Responses kept in Redis (``redis://HOST:PORT/DB``, ``rediss://`` for TLS).

    ``ttl`` (seconds, ``None``: forever, or Redis's own eviction policy) is set on each
    entry. An unreachable server never fails a call: the client warns once and sends
    calls to the server, trying Redis again every ``retry_interval`` seconds. Needs
    ``pip install 'anyapi-async[redis]'``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        ttl: float | None = None,
        *,
        namespace: str = "",
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        socket_timeout: float = _SOCKET_TIMEOUT,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis://, rediss:// or unix:// URL")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds, or None")
        self.url = url
        self.ttl = ttl
        #: Separates tenants sharing a server: part of every key.
        self.namespace = namespace
        self.socket_timeout = socket_timeout
        self._backoff = Backoff(retry_interval)
        # redis-py's asyncio client belongs to the loop it connected from.
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> Any:
        self._backoff.check(f"Redis at {self._where()}")
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            try:
                import redis.asyncio
            except ImportError as exc:
                raise ImportError(
                    "RedisCache needs redis-py: pip install 'anyapi-async[redis]'"
                ) from exc
            self._client = redis.asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=self.socket_timeout,
                socket_timeout=self.socket_timeout,
            )
            self._loop = loop
        return self._client

    def _where(self) -> str:
        # Host and port only: a URL may carry a password.
        rest = self.url.split("://", 1)[-1]
        return rest.rpartition("@")[2].split("/", 1)[0]

    async def get(self, key: str) -> bytes | None:
        try:
            value: bytes | None = await self._redis().get(_PREFIX + key)
        except ImportError:
            raise
        except Exception:
            self._backoff.failed()
            raise
        self._backoff.ok()
        return value

    async def set(self, key: str, value: bytes) -> None:
        try:
            await self._redis().set(
                _PREFIX + key, value, px=int(self.ttl * 1000) if self.ttl is not None else None
            )
        except ImportError:
            raise
        except Exception:
            self._backoff.failed()
            raise
        self._backoff.ok()

    async def aclose(self) -> None:
        """Close the connection pool (used again, it connects again)."""
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            close = getattr(client, "aclose", None) or client.close
            await close()

    def __repr__(self) -> str:
        return f"RedisCache({self._where()!r}, ttl={self.ttl!r})"
