"""Client CPU of a response-cache hit against a plain request, and a job rerun from the cache.

Run: ``python -m benchmarks.bench_cache [--reps 5] [--requests 2000] [--streams 20]
[--job-lines 10000]``.

One process: the benchmark server (``benchmarks/server.py``, the floor server) in its own
process, then per repetition, in a rotated order, each variant's measured phase: ``plain``
(a client without a cache: every call is a request), ``memory-hit`` (a `MemoryCache` holding
the answer: every call is a hit), ``sqlite-hit`` (the same with a `SQLiteCache` file) and
``sqlite-miss`` (every call ``cache="refresh"``: sent, then written to the file; what a
miss costs on top of a request).
Cases: ``completion`` (non-streamed, 100 tokens, concurrency 1) and ``stream`` (a
1,000-chunk stream read to its end: a live stream against a replayed one). CPU is
``time.process_time()`` (all threads) per request, or per chunk for streams; figures are
medians over repetitions and ratios are to ``plain`` of the same repetitions.

Then the job: a ``--job-lines`` JSONL file run by `run_jsonl_job` with a `SQLiteCache`
(every request sent and stored), then run again into a new output: the requests the server
received during the rerun (the target: none), its wall time and CPU. One JSON line per case
and variant on stdout, and one for the job. Targets: a non-streamed hit <= 0.5x a request's
CPU, a replayed 1,000-chunk stream <= 1.0x a live one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyapi_async
from anyapi_async.cache import MemoryCache, SQLiteCache

from .payloads import ROUTES
from .scenarios import request_params
from .server import spawn, stats

VARIANTS = ("plain", "memory-hit", "sqlite-hit", "sqlite-miss")
CASES = ("completion", "stream")
TARGETS = {"completion": 0.5, "stream": 1.0}


async def _completions(client: anyapi_async.AsyncClient, n: int, **extra: Any) -> int:
    params = {**request_params(ROUTES["completion"]), **extra}
    for _ in range(n):
        completion = await client.chat.completions.create(**params)
        assert completion.choices
    return n


async def _streams(client: anyapi_async.AsyncClient, n: int, **extra: Any) -> int:
    params = {**request_params(ROUTES["stream"]), **extra}
    chunks = 0
    for _ in range(n):
        stream = await client.chat.completions.create(**params)
        async with stream:
            async for _chunk in stream:
                chunks += 1
    return chunks


async def _phase(client: anyapi_async.AsyncClient, case: str, n: int, miss: bool) -> float:
    """CPU µs per unit (request or chunk) of one measured phase, after a warm-up (which
    also fills the cache of the caching variants)."""
    run = _streams if case == "stream" else _completions
    extra: dict[str, Any] = {"cache": "refresh"} if miss else {}
    await run(client, max(1, n // 10), **extra)
    cache = client.pipeline.cache
    if cache is not None:
        await cache.flush()  # the warm-up stream's entry is written
    started = time.process_time()
    units = await run(client, n, **extra)
    if cache is not None:
        await cache.flush()  # a stream's write counts for its phase
    return (time.process_time() - started) / units * 1e6


async def _session(base_url: str, reps: int, requests: int, streams: int,
                   directory: Path) -> dict[str, dict[str, list[float]]]:
    clients = {
        "plain": anyapi_async.AsyncClient(api_key="sk-benchmark", base_url=base_url),
        "memory-hit": anyapi_async.AsyncClient(
            api_key="sk-benchmark", base_url=base_url, cache=MemoryCache()
        ),
        "sqlite-hit": anyapi_async.AsyncClient(
            api_key="sk-benchmark", base_url=base_url, cache=SQLiteCache(directory / "c.sqlite")
        ),
        "sqlite-miss": anyapi_async.AsyncClient(
            api_key="sk-benchmark", base_url=base_url, cache=SQLiteCache(directory / "m.sqlite")
        ),
    }
    results: dict[str, dict[str, list[float]]] = {c: {v: [] for v in VARIANTS} for c in CASES}
    try:
        for rep in range(reps):
            order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[: rep % len(VARIANTS)]
            for case, n in zip(CASES, (requests, streams), strict=True):
                for variant in order:
                    cpu = await _phase(clients[variant], case, n, variant == "sqlite-miss")
                    results[case][variant].append(cpu)
            print(f"rep {rep + 1}/{reps} done", file=sys.stderr)
    finally:
        for client in clients.values():
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
                    "unit": "chunk" if case == "stream" else "request",
                    "variant": variant,
                    "cpu_us": round(median, 2),
                    "ratio": round(median / plain, 3),
                    "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                    "target": TARGETS[case] if variant.endswith("-hit") else None,
                    "runs": [round(r, 2) for r in runs],
                }
            )
    return rows


async def _job(base_url: str, port: int, lines: int, directory: Path) -> dict[str, Any]:
    source = directory / "job.jsonl"
    params = request_params(ROUTES["completion"])
    with source.open("w") as f:
        for i in range(lines):
            body = {**params, "messages": [{"role": "user", "content": f"question {i}"}]}
            f.write(json.dumps({"custom_id": f"r{i}", "body": body}) + "\n")
    cache_path = directory / "job-cache.sqlite"
    figures: dict[str, Any] = {"case": "job-rerun", "lines": lines}
    for run, output in (("first", "out1.jsonl"), ("rerun", "out2.jsonl")):
        stats(port, reset=True)
        wall, cpu = time.perf_counter(), time.process_time()
        summary = await anyapi_async.run_jsonl_job(
            source, directory / output, api_key="sk-benchmark", base_url=base_url,
            cache=SQLiteCache(cache_path),
        )
        figures[f"{run}_wall_s"] = round(time.perf_counter() - wall, 2)
        figures[f"{run}_cpu_s"] = round(time.process_time() - cpu, 2)
        figures[f"{run}_requests_sent"] = stats(port)["requests"]
        assert summary.succeeded == lines, summary
    figures["cache_file_mb"] = round(cache_path.stat().st_size / 1e6, 1)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--requests", type=int, default=2000, help="calls per completion phase")
    parser.add_argument("--streams", type=int, default=20, help="1,000-chunk streams per phase")
    parser.add_argument("--job-lines", type=int, default=10_000, help="lines of the job")
    args = parser.parse_args(argv)
    proc, port = spawn()
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = asyncio.run(
                _session(base_url, args.reps, args.requests, args.streams, Path(tmp))
            )
            job = asyncio.run(_job(base_url, port, args.job_lines, Path(tmp)))
    finally:
        proc.terminate()
        proc.wait(10)
    for row in summarize(results):
        print(json.dumps(row))
    print(json.dumps(job))


if __name__ == "__main__":
    main()
