"""Ray scale-out: rows/s and client CPU per row, our stage vs the in-process runner vs Ray's.

    python -m benchmarks.bench_ray                      # all three cases
    python -m benchmarks.bench_ray --rows 3000 --builtin-rows 1000 --cases ray inprocess
    python -m benchmarks.bench_ray --cases ray --batch-size 64 --repeats 1

Needs the ``ray`` extra. One local server (``LocalServer``, every answer delayed by a fixed
20 ms) runs in its own process for the whole run; each case runs in a fresh interpreter:

- ``ray``: `anyapi_async.ray.ChatCompletions` in ``map_batches``, 2 actors
  (``ActorPoolStrategy(size=2)``, ``num_cpus=0.25``), batch_size 1024, concurrency 32 each.
- ``inprocess``: ``client.chat.completions.batch`` (the engine of ``run_jsonl_job``) in
  one process, concurrency 64 (the same requests in flight as 2 x 32).
- ``builtin``: Ray Data's own HTTP stage (``ray.data.llm.HttpRequestProcessorConfig`` +
  ``build_processor``), 2 actors (``concurrency=2``), its default batch size (64).

Startup (``ray.init``; then from starting the pipeline to its first output rows) is reported
apart from throughput, which is measured from the first output to the last. Client CPU is
the user + system time over that same stretch of every process of the case (the driver and,
for Ray, its GCS, raylet and workers: the process tree), divided by the rows finished in it;
the server's own process is not counted. One JSON line per case on stdout, the best of
``--repeats`` runs for each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["main"]

DELAY_SECONDS = 0.02
ACTORS = 2
#: Our stage's batch size: Ray spends CPU per batch (a task, block conversions, the
#: driver's scheduling), so bigger batches cost less per row (64 rows: ~2.6x the CPU).
BATCH_SIZE = 1024
REPEATS = 3
CONCURRENCY = 32
DEFAULT_ROWS = 8000
DEFAULT_BUILTIN_ROWS = 1500
CASES = ("ray", "inprocess", "builtin")
WORKER_TIMEOUT = 900
_TICKS = os.sysconf("SC_CLK_TCK")


def _body(i: int) -> dict[str, Any]:
    return {
        "model": "anyapi-local",
        "messages": [{"role": "user", "content": f"Question number {i}: say something short."}],
        "max_tokens": 16,
    }


# --- CPU of a process tree (from /proc: no extra dependency) -------------------------------


def _proc_stats() -> Iterator[tuple[int, int, float]]:
    """(pid, parent pid, CPU seconds) of every process we can read."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        # After the command: state ppid ... utime stime (11 and 12 counting from state).
        yield int(entry.name), int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


class TreeCPU:
    """CPU seconds of a process and its descendants, including those that have exited.

    Ray starts and ends worker processes as it goes, so a thread samples the tree every
    `SAMPLE_SECONDS` and keeps each process's last reading: a process that exits loses at
    most its last interval. The sampling's own cost counts too (it runs in the driver).
    """

    SAMPLE_SECONDS = 0.25

    def __init__(self, root: int) -> None:
        self._root = root
        self._seen: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sample()
        self._thread.start()

    def sample(self) -> float:
        """Sample now; return the total so far."""
        children: dict[int, list[int]] = {}
        cpu: dict[int, float] = {}
        for pid, ppid, seconds in _proc_stats():
            children.setdefault(ppid, []).append(pid)
            cpu[pid] = seconds
        todo = [self._root]
        with self._lock:
            while todo:
                pid = todo.pop()
                if pid in cpu:
                    self._seen[pid] = max(self._seen.get(pid, 0.0), cpu[pid])
                todo.extend(children.get(pid, ()))
            return sum(self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(self.SAMPLE_SECONDS):
            self.sample()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# --- the server --------------------------------------------------------------------------


async def _serve() -> None:
    from anyapi_async.testing import Generated, LocalServer

    async with LocalServer() as server:
        server.set_default(Generated(first_byte_delay=DELAY_SECONDS))
        print(server.base_url, flush=True)
        # Until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _spawn_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_ray", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"the server did not start: {base_url!r}")
    return proc, base_url


# --- the cases (each in its own interpreter) -----------------------------------------------


class _Meter:
    """Times and CPU at the start, the first output and the end of a case."""

    def __init__(self) -> None:
        self.cpu = TreeCPU(os.getpid())
        self.start = time.perf_counter()
        self.first: float | None = None
        self.first_cpu = 0.0
        self.first_rows = 0
        self.rows = 0

    def add(self, rows: int) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = self.cpu.sample()
            self.first_rows = rows
        self.rows += rows

    def result(self, case: str, **extra: Any) -> dict[str, Any]:
        end = time.perf_counter()
        cpu = self.cpu.sample()
        self.cpu.close()
        assert self.first is not None
        steady_rows = self.rows - self.first_rows
        seconds = end - self.first
        return {
            "case": case,
            "rows": self.rows,
            "startup_s": round(self.first - self.start, 3),
            "rows_per_s": round(steady_rows / seconds, 1),
            "cpu_ms_per_row": round(1000 * (cpu - self.first_cpu) / steady_rows, 3),
            **extra,
        }


def _ray_init() -> float:
    import ray

    started = time.perf_counter()
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        object_store_memory=200 * 1024 * 1024,
        log_to_driver=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return time.perf_counter() - started


def _case_ray(base_url: str, rows: int, batch_size: int) -> dict[str, Any]:
    import ray

    from anyapi_async.ray import ChatCompletions

    init = _ray_init()
    items = [{"custom_id": f"r{i}", "body": json.dumps(_body(i))} for i in range(rows)]
    ds = ray.data.from_items(items).map_batches(
        ChatCompletions,
        batch_size=batch_size,
        fn_constructor_kwargs={
            "base_url": base_url,
            "api_key": "bench",
            "concurrency": CONCURRENCY,
        },
        compute=ray.data.ActorPoolStrategy(size=ACTORS),
        num_cpus=0.25,
    )
    meter = _Meter()
    ok = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        meter.add(batch.num_rows)
        ok += batch.num_rows - batch.column("response").null_count
    ray.shutdown()
    return meter.result("ray", ok=ok, ray_init_s=round(init, 3), batch_size=batch_size)


def _case_builtin(base_url: str, rows: int, batch_size: int) -> dict[str, Any]:
    del batch_size  # the stage's own default is what is measured
    import ray
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    init = _ray_init()
    config = HttpRequestProcessorConfig(
        url=base_url + "/chat/completions",
        headers={"Authorization": "Bearer bench"},
        concurrency=ACTORS,
    )
    processor = build_processor(
        config,
        preprocess=lambda row: {"payload": json.loads(row["body"])},
        postprocess=lambda row: {
            "custom_id": row["custom_id"],
            "ok": "choices" in (row.get("http_response") or {}),
        },
    )
    items = [{"custom_id": f"r{i}", "body": json.dumps(_body(i))} for i in range(rows)]
    meter = _Meter()
    ok = 0
    for batch in processor(ray.data.from_items(items)).iter_batches(batch_size=None):
        meter.add(len(batch["ok"]))
        ok += int(batch["ok"].sum())
    ray.shutdown()
    return meter.result("builtin", ok=ok, ray_init_s=round(init, 3), batch_size=config.batch_size)


async def _inprocess(base_url: str, rows: int, meter: _Meter) -> int:
    from anyapi_async import AsyncClient

    ok = 0
    async with AsyncClient(api_key="bench", base_url=base_url) as client:
        bodies = (_body(i) for i in range(rows))
        async with client.chat.completions.batch(bodies, concurrency=ACTORS * CONCURRENCY) as run:
            async for result in run:
                meter.add(1)
                ok += result.ok
    return ok


def _case_inprocess(base_url: str, rows: int, batch_size: int) -> dict[str, Any]:
    del batch_size
    meter = _Meter()
    ok = asyncio.run(_inprocess(base_url, rows, meter))
    return meter.result("inprocess", ok=ok)


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best of the repeats, each figure on its own: most rows/s, least CPU and startup."""
    best = dict(runs[0])
    best["rows_per_s"] = max(r["rows_per_s"] for r in runs)
    for key in ("cpu_ms_per_row", "startup_s", "ray_init_s"):
        if key in best:
            best[key] = min(r[key] for r in runs)
    best["ok"] = min(r["ok"] for r in runs)
    best["repeats"] = len(runs)
    return best


_RUNNERS = {"ray": _case_ray, "inprocess": _case_inprocess, "builtin": _case_builtin}


def _measure(case: str, base_url: str, rows: int, batch_size: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_ray", "--worker", case, base_url, str(rows)]
    cmd += ["--batch-size", str(batch_size)]
    print(f"bench_ray: {case} x {rows:,}", file=sys.stderr, flush=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=WORKER_TIMEOUT, env=env
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ray", description=__doc__)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of ray, inprocess")
    parser.add_argument("--builtin-rows", type=int, default=DEFAULT_BUILTIN_ROWS)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help=f"of the ray case (default {BATCH_SIZE})"
    )
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help=f"runs per case, best kept (default {REPEATS})"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, metavar=("CASE", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    if args.worker:
        case, base_url, n = args.worker
        print(json.dumps(_RUNNERS[case](base_url, int(n), args.batch_size)), flush=True)
        return 0
    server, base_url = _spawn_server()
    try:
        for case in args.cases:
            rows = args.builtin_rows if case == "builtin" else args.rows
            runs = [_measure(case, base_url, rows, args.batch_size) for _ in range(args.repeats)]
            print(json.dumps(_best(runs)), flush=True)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
