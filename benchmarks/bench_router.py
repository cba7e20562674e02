"""Client CPU per request through a `Router` against the same client alone.

Run: ``python -m benchmarks.bench_router [--reps 5] [--requests 2000] [--offline 5000]``.

The benchmark server (``benchmarks/server.py``) runs in its own process. Per repetition and
in a rotated order, each variant makes its measured phase of non-streamed completions at
concurrency 1: ``plain`` (one `AsyncClient`), ``router`` (a `Router` of that client alone),
``router-3`` (three routes over three clients, the first answering, with a ``model`` set
so the body's model is swapped on every call) and ``router-hedge`` (``router-3`` with a
`Hedge` that never fires: the task per call it costs). Case ``completion`` goes through the
socket; ``completion-offline`` through a transport that hands back a prebuilt response,
so the router's own CPU shows without the network's noise. CPU is
``time.process_time()`` per request; figures are medians over repetitions, ratios are to
``plain`` of the same repetitions. The target: ``router`` and ``router-3`` within 1.15x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import anyapi_async
from anyapi_async import Hedge, Route, Router

from .payloads import ROUTES, completion_body
from .scenarios import request_params
from .server import spawn

VARIANTS = ("plain", "router", "router-3", "router-hedge")
CASES = ("completion", "completion-offline")
TARGET = 1.15
OFFLINE_URL = "http://127.0.0.1:9/v1"  # never connected to: the transport below answers


class PrebuiltResponse:
    """What the client reads of a 200 response, from memory."""

    status = 200
    url = OFFLINE_URL + "/chat/completions"
    content_type = "application/json"

    def __init__(self, body: bytes, headers: Any) -> None:
        self.body = body
        self.headers = headers

    async def read(self, limit: int = 0) -> bytes:
        return self.body


class PrebuiltTransport:
    """A `Transport` answering every request with the same completion, without a socket."""

    def __init__(self) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self.response = PrebuiltResponse(
            json.dumps(completion_body(ROUTES["completion"])).encode(),
            CIMultiDictProxy(
                CIMultiDict({"Content-Type": "application/json", "x-request-id": "req_1"})
            ),
        )

    async def send(self, request: Any) -> Any:
        return self.response

    async def aclose(self) -> None:
        pass


def _clients(base_url: str, offline: bool) -> list[anyapi_async.AsyncClient]:
    return [
        anyapi_async.AsyncClient(
            api_key="sk-benchmark",
            base_url=OFFLINE_URL if offline else base_url,
            transport=PrebuiltTransport() if offline else None,
        )
        for _ in range(3)
    ]


def _targets(clients: list[anyapi_async.AsyncClient]) -> dict[str, Any]:
    a, b, c = clients
    model = request_params(ROUTES["completion"])["model"]
    three = [Route(a, model=model, name="a"), Route(b, name="b"), Route(c, name="c")]
    return {
        "plain": a,
        "router": Router([Route(a, name="a")]),
        "router-3": Router(three),
        "router-hedge": Router(
            [Route(a, model=model, name="a"), Route(b, name="b"), Route(c, name="c")],
            hedge=Hedge(after=30.0, max_extra=0.1),
        ),
    }


async def _completions(target: Any, n: int) -> int:
    params = request_params(ROUTES["completion"])
    for _ in range(n):
        completion = await target.chat.completions.create(**params)
        assert completion.choices
    return n


async def _phase(target: Any, n: int) -> float:
    await _completions(target, max(1, n // 10))
    started = time.process_time()
    units = await _completions(target, n)
    return (time.process_time() - started) / units * 1e6


async def _session(base_url: str, reps: int, requests: int, offline: int) -> dict[str, Any]:
    live = _clients(base_url, False)
    stub = _clients(base_url, True)
    targets = {"completion": _targets(live), "completion-offline": _targets(stub)}
    results: dict[str, dict[str, list[float]]] = {case: {v: [] for v in VARIANTS} for case in CASES}
    try:
        for rep in range(reps):
            order = VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)]
            for case, n in zip(CASES, (requests, offline), strict=True):
                for variant in order:
                    results[case][variant].append(await _phase(targets[case][variant], n))
            print(f"rep {rep + 1}/{reps} done", file=sys.stderr)
    finally:
        for client in (*live, *stub):
            await client.aclose()
    return results


def summarize(results: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for case, variants in results.items():
        plain = statistics.median(variants["plain"])
        for variant, runs in variants.items():
            median = statistics.median(runs)
            ratios = [r / p for r, p in zip(runs, variants["plain"], strict=True)]
            rows.append(
                {
                    "case": case,
                    "variant": variant,
                    "cpu_us": round(median, 2),
                    "ratio": round(median / plain, 3),
                    "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                    "target": TARGET if variant in ("router", "router-3") else None,
                    "runs": [round(r, 2) for r in runs],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per live phase")
    parser.add_argument("--offline", type=int, default=5000, help="calls per offline phase")
    args = parser.parse_args(argv)
    proc, port = spawn()
    try:
        results = asyncio.run(
            _session(f"http://127.0.0.1:{port}/v1", args.reps, args.requests, args.offline)
        )
    finally:
        proc.terminate()
        proc.wait(10)
    for row in summarize(results):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
