"""The floor and ``anyapi_async`` in one process, in alternating rounds: ratios a noisy
machine cannot move much.

The session of `benchmarks.run` measures each client in a fresh interpreter, one after the
other; on a shared 2-core VM the speed of the machine drifts between those runs by tens of
percent, and a ratio of two of them moves as much (the same per-chunk code measured 0.88x
and 1.22x the floor an hour apart). Here both clients live in one interpreter, on one event
loop, against one server, and take turns in short rounds in ``ABBA`` order (floor, anyapi,
anyapi, floor, ...): each round's CPU time (``time.process_time()``) is compared with the
other client's round next to it, so a drift of the machine hits both sides of every pair.
The figure is the median of the per-pair ratios; the spread is their interquartile range.
For time to first chunk the two clients alternate request by request and the figure is the
difference of the two medians.

    python -m benchmarks.paired                       # the issue-19 scenarios
    python -m benchmarks.paired --scenarios completion-c1,ttfc --rounds 40

One JSON line per scenario on stdout. Every response is checked, as in the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .clients import BenchClient, make
from .scenarios import CLIENTS as ALL_CLIENTS
from .scenarios import FANOUT_CAP, POOL_SIZE, SCENARIOS, Scenario
from .server import raise_fd_limit, running
from .worker import GCTimer, Mismatch, _op, _rounds

__all__ = ["CLIENTS", "DEFAULT_SCENARIOS", "main", "measure_pair"]

CLIENTS = ("floor", "anyapi")
#: The scenarios the request-pipeline issue sets CPU and time-to-first-chunk targets on.
DEFAULT_SCENARIOS = ("completion-c1", "fanout-10k", "stream-c1", "stream-c16", "ttfc")
DEFAULT_ROUNDS = 30  # pairs of rounds: 60 rounds per client (twice that for the fan-out)
ROUND_CPU_S = 0.05
#: Requests per fan-out round (all at once through the cap), and sequential TTFC samples.
FANOUT_ROUND = 1000
TTFC_SAMPLES = 600
WARMUP = 16


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


async def _calibrate(op: Callable[[], Awaitable[Any]], target: float) -> float:
    """CPU seconds of one call of ``op``, from a short sequential sample."""
    spent, done = 0.0, 0
    while spent < target and done < 200:
        start = time.process_time()
        await op()
        spent += time.process_time() - start
        done += 1
    return spent / done


async def measure_pair(
    scenario: Scenario,
    base_url: str,
    *,
    rounds: int = DEFAULT_ROUNDS,
    round_cpu: float = ROUND_CPU_S,
    pair: tuple[str, str] = CLIENTS,
    samples: int = TTFC_SAMPLES,
) -> dict[str, Any]:
    """Both clients on ``scenario`` in alternating rounds; the ratio anyapi/floor.

    ``pair`` names the two clients (the reference first); ``("floor", "floor")`` measures
    the method's own noise."""
    route = scenario.spec
    fanout = scenario.mode == "fanout"
    cap = FANOUT_CAP if fanout else None
    # Keyed by role, so a client can be paired with itself.
    clients: dict[str, BenchClient] = {
        role: make(name, base_url, cap=cap, pool=POOL_SIZE)
        for role, name in zip(CLIENTS, pair, strict=True)
    }
    ops = {
        role: _op(client, name, route)
        for (role, client), name in zip(clients.items(), pair, strict=True)
    }
    try:
        lanes = min(scenario.concurrency, FANOUT_CAP)
        for op in ops.values():
            await _rounds(op, max(WARMUP, lanes), lanes)
        if scenario.mode == "ttfc":
            return await _ttfc_pair(scenario, ops, samples)
        if fanout:
            n = FANOUT_ROUND
        else:
            per = await _calibrate(ops["floor"], 0.05)
            n = max(1, round(round_cpu / per / scenario.concurrency)) * scenario.concurrency
        units = n * route.chunks if scenario.unit == "chunk" else n
        if fanout:
            # A fan-out round spends ~15 % in the collector, whose full passes land in one
            # round of a pair and not the other: twice the pairs for a steadier median.
            rounds *= 2
        cpu: dict[str, list[float]] = {name: [] for name in CLIENTS}
        ratios: list[float] = []
        # The collector's time, per client: in one process each pays for the other's
        # long-lived objects too, so it is shown (it is a small share; see the README).
        gc_timer = GCTimer()
        gc_s = dict.fromkeys(CLIENTS, 0.0)
        gc.collect()
        gc.callbacks.append(gc_timer)
        for i in range(rounds):
            order = CLIENTS if i % 2 == 0 else CLIENTS[::-1]  # ABBA: a drift hits both sides
            spent = {}
            for name in order:
                op = ops[name]
                before = gc_timer.seconds
                start = time.process_time()
                if fanout:
                    await asyncio.gather(*(op() for _ in range(n)))
                else:
                    await _rounds(op, n, scenario.concurrency)
                spent[name] = time.process_time() - start
                gc_s[name] += gc_timer.seconds - before
                cpu[name].append(spent[name] / units * 1e6)
            ratios.append(spent["anyapi"] / spent["floor"])
        gc.callbacks.remove(gc_timer)
    finally:
        for client in clients.values():
            await client.aclose()
    total = {name: statistics.fmean(cpu[name]) * units / 1e6 * rounds for name in CLIENTS}
    low, high = _quartiles(ratios)
    return {
        "scenario": scenario.name,
        "unit": scenario.unit,
        "pairs": rounds,
        "per_round": n,
        "floor_cpu_us": round(statistics.median(cpu["floor"]), 3),
        "anyapi_cpu_us": round(statistics.median(cpu["anyapi"]), 3),
        "x_floor": round(statistics.median(ratios), 3),
        "x_floor_q1": round(low, 3),
        "x_floor_q3": round(high, 3),
        "gc_share": {name: round(gc_s[name] / total[name], 4) for name in CLIENTS},
    }


async def _ttfc_pair(
    scenario: Scenario, ops: dict[str, Callable[[], Awaitable[Any]]], count: int
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in CLIENTS}
    gc.collect()
    for i in range(count):
        order = CLIENTS if i % 2 == 0 else CLIENTS[::-1]
        for name in order:
            start = time.perf_counter()
            first = await ops[name]()
            samples[name].append((first - start) * 1e6)
    floor = statistics.median(samples["floor"])
    anyapi = statistics.median(samples["anyapi"])
    # Per pair (the two requests next to each other), for the spread.
    diffs = [a - f for a, f in zip(samples["anyapi"], samples["floor"], strict=True)]
    low, high = _quartiles(diffs)
    return {
        "scenario": scenario.name,
        "unit": "µs",
        "samples": count,
        "floor_ttfc_us": round(floor, 1),
        "anyapi_ttfc_us": round(anyapi, 1),
        "ttfc_us_minus_floor": round(anyapi - floor, 1),
        "pair_diff_us_median": round(statistics.median(diffs), 1),
        "pair_diff_us_q1": round(low, 1),
        "pair_diff_us_q3": round(high, 1),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="pairs of rounds")
    parser.add_argument("--round-cpu", type=float, default=ROUND_CPU_S, help="CPU s per round")
    parser.add_argument("--samples", type=int, default=TTFC_SAMPLES, help="TTFC samples each")
    parser.add_argument("--port", type=int, help="a running benchmarks.server")
    parser.add_argument(
        "--pair", default="floor,anyapi", help="two clients, reference first (floor,floor: noise)"
    )
    args = parser.parse_args(argv)
    names = [name for name in args.scenarios.split(",") if name]
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    chosen = args.pair.split(",")
    if len(chosen) != 2 or not set(chosen) <= set(ALL_CLIENTS):
        parser.error(f"--pair takes two of {', '.join(ALL_CLIENTS)}")
    pair = (chosen[0], chosen[1])
    raise_fd_limit()
    try:
        with running(args.port) as port:
            for name in names:
                result = asyncio.run(
                    measure_pair(
                        SCENARIOS[name],
                        f"http://127.0.0.1:{port}/v1",
                        rounds=args.rounds,
                        round_cpu=args.round_cpu,
                        pair=pair,
                        samples=args.samples,
                    )
                )
                result["pair"] = list(pair)
                sys.stdout.write(json.dumps(result) + "\n")
                sys.stdout.flush()
    except Mismatch as exc:
        sys.exit(f"VERIFICATION FAILED: {exc}")


if __name__ == "__main__":
    main()
