"""One client, one scenario, in this fresh interpreter: warm up, measure, print one JSON line.

CPU time is ``time.process_time()`` (user + sys of every thread of this process) over the
measured phase only. Every response is checked against the expected text, logprob tokens
and tool calls; a mismatch exits non-zero. Peak memory is the kernel's ``VmHWM``, reset
(``/proc/self/clear_refs``) just before the measured phase where Linux allows it.

Run alone (it then starts its own server)::

    python -m benchmarks.worker --client anyapi --scenario stream-c1
    python -m benchmarks.worker --client anyapi --scenario stream-c1 --profile out.html
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .clients import BenchClient, make
from .payloads import ROUTES, Outcome, Route, expected
from .scenarios import CLIENTS, FANOUT_CAP, POOL_SIZE, SCENARIOS, Scenario
from .server import raise_fd_limit, running, stats

__all__ = ["main", "measure"]

#: CPU seconds the measured phase aims at in full mode (quick mode passes less).
DEFAULT_TARGET = 1.0
WARMUP_REQUESTS = 8


class Mismatch(AssertionError):
    """A client rebuilt something other than what the server sent."""


def check(outcome: Outcome, want: Outcome, client: str) -> None:
    """Fail loudly, saying what differs, when ``outcome`` is not ``want``."""
    if outcome == want:
        return
    for field, got, exp in zip(Outcome._fields, outcome, want, strict=True):
        if got != exp:
            index = next(
                (i for i, (a, b) in enumerate(zip(got, exp, strict=False)) if a != b),
                min(len(got), len(exp)),
            )
            raise Mismatch(
                f"{client}: {field} differs at index {index} (got {len(got)} items/chars, "
                f"expected {len(exp)}): {got[index : index + 3]!r} != {exp[index : index + 3]!r}"
            )


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_kib() -> int:
    peak = _status("VmHWM:")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak


class GCTimer:
    """Counts collections and the time spent in them (a diagnostic, per generation)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections[info["generation"]] += 1


async def _rounds(op: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> None:
    left = n

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await op()

    await asyncio.gather(*(lane() for _ in range(min(concurrency, n))))


def _op(client: BenchClient, name: str, route: Route) -> Callable[[], Awaitable[Any]]:
    want = expected(route)
    if route.stream:
        stream = client.stream

        async def one_stream() -> float:
            outcome, first = await stream(route)
            check(outcome, want, name)
            return first

        return one_stream
    complete = client.complete

    async def one_completion() -> None:
        check(await complete(route), want, name)

    return one_completion


async def measure(
    name: str,
    scenario: Scenario,
    base_url: str,
    port: int,
    *,
    quick: bool = False,
    target: float = DEFAULT_TARGET,
    profile: str | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` with client ``name`` and return its figures."""
    route = scenario.spec
    cap = FANOUT_CAP if scenario.mode == "fanout" else None
    client = make(name, base_url, cap=cap, pool=POOL_SIZE)
    op = _op(client, name, route)
    lanes = min(scenario.concurrency, FANOUT_CAP)
    try:
        warm = ROUTES[scenario.warmup_route] if scenario.warmup_route else route
        await _rounds(_op(client, name, warm), max(WARMUP_REQUESTS, lanes), lanes)
        n = scenario.requests(quick)
        if not n:
            # Size the phase to about `target` CPU seconds from a sequential sample.
            spent, done = 0.0, 0
            while spent < min(0.1, target / 4) and done < 200:
                start = time.process_time()
                await op()
                spent += time.process_time() - start
                done += 1
            per = spent / done
            n = max(1, math.ceil(target / per / scenario.concurrency)) * scenario.concurrency
        gc.collect()
        stats(port, reset=True)
        rss_before = _status("VmRSS:") or 0
        peak_reset = _reset_peak()
        ttfc: list[float] = []
        profiler = _start_profile(profile)
        gc_timer = GCTimer()
        gc.callbacks.append(gc_timer)
        cpu0, t0 = time.process_time(), time.perf_counter()
        if scenario.mode == "ttfc":
            for _ in range(n):
                start = time.perf_counter()
                ttfc.append(await op() - start)
        elif scenario.mode in ("fanout", "concurrent"):
            await asyncio.gather(*(op() for _ in range(n)))
        else:
            await _rounds(op, n, scenario.concurrency)
        cpu1, t1 = time.process_time(), time.perf_counter()
        gc.callbacks.remove(gc_timer)
        _stop_profile(profiler, profile)
        peak = _peak_kib()
        server = stats(port)
    finally:
        await client.aclose()
    cpu = cpu1 - cpu0
    chunks = n * route.chunks if route.stream else 0
    units = chunks if scenario.unit == "chunk" else n
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "client": name,
        "requests": n,
        "chunks": chunks,
        "unit": scenario.unit,
        "cpu_s": round(cpu, 6),
        "wall_s": round(t1 - t0, 6),
        "cpu_us_per_unit": round(cpu / units * 1e6, 3),
        "cpu_us_per_request": round(cpu / n * 1e6, 3),
        "rss_before_kib": rss_before,
        "rss_peak_kib": peak,
        "rss_growth_kib": peak - rss_before if peak_reset else None,
        "peak_reset": peak_reset,
        "gc_s": round(gc_timer.seconds, 6),
        "gc_collections": gc_timer.collections,
        "cap": client.cap,
        "connections": server["connections"],
        "server_requests": server["requests"],
        "peak_streams": server["peak_streams"],
    }
    if ttfc:
        result["ttfc_us_median"] = round(statistics.median(ttfc) * 1e6, 1)
        result["ttfc_us_p90"] = round(sorted(ttfc)[int(len(ttfc) * 0.9)] * 1e6, 1)
    if server["requests"] != n:
        raise RuntimeError(f"the server saw {server['requests']} requests, expected {n}")
    return result


def _start_profile(path: str | None) -> Any:
    if not path:
        return None
    if path.endswith(".prof"):
        import cProfile

        profiler: Any = cProfile.Profile()
        profiler.enable()
        return profiler
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    return profiler


def _stop_profile(profiler: Any, path: str | None) -> None:
    if profiler is None or path is None:
        return
    if path.endswith(".prof"):
        profiler.disable()
        profiler.dump_stats(path)
        return
    profiler.stop()
    if path.endswith(".html"):
        Path(path).write_text(profiler.output_html())
    else:
        Path(path).write_text(profiler.output_text(unicode=True, show_all=False))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True, choices=CLIENTS)
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--port", type=int, help="a running benchmarks.server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="the quick mode's fixed counts")
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET, help="CPU seconds")
    parser.add_argument(
        "--profile", help="write a profile of the measured phase: .html/.txt pyinstrument, .prof"
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    try:
        with running(args.port) as port:
            result = asyncio.run(
                measure(
                    args.client,
                    SCENARIOS[args.scenario],
                    f"http://127.0.0.1:{port}/v1",
                    port,
                    quick=args.quick,
                    target=args.target,
                    profile=args.profile,
                )
            )
    except Mismatch as exc:
        sys.exit(f"VERIFICATION FAILED: {exc}")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
