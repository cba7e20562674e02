"""Batch fixtures: a fake clock, a local server and a client with instant retry waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


class FakeClock:
    """A clock that moves only when something sleeps on it; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock at 0."""
    return FakeClock()


def batch_tasks() -> list[asyncio.Task[object]]:
    """The batch's request tasks still alive on this loop."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("anyapi-batch-")]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition another task or process makes true (polling, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
