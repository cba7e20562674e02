"""The one wait behind retry and rate-limit pauses, the switch that makes it instant, and
``async with timeout_after(seconds):`` (asyncio.timeout, or async_timeout before 3.11).

`anyapi_async.testing.instant_retries` flips the switch for users' tests; the retry loop
(`_retry`) and the rate limiter (`_ratelimit`) wait through `sleep`, so nothing is patched.
"""

from __future__ import annotations

import asyncio
import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout as timeout_after
else:  # pragma: no cover - exercised on 3.10 only
    from async_timeout import timeout as timeout_after

__all__ = [
    "add_recorder",
    "is_instant",
    "remove_recorder",
    "set_instant",
    "sleep",
    "timeout_after",
]

_always = False
# One list per active `instant_retries()` block; each records every wait asked for.
_recorders: list[list[float]] = []


async def sleep(delay: float) -> None:
    """Wait ``delay`` seconds; while waits are instant, record it and only yield."""
    if _always or _recorders:
        for recorder in _recorders:
            recorder.append(delay)
        await asyncio.sleep(0)  # still a suspension point, as a real wait is
        return
    await asyncio.sleep(delay)


def is_instant() -> bool:
    """Whether retry and rate-limit waits are instant right now."""
    return _always or bool(_recorders)


def set_instant(on: bool) -> None:
    """Make waits instant (or real again) for the whole process."""
    global _always
    _always = on


def add_recorder(recorder: list[float]) -> None:
    """Make waits instant until `remove_recorder`, recording each into ``recorder``."""
    _recorders.append(recorder)


def remove_recorder(recorder: list[float]) -> None:
    for i in range(len(_recorders) - 1, -1, -1):
        if _recorders[i] is recorder:
            del _recorders[i]
            return
