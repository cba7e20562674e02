"""Failover under a scripted fault schedule: one client alone, the router, the router with
hedging, and litellm's ``Router``, side by side in one run.

Run: ``python -m benchmarks.bench_failover [--requests 2000] [--concurrency 32]
[--litellm-python /tmp/litellm-venv/bin/python]``.

Three endpoints (``benchmarks/failover_server.py``, its own process): ``down`` answers 503
for a window of the run, ``slow`` has a slow tail, ``limited`` answers some requests 429
with ``Retry-After: 1``. Routes are tried in that order. Before each variant the endpoints'
clock and counters are reset. Reported per variant: success rate, p50/p99 latency of the
successes, extra requests (requests the endpoints received beyond one per call) and client
CPU per request (``time.process_time()`` of the process making the calls;
``healthy``, one client on a fourth endpoint with no fault, is the reference; litellm runs in
its own interpreter, from ``--litellm-python``, as it is an optional benchmark dependency
only). One JSON line per variant on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyapi_async
from anyapi_async import CircuitBreaker, Hedge, Route, Router

ROOT = Path(__file__).resolve().parent.parent
LITELLM_SCRIPT = ROOT / "benchmarks" / "failover_litellm.py"


def _post(port: int, path: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as response:
        result: dict[str, int] = json.loads(response.read())
    return result


async def _run(target: Any, n: int, concurrency: int) -> dict[str, Any]:
    messages: list[anyapi_async.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with semaphore:
            started = time.perf_counter()
            try:
                await target.chat.completions.create(model="m", messages=messages, max_tokens=5)
            except anyapi_async.APIError:
                failures += 1
            else:
                latencies.append(time.perf_counter() - started)

    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    return {"latencies": latencies, "failures": failures, "cpu": time.process_time() - cpu}


async def _ours(variant: str, ports: list[int], n: int, concurrency: int) -> dict[str, Any]:
    clients = [
        anyapi_async.AsyncClient(
            api_key="sk-benchmark", base_url=f"http://127.0.0.1:{port}/v1"
        )
        for port in ports
    ]
    try:
        target: Any
        if variant == "client":
            target = clients[0]
        elif variant == "healthy":
            target = clients[3]
        else:
            names = ("down", "slow", "limited")
            routes = [Route(c, name=name) for c, name in zip(clients, names, strict=False)]
            hedge = Hedge(after="p95", max_extra=0.1) if variant == "router-hedge" else None
            target = Router(routes, breaker=CircuitBreaker(failures=5, cooldown=1.0), hedge=hedge)
        _post(ports[0], "/_reset")  # the schedule starts with the calls
        result = await _run(target, n, concurrency)
        if isinstance(target, Router):
            result["hedges"] = target.hedges
        return result
    finally:
        for client in clients:
            await client.aclose()


def _litellm(python: str, ports: list[int], n: int, concurrency: int) -> dict[str, Any]:
    proc = subprocess.run(
        [python, str(LITELLM_SCRIPT), *map(str, ports[:3]),
         str(n), str(concurrency)],
        capture_output=True, text=True, timeout=3600, check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--litellm-python", default=None, help="a Python with litellm")
    args = parser.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.failover_server"], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert server.stdout is not None
    ports: list[int] = json.loads(server.stdout.readline())["ports"]
    variants = ["healthy", "client", "router", "router-hedge"]
    if args.litellm_python:
        variants.append("litellm")
    try:
        for variant in variants:
            started = time.perf_counter()
            if variant == "litellm":
                result = _litellm(args.litellm_python, ports, args.requests, args.concurrency)
            else:
                result = asyncio.run(_ours(variant, ports, args.requests, args.concurrency))
            wall = time.perf_counter() - started
            received = _stats(ports[0])
            latencies = result["latencies"]
            row = {
                "variant": variant,
                "requests": args.requests,
                "success_rate": round(len(latencies) / args.requests, 4),
                "p50_ms": round((_quantile(latencies, 0.50) or 0) * 1000, 1),
                "p99_ms": round((_quantile(latencies, 0.99) or 0) * 1000, 1),
                "extra_requests": sum(received.values()) - args.requests,
                "received": received,
                "cpu_ms_per_request": round(result["cpu"] / args.requests * 1000, 3),
                "hedges": result.get("hedges"),
                "wall_s": round(wall, 2),
                "median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            }
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
