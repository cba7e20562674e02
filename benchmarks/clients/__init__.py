"""The clients under test, one module each; `make` imports only the one asked for."""

from __future__ import annotations

import importlib
from typing import Protocol

from ..payloads import Outcome, Route

__all__ = ["BenchClient", "make"]

_MODULES = {
    "floor": "floor",
    "anyapi": "anyapi",
    "anyapi-helper": "anyapi",
    "openai": "openai_sdk",
    "openai-aiohttp": "openai_sdk",
}


class BenchClient(Protocol):
    """What the worker drives. ``cap`` says how the fan-out cap is enforced."""

    cap: str

    async def complete(self, route: Route) -> Outcome:
        """One non-streaming request, through the cap if there is one."""
        ...

    async def stream(self, route: Route) -> tuple[Outcome, float]:
        """One stream read to its end; also the ``perf_counter()`` of its first chunk."""
        ...

    async def aclose(self) -> None: ...


def make(name: str, base_url: str, *, cap: int | None, pool: int) -> BenchClient:
    """Build client ``name`` (inside a running loop) for ``base_url``."""
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    client: BenchClient = module.make(name, base_url, cap=cap, pool=pool)
    return client
