"""`instant_retries`: retry and rate-limit waits that take no time, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import _waits

__all__ = ["instant_retries", "set_instant_retries"]


@contextlib.contextmanager
def instant_retries() -> Iterator[list[float]]:
    """Make the client's retry waits (and `RateLimiter` pauses) instant inside the block.

    Yields a list that records each wait the library asked for, in seconds, so a test can
    check the backoff or a server's ``Retry-After`` without waiting for it:

    ```python
    from anyapi_async.testing import instant_retries

    async def test_retries_after_429(client):
        with instant_retries() as waits:
            c = await client.chat.completions.create(model="m", messages=msgs)
        assert waits == [2.0]   # the server said Retry-After: 2
    ```

    The switch is process-wide (every client and task), like stamina's testing mode;
    blocks nest. Retries still happen, and each one still yields to the event loop.
    """
    waits: list[float] = []
    _waits.add_recorder(waits)
    try:
        yield waits
    finally:
        _waits.remove_recorder(waits)


def set_instant_retries(on: bool = True) -> None:
    """Make retry and rate-limit waits instant for the whole process, until turned off.

    For a test suite's ``conftest.py`` (a session-wide autouse fixture) or a script; inside
    a test, prefer the `instant_retries` block, which also records the waits.
    """
    _waits.set_instant(on)
