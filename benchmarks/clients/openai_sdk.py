"""The official ``openai`` SDK: `AsyncOpenAI` with its default httpx transport or with aiohttp.

Streams use the raw ``create(stream=True)`` path, the SDK's cheapest. The SDK has no
client-wide concurrency cap, so the fan-out goes through an `asyncio.Semaphore`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai

from ..collect import Collector, completion_outcome
from ..payloads import Outcome, Route
from ..scenarios import request_params

__all__ = ["OpenAIClient", "make"]


class OpenAIClient:
    """``AsyncOpenAI`` (default settings: 2 retries, its own connection limits)."""

    def __init__(self, base_url: str, *, aiohttp: bool, cap: int | None) -> None:
        kwargs: dict[str, Any] = {}
        if aiohttp:
            kwargs["http_client"] = openai.DefaultAioHttpClient()
        self._client = openai.AsyncOpenAI(api_key="sk-benchmark", base_url=base_url, **kwargs)
        self._params: dict[str, dict[str, Any]] = {}
        self._cap = asyncio.Semaphore(cap) if cap else None
        self.cap = "asyncio.Semaphore" if cap else "none"

    def _kwargs(self, route: Route) -> dict[str, Any]:
        params = self._params.get(route.name)
        if params is None:
            params = self._params[route.name] = request_params(route)
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

    async def aclose(self) -> None:
        await self._client.close()


def make(name: str, base_url: str, *, cap: int | None, pool: int) -> OpenAIClient:
    """Build ``openai`` or ``openai-aiohttp`` (``pool``: the SDK's default of 1,000 is kept)."""
    return OpenAIClient(base_url, aiohttp=name == "openai-aiohttp", cap=cap)
