"""Batch throughput and memory: 100,000 requests against the local server, RSS vs 1,000.

    python -m benchmarks.bench_batch                     # 100,000 and 1,000 requests
    python -m benchmarks.bench_batch --requests 20000    # a quicker look

The server (``python -m anyapi_async.testing``) runs in its own process. Each measured run
is a fresh interpreter, so its peak RSS (``ru_maxrss``) belongs to that run alone; the
client's fixed cost (interpreter, imports, connection pool) is the same for both sizes, so
what flat memory means is easy to read: the two peaks should be about equal.

Cases, one JSON line each on stdout (progress on stderr):

- ``job``: `run_jsonl_job` from a JSONL file to a JSONL file, what ``anyapi batch`` runs.
- ``iter``: ``client.chat.completions.batch`` over a generator, results dropped.

Each line holds requests/s and peak RSS for the large run, the same for the baseline run,
and their RSS difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

DEFAULT_REQUESTS = 100_000
DEFAULT_BASELINE = 1_000
DEFAULT_CONCURRENCY = 64
WORKER_TIMEOUT = 1800
CASES = ("job", "iter")


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _body(i: int) -> dict[str, Any]:
    return {
        "model": "anyapi-local",
        "messages": [{"role": "user", "content": f"Question number {i}: say something short."}],
        "max_tokens": 16,
    }


def _write_input(source: Path, n: int) -> None:
    with open(source, "w") as f:
        for i in range(n):
            f.write(json.dumps({"custom_id": f"r{i}", "body": _body(i)}) + "\n")


async def _run_job(base_url: str, concurrency: int, source: Path, target: Path) -> int:
    from anyapi_async._jobs import run_jsonl_job

    summary = await run_jsonl_job(
        source, target, api_key="bench", base_url=base_url, concurrency=concurrency
    )
    return summary.succeeded


async def _run_iter(base_url: str, n: int, concurrency: int) -> int:
    from anyapi_async import AsyncClient

    ok = 0
    async with AsyncClient(api_key="bench", base_url=base_url) as client:
        requests = (_body(i) for i in range(n))
        async with client.chat.completions.batch(requests, concurrency=concurrency) as run:
            async for result in run:
                ok += result.ok
    return ok


def _worker(case: str, base_url: str, n: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        source, target = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        if case == "job":
            _write_input(source, n)  # not timed
        start = time.perf_counter()
        if case == "job":
            ok = asyncio.run(_run_job(base_url, concurrency, source, target))
        else:
            ok = asyncio.run(_run_iter(base_url, n, concurrency))
        seconds = time.perf_counter() - start
    if ok != n:
        raise SystemExit(f"{case}: only {ok} of {n} requests succeeded")
    return {"seconds": seconds, "requests_per_s": n / seconds, "peak_rss_mb": _peak_rss_mb()}


def _measure(case: str, base_url: str, n: int, concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_batch", "--worker", case, base_url, str(n)]
    cmd += ["--concurrency", str(concurrency)]
    print(f"bench_batch: {case} x {n:,}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _spawn_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyapi_async.testing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"the local server did not start (said {base_url!r})")
    return proc, base_url


def main(argv: list[str] | None = None) -> None:
    """Run the cases, or one worker run with ``--worker``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--baseline", type=int, default=DEFAULT_BASELINE)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument(
        "--worker", nargs=3, metavar=("CASE", "BASE_URL", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        case, base_url, n = args.worker
        print(json.dumps(_worker(case, base_url, int(n), args.concurrency)))
        return
    server, base_url = _spawn_server()
    try:
        for case in args.cases:
            small = _measure(case, base_url, args.baseline, args.concurrency)
            large = _measure(case, base_url, args.requests, args.concurrency)
            line = {
                "bench": "batch",
                "case": case,
                "concurrency": args.concurrency,
                "requests": args.requests,
                "requests_per_s": round(large["requests_per_s"], 1),
                "peak_rss_mb": round(large["peak_rss_mb"], 1),
                "baseline_requests": args.baseline,
                "baseline_requests_per_s": round(small["requests_per_s"], 1),
                "baseline_peak_rss_mb": round(small["peak_rss_mb"], 1),
                "rss_growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            }
            print(json.dumps(line), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
