"""Settings as values: `Timeout` and the "not given" marker."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, TypeVar, Union

import msgspec

__all__ = [
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "Limits",
    "NotGiven",
    "Timeout",
    "TimeoutTypes",
    "transport_form",
]

#: The connection pool's size, and how long an idle pooled connection is kept (seconds).
DEFAULT_MAX_CONNECTIONS: Final = 100
DEFAULT_KEEPALIVE_TIMEOUT: Final = 30.0

T = TypeVar("T")


#: Marks an argument the caller did not pass, where ``None`` has a meaning of its own.
#: It is msgspec's ``UNSET``, so a field left at it is also left out of the encoded JSON.
NotGiven = msgspec.UnsetType
NOT_GIVEN: Final = msgspec.UNSET

_LIMITS = ("connect", "read", "first_event", "idle", "total")


class Timeout:
    """Timeout limits in seconds; ``None`` switches a limit off.

    | Limit | What it bounds |
    | --- | --- |
    | `connect` | opening the TCP (and TLS) connection |
    | `read` | silence between two bytes (a stream: while it waits); a non-streamed body |
    | `first_event` | until the response headers, and for a stream its first event |
    | `idle` | silence before and between stream events (comments and pings are no events) |
    | `total` | the whole call: a slot wait, every attempt and backoff, reading a stream |

    All but `total` apply to each attempt afresh.

    ``Timeout(30)`` sets ``connect``, ``read`` and ``idle`` to 30 s and leaves ``total``
    and ``first_event`` off, so a long stream that keeps producing tokens is never cut,
    while a silent or stalled one fails within 30 s. Any limit can be set on its own:

    ```python
    Timeout(30, total=120)       # as above, and 2 minutes at most in all
    Timeout(connect=5, idle=20)  # only these two limits
    ```
    """

    __slots__ = ("_transport_form", "connect", "first_event", "idle", "read", "total")

    def __init__(
        self,
        timeout: float | NotGiven | None = NOT_GIVEN,
        *,
        connect: float | NotGiven | None = NOT_GIVEN,
        read: float | NotGiven | None = NOT_GIVEN,
        first_event: float | NotGiven | None = NOT_GIVEN,
        idle: float | NotGiven | None = NOT_GIVEN,
        total: float | NotGiven | None = NOT_GIVEN,
    ) -> None:
        base = None if isinstance(timeout, NotGiven) else timeout
        self.connect = _pick(connect, base, "connect")
        self.read = _pick(read, base, "read")
        self.idle = _pick(idle, base, "idle")
        self.first_event = _pick(first_event, None, "first_event")
        self.total = _pick(total, None, "total")
        self._transport_form: Any = None  # see transport_form()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and all(
            getattr(self, k) == getattr(other, k) for k in _LIMITS
        )

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in _LIMITS))

    def __repr__(self) -> str:
        values = {k: getattr(self, k) for k in _LIMITS}
        if values["connect"] == values["read"] == values["idle"] is not None:
            parts = [repr(values["connect"])]
            parts += [f"{k}={values[k]!r}" for k in ("first_event", "total") if values[k]]
        else:
            parts = [f"{k}={v!r}" for k, v in values.items() if v is not None]
        return f"Timeout({', '.join(parts)})"

    @classmethod
    def coerce(cls, value: TimeoutTypes) -> Timeout:
        """A `Timeout` from a number, ``None`` (no limits) or a `Timeout`."""
        if isinstance(value, Timeout):
            return value
        if value is None or isinstance(value, (int, float)):
            return cls(value)
        raise TypeError(f"timeout must be a number, None or a Timeout, not {type(value).__name__}")


def _pick(value: float | NotGiven | None, default: float | None, name: str) -> float | None:
    if isinstance(value, NotGiven):
        value = default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Timeout {name} must be a number of seconds or None")
    if not value > 0:
        raise ValueError(f"Timeout {name} must be > 0 seconds, got {value!r}")
    return float(value)


TimeoutTypes = Union[float, int, None, Timeout]

#: The client's default: `Timeout(60)`.
DEFAULT_TIMEOUT: Final = Timeout(60.0)


class Limits:
    """The connection pool's limits, as one value (the client's keyword arguments of the
    same names still work).

    | Limit | Meaning |
    | --- | --- |
    | `max_connections` | connections open at once, to all hosts (100) |
    | `max_connections_per_host` | connections open at once to one host (0: no cap of its own) |
    | `keepalive_timeout` | seconds an idle connection stays in the pool (30) |

    ```python
    client = AsyncClient(limits=Limits(max_connections=200, keepalive_timeout=60))
    ```

    The pool bounds connections; `AsyncClient(max_concurrency=...)` bounds requests in
    flight (streams included), which is usually the limit to set.
    """

    __slots__ = ("keepalive_timeout", "max_connections", "max_connections_per_host")

    def __init__(
        self,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        *,
        max_connections_per_host: int = 0,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
    ) -> None:
        for name, value in (
            ("max_connections", max_connections),
            ("max_connections_per_host", max_connections_per_host),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if max_connections == 0:
            raise ValueError("max_connections must be >= 1")
        if isinstance(keepalive_timeout, bool) or not isinstance(keepalive_timeout, (int, float)):
            raise TypeError(
                "keepalive_timeout must be a number of seconds, "
                f"not {type(keepalive_timeout).__name__}"
            )
        if not 0 <= keepalive_timeout < math.inf:  # NaN fails this too
            raise ValueError(
                f"keepalive_timeout must be >= 0 and finite, got {keepalive_timeout!r}"
            )
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.keepalive_timeout = float(keepalive_timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limits) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in self.__slots__))

    def __repr__(self) -> str:
        return (
            f"Limits(max_connections={self.max_connections}, "
            f"max_connections_per_host={self.max_connections_per_host}, "
            f"keepalive_timeout={self.keepalive_timeout})"
        )


def transport_form(timeout: Timeout, make: Callable[[Timeout], T]) -> T:
    """Package seam for the transport: ``make(timeout)``, built once per `Timeout` and kept
    on it (a client sends every request with the same few Timeout objects)."""
    form: T | None = timeout._transport_form
    if form is None:
        form = timeout._transport_form = make(timeout)
    return form
