"""The benchmark cases: which route, how many at once, what is measured. Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .payloads import ROUTES, Route

__all__ = [
    "CLIENTS",
    "FANOUT_CAP",
    "SCENARIOS",
    "STREAM_CLIENTS",
    "Scenario",
    "request_params",
]

#: Every client, the floor first. ``anyapi-helper`` only runs streaming scenarios.
CLIENTS = ("floor", "anyapi", "anyapi-helper", "openai", "openai-aiohttp")
STREAM_CLIENTS = CLIENTS
COMPLETION_CLIENTS = ("floor", "anyapi", "openai", "openai-aiohttp")
#: The client-side concurrency cap of the fan-out scenario.
FANOUT_CAP = 64
#: Connection-pool size given to every client (openai's default; aiohttp's is 100), so the
#: 1,000-concurrent-streams case really has 1,000 streams open.
POOL_SIZE = 1000

Mode = Literal["cpu", "ttfc", "fanout", "concurrent"]


@dataclass(frozen=True)
class Scenario:
    """One case. ``count``/``quick_count`` fix the number of requests; 0 means calibrated."""

    name: str
    route: str
    title: str
    mode: Mode = "cpu"
    concurrency: int = 1
    count: int = 0
    quick_count: int = 0
    in_quick: bool = True
    warmup_route: str = ""

    @property
    def spec(self) -> Route:
        return ROUTES[self.route]

    @property
    def unit(self) -> str:
        """What CPU time is divided by: ``chunk`` for streams, ``request`` otherwise."""
        return "chunk" if self.spec.stream and self.mode != "fanout" else "request"

    @property
    def clients(self) -> tuple[str, ...]:
        return STREAM_CLIENTS if self.spec.stream else COMPLETION_CLIENTS

    def requests(self, quick: bool) -> int:
        return self.quick_count if quick and self.quick_count else self.count


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("completion-c1", "completion", "Non-streaming, concurrency 1"),
        Scenario("completion-c64", "completion", "Non-streaming, concurrency 64", concurrency=64),
        Scenario(
            "completion-logprobs",
            "completion-logprobs",
            "Non-streaming, 200 tokens with logprobs (top_logprobs=5)",
        ),
        Scenario("stream-c1", "stream", "Stream of 1,000 chunks, concurrency 1"),
        Scenario("stream-c16", "stream", "Streams of 1,000 chunks, concurrency 16", concurrency=16),
        Scenario(
            "stream-logprobs-c1",
            "stream-logprobs",
            "Stream of 1,000 chunks with logprobs (top_logprobs=5), concurrency 1",
        ),
        Scenario(
            "stream-logprobs-c16",
            "stream-logprobs",
            "Streams of 1,000 chunks with logprobs, concurrency 16",
            concurrency=16,
            in_quick=False,
        ),
        Scenario(
            "stream-tools", "stream-tools", "Tool-call stream: 2 calls, arguments in 996 fragments"
        ),
        Scenario(
            "stream-paced",
            "stream-paced",
            "Paced stream (one event every 2 ms, 500 chunks), concurrency 1",
            count=4,
            quick_count=1,
            warmup_route="ttfc",
        ),
        Scenario(
            "ttfc",
            "ttfc",
            "Time to first chunk (8-chunk stream, later events 1 ms apart), sequential",
            mode="ttfc",
            count=300,
            quick_count=60,
        ),
        Scenario(
            "fanout-10k",
            "completion",
            f"Fan-out: 10,000 requests at once through a cap of {FANOUT_CAP}",
            mode="fanout",
            concurrency=FANOUT_CAP,
            count=10_000,
            quick_count=2_000,
        ),
        Scenario(
            "streams-1000",
            "stream-concurrent",
            "1,000 concurrent streams (20 chunks, one every 25 ms)",
            mode="concurrent",
            concurrency=1000,
            count=1000,
            warmup_route="ttfc",
        ),
    )
}

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer at length."},
    {"role": "user", "content": "Tell me a long story about tokens travelling through a stream."},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "create_order",
            "description": "Create an order with its line items.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "currency": {"type": "string", "enum": ["EUR", "USD"]},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string"},
                                "name": {"type": "string"},
                                "qty": {"type": "integer"},
                                "price": {"type": "number"},
                            },
                            "required": ["sku", "qty"],
                        },
                    },
                },
                "required": ["order_id", "items"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_stock",
            "description": "Stock levels of the given items.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
]


def request_params(route: Route) -> dict[str, Any]:
    """The ``create()`` keyword arguments for ``route``; the server routes on ``model``."""
    params: dict[str, Any] = {"model": route.name, "messages": MESSAGES}
    if route.logprobs:
        params["logprobs"] = True
        params["top_logprobs"] = 5
    if route.tools:
        params["tools"] = TOOLS
        params["tool_choice"] = "auto"
    if route.stream:
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
    return params
