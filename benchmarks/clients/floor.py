"""The floor: what a careful hand-written client costs.

One `aiohttp.ClientSession`, request bodies encoded once, SSE lines split by hand over
``resp.content.iter_any()``, every event decoded by a `msgspec.json.Decoder` into Structs
shaped like the wire objects (``gc=False``, as msgspec's performance tips advise for
Structs that cannot form cycles), and the same `Collector` work as the other clients. It
checks the status and that the stream ended with ``[DONE]``; it has no retries, no
timeouts beyond aiohttp's defaults and no error mapping.
"""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec

from ..collect import Collector, completion_outcome
from ..payloads import Outcome, Route
from ..scenarios import request_params

__all__ = ["FloorClient", "make"]


class TopLogprob(msgspec.Struct, gc=False):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(msgspec.Struct, gc=False):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class Logprobs(msgspec.Struct, gc=False):
    content: list[TokenLogprob] | None = None


class FunctionDelta(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, gc=False):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, gc=False):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct, gc=False):
    index: int
    delta: Delta
    logprobs: Logprobs | None = None
    finish_reason: str | None = None


class Usage(msgspec.Struct, gc=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Chunk(msgspec.Struct, gc=False):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None
    usage: Usage | None = None


class Function(msgspec.Struct, gc=False):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, gc=False):
    id: str
    type: str
    function: Function


class Message(msgspec.Struct, gc=False):
    role: str
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(msgspec.Struct, gc=False):
    index: int
    message: Message
    logprobs: Logprobs | None = None
    finish_reason: str | None = None


class Completion(msgspec.Struct, gc=False):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    system_fingerprint: str | None = None
    usage: Usage | None = None


_chunk_decoder = msgspec.json.Decoder(Chunk)
_completion_decoder = msgspec.json.Decoder(Completion)


class FloorClient:
    """The floor client."""

    def __init__(self, base_url: str, *, cap: int | None, pool: int) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool))
        self._url = base_url + "/chat/completions"
        self._headers = {
            "Authorization": "Bearer sk-benchmark",
            "Content-Type": "application/json",
        }
        self._stream_headers = {**self._headers, "Accept": "text/event-stream"}
        self._bodies: dict[str, bytes] = {}
        self._cap = asyncio.Semaphore(cap) if cap else None
        self.cap = "asyncio.Semaphore" if cap else "none"

    def _body(self, route: Route) -> bytes:
        body = self._bodies.get(route.name)
        if body is None:
            body = self._bodies[route.name] = msgspec.json.encode(request_params(route))
        return body

    async def complete(self, route: Route) -> Outcome:
        if self._cap is None:
            return await self._complete(route)
        async with self._cap:
            return await self._complete(route)

    async def _complete(self, route: Route) -> Outcome:
        async with self._session.post(
            self._url, data=self._body(route), headers=self._headers
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            body = await resp.read()
        return completion_outcome(_completion_decoder.decode(body))

    async def stream(self, route: Route) -> tuple[Outcome, float]:
        collector = Collector()
        add = collector.add
        decode = _chunk_decoder.decode
        done = False
        async with self._session.post(
            self._url, data=self._body(route), headers=self._stream_headers
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            rest = b""
            async for data in resp.content.iter_any():
                if rest:
                    data = rest + data
                lines = data.split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if line[:6] != b"data: " or done:
                        continue
                    payload = line[6:]
                    if payload == b"[DONE]":
                        done = True
                        continue
                    add(decode(payload))
        if not done:
            raise RuntimeError("the stream ended without [DONE]")
        return collector.outcome(), collector.first

    async def aclose(self) -> None:
        await self._session.close()


def make(name: str, base_url: str, *, cap: int | None, pool: int) -> FloorClient:
    """Build the floor client."""
    return FloorClient(base_url, cap=cap, pool=pool)
