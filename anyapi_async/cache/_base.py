"""The `Cache` protocol every backend implements, and the back-off shared by the built-ins."""

from __future__ import annotations

import time
from typing import Final, Protocol, runtime_checkable

__all__ = ["DEFAULT_RETRY_INTERVAL", "Backoff", "Cache", "CacheUnavailableError"]

#: Seconds a failed backend is left alone before it is tried again.
DEFAULT_RETRY_INTERVAL: Final = 5.0


@runtime_checkable
class Cache(Protocol):
    """What the client's cache step needs from a backend: opaque bytes under string keys.

    Keys are hex digests the client makes (namespace included); values are bytes the
    client encodes and decodes itself, so a backend never looks inside them. A backend may
    raise on any fault: the client logs one warning, treats the call as a miss and sends
    it to the server. ``aclose`` lets go of connections; the backend must work again if
    used after it (one backend may be shared by several clients).
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or ``None``."""
        ...

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any)."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...


class CacheUnavailableError(Exception):
    """A backend that failed recently is being left alone (see ``retry_interval``)."""


class Backoff:
    """After a failure, refuse at once for ``interval`` seconds instead of paying a connect
    timeout (or a corrupt file's open) on every call; then try again."""

    __slots__ = ("interval", "until")

    def __init__(self, interval: float) -> None:
        if interval < 0:
            raise ValueError("retry_interval must be >= 0")
        self.interval = interval
        self.until = 0.0

    def check(self, what: str) -> None:
        if self.until and time.monotonic() < self.until:
            raise CacheUnavailableError(f"{what} failed recently; retrying it later")

    def failed(self) -> None:
        self.until = time.monotonic() + self.interval

    def ok(self) -> None:
        self.until = 0.0
