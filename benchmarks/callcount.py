"""Python function calls per request: the library's fixed cost, steady on a noisy machine.

CPU time per request moves by tens of percent between runs of a shared VM; the number of
function calls a request makes does not. For the floor client and ``anyapi_async`` against
the benchmark server, this counts with cProfile the calls of a non-streamed completion and
of a 3-chunk stream (route ``stream-3``: the role, finish and usage chunks, then
``[DONE]``), after a warm-up, over ``--requests`` sequential requests, and prints one JSON
line per case with the calls per request of each client and ``extra``, anyapi's calls over
the floor's. Every response is checked against what the server sent.

    python -m benchmarks.callcount
    python -m benchmarks.callcount --check --max-extra-complete 45 --max-extra-stream 70
    python -m benchmarks.callcount --top 20     # where the extra calls are (on stderr)

``calls`` are calls of Python functions (event loop and aiohttp included, since a request
is all of them); ``builtin_calls`` (C functions and methods) are reported beside them but
not checked. ``--check`` exits 1 when ``extra`` is over a limit. A few calls per request
can come and go with the timing of the socket reads (one read or two for a response), which
the average over many requests makes small.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .clients import BenchClient, make
from .payloads import ROUTES, Route, expected
from .server import spawn
from .worker import check

__all__ = ["CASES", "Count", "count_calls", "main"]

#: case name -> route: one non-streamed completion, one 3-chunk stream.
CASES = {"complete": "completion", "stream": "stream-3"}
CLIENTS = ("floor", "anyapi")
WARMUP = 20
DEFAULT_REQUESTS = 200
#: Frames the --top table keeps: the library, and the event loop and HTTP client it drives.
TOP_FRAMES = ("anyapi_async", "asyncio", "aiohttp")

FunctionKey = tuple[str, int, str]  # cProfile's (file, line, function)


@dataclass
class Count:
    """Calls per request of one client on one route, and per function for --top."""

    calls: float
    builtin_calls: float
    per_function: dict[FunctionKey, float]


def _op(client: BenchClient, name: str, route: Route) -> Callable[[], Awaitable[None]]:
    want = expected(route)
    if route.stream:

        async def one_stream() -> None:
            outcome, _ = await client.stream(route)
            check(outcome, want, name)

        return one_stream

    async def one_completion() -> None:
        check(await client.complete(route), want, name)

    return one_completion


async def count_calls(name: str, route: Route, base_url: str, requests: int) -> Count:
    """Warm up, then count the calls of ``requests`` sequential requests; divide."""
    client = make(name, base_url, cap=None, pool=1)
    op = _op(client, name, route)
    try:
        for _ in range(WARMUP):
            await op()
        profiler = cProfile.Profile(builtins=True)
        profiler.enable()
        for _ in range(requests):
            await op()
        profiler.disable()
    finally:
        await client.aclose()
    # pstats' table: function -> (primitive calls, total calls, tottime, cumtime, callers).
    table: dict[FunctionKey, tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    python = builtin = 0
    per_function: dict[FunctionKey, float] = {}
    for key, (_, total, *_rest) in table.items():
        if key[0] == "~":  # cProfile's file name for C functions
            builtin += total
        else:
            python += total
            per_function[key] = total / requests
    return Count(python / requests, builtin / requests, per_function)


def _where(key: FunctionKey) -> str:
    path, line, function = key
    for marker in TOP_FRAMES:
        at = path.rfind(f"/{marker}/")
        if at >= 0:
            return f"{path[at + 1 :]}:{line}({function})"
    return f"{path}:{line}({function})"


def top_extra(floor: Count, anyapi: Count, n: int) -> list[tuple[str, float]]:
    """The functions of the library, asyncio and aiohttp that anyapi calls more than the floor."""
    extra = []
    for key, calls in anyapi.per_function.items():
        if not any(f"/{marker}/" in key[0] for marker in TOP_FRAMES):
            continue
        more = calls - floor.per_function.get(key, 0.0)
        if more > 0.005:
            extra.append((_where(key), more))
    extra.sort(key=lambda item: (-item[1], item[0]))
    return extra[:n]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="per case")
    parser.add_argument("--check", action="store_true", help="exit 1 when over a limit")
    parser.add_argument("--max-extra-complete", type=float, help="extra calls, completion")
    parser.add_argument("--max-extra-stream", type=float, help="extra calls, 3-chunk stream")
    parser.add_argument("--top", type=int, default=0, help="print the top N extra functions")
    args = parser.parse_args(argv)
    limits = {"complete": args.max_extra_complete, "stream": args.max_extra_stream}
    if args.check and None in limits.values():
        parser.error("--check needs --max-extra-complete and --max-extra-stream")
    server, port = spawn()
    over = []
    try:
        for case, route_name in CASES.items():
            route = ROUTES[route_name]
            counts = {
                name: asyncio.run(
                    count_calls(name, route, f"http://127.0.0.1:{port}/v1", args.requests)
                )
                for name in CLIENTS
            }
            floor, anyapi = counts["floor"], counts["anyapi"]
            extra = anyapi.calls - floor.calls
            line: dict[str, Any] = {
                "case": case,
                "route": route_name,
                "chunks": route.chunks,
                "requests": args.requests,
                "floor_calls": round(floor.calls, 1),
                "anyapi_calls": round(anyapi.calls, 1),
                "extra": round(extra, 1),
                "floor_builtin_calls": round(floor.builtin_calls, 1),
                "anyapi_builtin_calls": round(anyapi.builtin_calls, 1),
            }
            limit = limits[case]
            if limit is not None:
                line["limit"] = limit
                if extra > limit:
                    over.append(f"{case}: {extra:.1f} extra calls per request > {limit:g}")
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            if args.top:
                sys.stderr.write(f"{case}: extra calls per request, by function\n")
                for where, more in top_extra(floor, anyapi, args.top):
                    sys.stderr.write(f"  {more:8.2f}  {where}\n")
    finally:
        server.terminate()
        server.wait()
    if args.check and over:
        sys.exit("over the call budget: " + "; ".join(over))


if __name__ == "__main__":
    main()
