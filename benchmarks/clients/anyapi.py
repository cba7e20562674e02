"""``anyapi_async``: the raw ``create(stream=True)`` path and the ``stream()`` helper.

The fan-out cap is the client's own ``AsyncClient(max_concurrency=N)`` when the constructor
takes it, else an `asyncio.Semaphore` (``cap`` records which).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import anyapi_async

from ..collect import Collector, completion_outcome
from ..payloads import Outcome, Route
from ..scenarios import request_params

__all__ = ["AnyapiClient", "make"]


class AnyapiClient:
    """``anyapi_async.AsyncClient``; ``helper=True`` streams through ``text_deltas()``."""

    def __init__(self, base_url: str, *, helper: bool, cap: int | None, pool: int) -> None:
        kwargs: dict[str, Any] = {}
        accepted = inspect.signature(anyapi_async.AsyncClient).parameters
        if "max_connections" in accepted:
            kwargs["max_connections"] = pool
        self._cap: asyncio.Semaphore | None = None
        self.cap = "none"
        if cap and "max_concurrency" in accepted:
            kwargs["max_concurrency"] = cap
            self.cap = "AsyncClient(max_concurrency)"
        elif cap:
            self._cap = asyncio.Semaphore(cap)
            self.cap = "asyncio.Semaphore"
        self._client = anyapi_async.AsyncClient(api_key="sk-benchmark", base_url=base_url, **kwargs)
        self._params: dict[tuple[str, bool], dict[str, Any]] = {}
        if helper:
            self.stream = self._stream_helper  # type: ignore[method-assign]

    def _kwargs(self, route: Route, *, helper: bool = False) -> dict[str, Any]:
        key = (route.name, helper)
        params = self._params.get(key)
        if params is None:
            params = self._params[key] = request_params(route)
            if helper:
                del params["stream"]  # stream() implies it
        return params

    async def complete(self, route: Route) -> Outcome:
        create = self._client.chat.completions.create
        if self._cap is None:
            return completion_outcome(await create(**self._kwargs(route)))
        async with self._cap:
            return completion_outcome(await create(**self._kwargs(route)))

    async def stream(self, route: Route) -> tuple[Outcome, float]:
        collector = Collector()
        add = collector.add
        stream = await self._client.chat.completions.create(**self._kwargs(route))
        async with stream:
            async for chunk in stream:
                add(chunk)
        return collector.outcome(), collector.first

    async def _stream_helper(self, route: Route) -> tuple[Outcome, float]:
        params = self._kwargs(route, helper=True)
        texts: list[str] = []
        first = 0.0
        async with self._client.chat.completions.stream(**params) as s:
            async for text in s.text_deltas():
                if not first:
                    first = time.perf_counter()
                texts.append(text)
            final = await s.get_final_completion()
        outcome = completion_outcome(final)
        text = "".join(texts)
        if text != outcome.text:
            raise AssertionError("text_deltas() and get_final_completion() disagree")
        return outcome, first or time.perf_counter()

    async def aclose(self) -> None:
        await self._client.aclose()


def make(name: str, base_url: str, *, cap: int | None, pool: int) -> AnyapiClient:
    """Build ``anyapi`` or ``anyapi-helper``."""
    return AnyapiClient(base_url, helper=name == "anyapi-helper", cap=cap, pool=pool)
