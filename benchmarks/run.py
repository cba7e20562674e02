"""Run every benchmark case, each client in a fresh interpreter, and write the report.

    python -m benchmarks            # full mode: 5 repetitions, ~1 s measured per case
    python -m benchmarks --quick    # one repetition, short phases (about 2 minutes)

The server runs in its own process for the whole session. For each scenario and each
repetition every client runs once, in an order rotated per repetition, so slow drifts of
a noisy machine spread over all clients. Medians over repetitions give the figures, and
ratios to the floor and to openai are taken between figures of the same session. One JSON
line per (scenario, client) goes to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .scenarios import CLIENTS, SCENARIOS, Scenario
from .server import raise_fd_limit, spawn

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parent.parent
FULL = {"reps": 5, "target": 1.0, "import_reps": 15}
QUICK = {"reps": 1, "target": 0.2, "import_reps": 5}
WORKER_TIMEOUT = 900
PACKAGES = ("anyapi-async", "aiohttp", "msgspec", "openai", "httpx2", "httpx", "pydantic", "yarl")
IMPORTS = {
    "anyapi_async": "import anyapi_async",
    "aiohttp+msgspec": "import aiohttp, msgspec",
    "openai": "import openai",
}


def _log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _read(path: str, key: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def environment(python: str) -> dict[str, Any]:
    """The machine, interpreter and package versions of this session."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "anyapi_async"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        commit, changed = None, []
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _read("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(
            int((_read("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20, 1
        ),
        "versions": versions,
        "commit": commit,
        # Uncommitted changes inside the library itself ("-dirty" may be other files).
        "library_changes": [line[3:] for line in changed if line.strip()],
        "executable": python,
        "loadavg_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def measure_imports(python: str, reps: int) -> dict[str, Any]:
    """Median wall time of each import statement, each sample in a fresh interpreter."""
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    code = "import time; t=time.perf_counter(); {}; print(time.perf_counter()-t)"
    for rep in range(reps + 1):  # the first round only warms the page cache and .pyc files
        for name, stmt in IMPORTS.items():
            out = subprocess.run(
                [python, "-c", code.format(stmt)], capture_output=True, text=True, cwd=ROOT
            )
            if out.returncode:
                samples.pop(name, None)
                _log(f"import {name} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            if rep and name in samples:
                samples[name].append(float(out.stdout))
    result: dict[str, Any] = {
        name: {
            "ms_median": round(statistics.median(v) * 1e3, 2),
            "ms_min": round(min(v) * 1e3, 2),
            "ms_max": round(max(v) * 1e3, 2),
            "samples": len(v),
        }
        for name, v in samples.items()
        if v
    }
    result["anyapi_async_extra_modules"] = _extra_modules(python)
    return result


def _extra_modules(python: str) -> list[dict[str, Any]]:
    # What `import anyapi_async` loads beyond aiohttp and msgspec, from -X importtime.
    out = subprocess.run(
        [python, "-X", "importtime", "-c", "import aiohttp, msgspec; import anyapi_async"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = out.stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip().endswith("| msgspec")), None)
    if out.returncode or start is None:
        return []
    modules: list[dict[str, Any]] = []
    for line in lines[start + 1 :]:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not parts[0].startswith("import time:"):
            continue
        self_us = int(parts[0].rsplit(" ", 1)[-1])
        modules.append({"module": parts[2].strip(), "self_us": self_us, "cum_us": int(parts[1])})
    modules.sort(key=lambda m: -int(m["self_us"]))
    return modules[:12]


def measure_calls(python: str) -> dict[str, Any]:
    """Python function calls per request, anyapi over the floor (`benchmarks.callcount`)."""
    out = subprocess.run(
        [python, "-m", "benchmarks.callcount"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    found: dict[str, Any] = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            figures = json.loads(line)
            found[figures["case"]] = figures
    return found


def measure_paired(python: str, port: int, *, quick: bool) -> dict[str, Any]:
    """The floor and anyapi in alternating rounds of one process (`benchmarks.paired`), and
    the floor paired with itself: the method's own noise."""
    base = [python, "-m", "benchmarks.paired", "--port", str(port)]
    if quick:
        base += ["--rounds", "8", "--samples", "120"]
    found: dict[str, Any] = {"pipeline": {}, "noise": {}}
    for key, extra in (
        ("pipeline", []),
        ("noise", ["--pair", "floor,floor", "--scenarios", "completion-c1,stream-c1"]),
    ):
        out = subprocess.run(
            base + extra, capture_output=True, text=True, cwd=ROOT, timeout=WORKER_TIMEOUT
        )
        if out.returncode:
            tail = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
            found[key]["error"] = tail
            _log(f"paired ({key}) failed: {tail}")
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                figures = json.loads(line)
                found[key][figures["scenario"]] = figures
                print(json.dumps({"case": f"paired {key}", **figures}), flush=True)
    return found


def run_worker(
    python: str, client: str, scenario: Scenario, port: int, *, quick: bool, target: float
) -> dict[str, Any]:
    """One fresh-interpreter run; its JSON line, or ``{"error": ...}``."""
    cmd = [python, "-m", "benchmarks.worker", "--client", client, "--scenario", scenario.name]
    cmd += ["--port", str(port), "--target", str(target)] + (["--quick"] if quick else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT} s"}
    if out.returncode:
        tail = (out.stderr.strip().splitlines() or ["exit status " + str(out.returncode)])[-1]
        return {"error": tail}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(scenario: Scenario, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per client and ratios to the floor and to openai, from one session's runs."""
    clients: dict[str, Any] = {}
    for client, results in runs.items():
        ok = [r for r in results if "error" not in r]
        errors = [r["error"] for r in results if "error" in r]
        summary: dict[str, Any] = {"runs": len(ok), "errors": errors}
        if ok:
            cpu = [r["cpu_us_per_unit"] for r in ok]
            summary.update(
                cpu_us_per_unit=round(statistics.median(cpu), 3),
                cpu_us_min=min(cpu),
                cpu_us_max=max(cpu),
                cpu_us_per_request=round(_median(ok, "cpu_us_per_request") or 0, 3),
                wall_s=round(_median(ok, "wall_s") or 0, 4),
                requests=ok[-1]["requests"],
                rss_peak_kib=_median(ok, "rss_peak_kib"),
                rss_growth_kib=_median(ok, "rss_growth_kib"),
                connections=ok[-1]["connections"],
                peak_streams=ok[-1]["peak_streams"],
                cap=ok[-1]["cap"],
                gc_share=round(
                    statistics.median(
                        r.get("gc_s", 0) / r["cpu_s"] if r["cpu_s"] else 0 for r in ok
                    ),
                    3,
                ),
            )
            if scenario.mode == "ttfc":
                summary["ttfc_us_median"] = _median(ok, "ttfc_us_median")
                summary["ttfc_us_p90"] = _median(ok, "ttfc_us_p90")
        clients[client] = summary
    for ref in ("floor", "openai"):
        base = clients.get(ref, {})
        for summary in clients.values():
            if "cpu_us_per_unit" in summary and base.get("cpu_us_per_unit"):
                summary[f"x_{ref}"] = round(summary["cpu_us_per_unit"] / base["cpu_us_per_unit"], 3)
            for key in ("rss_peak_kib", "rss_growth_kib"):
                if summary.get(key) and base.get(key):
                    summary[f"{key}_x_{ref}"] = round(summary[key] / base[key], 3)
            if summary.get("ttfc_us_median") and base.get("ttfc_us_median"):
                summary[f"ttfc_us_minus_{ref}"] = round(
                    summary["ttfc_us_median"] - base["ttfc_us_median"], 1
                )
    return {
        "title": scenario.title,
        "route": scenario.route,
        "mode": scenario.mode,
        "unit": scenario.unit,
        "concurrency": scenario.concurrency,
        "clients": clients,
        "raw": runs,
    }


def run(
    *,
    quick: bool,
    reps: int | None = None,
    scenarios: list[str] | None = None,
    clients: list[str] | None = None,
    target: float | None = None,
    skip_imports: bool = False,
    skip_paired: bool = False,
) -> dict[str, Any]:
    """Run the selected cases and return the results document."""
    mode = QUICK if quick else FULL
    reps = reps or int(mode["reps"])
    target = target or float(mode["target"])
    python = sys.executable
    raise_fd_limit()
    selected = [
        SCENARIOS[name]
        for name in (scenarios or list(SCENARIOS))
        if scenarios or not quick or SCENARIOS[name].in_quick
    ]
    wanted = clients or list(CLIENTS)
    meta = environment(python)
    meta.update(mode="quick" if quick else "full", reps=reps, target_cpu_s=target)
    doc: dict[str, Any] = {"meta": meta, "scenarios": {}, "imports": {}}
    started = time.perf_counter()
    if not skip_imports:
        _log("imports ...")
        doc["imports"] = measure_imports(python, int(mode["import_reps"]))
        for name, figures in doc["imports"].items():
            if "ms_median" in figures:
                print(json.dumps({"case": f"import {name}", **figures}), flush=True)
    server, port = spawn(python)
    try:
        for scenario in selected:
            names = [c for c in scenario.clients if c in wanted]
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in names}
            for rep in range(reps):
                shift = rep % len(names)
                for client in names[shift:] + names[:shift]:
                    t0 = time.perf_counter()
                    result = run_worker(python, client, scenario, port, quick=quick, target=target)
                    runs[client].append(result)
                    shown = (
                        result.get("error") or f"{result['cpu_us_per_unit']:.2f} us/{scenario.unit}"
                    )
                    _log(
                        f"{scenario.name:<20} rep {rep + 1}/{reps} {client:<15} {shown}"
                        f"  ({time.perf_counter() - t0:.1f} s)"
                    )
            summary = summarize(scenario, runs)
            doc["scenarios"][scenario.name] = summary
            for client, figures in summary["clients"].items():
                print(
                    json.dumps({"scenario": scenario.name, "client": client, **figures}), flush=True
                )
        if "anyapi" in wanted and "floor" in wanted and not skip_paired:
            _log("paired rounds (benchmarks.paired) ...")
            doc["paired"] = measure_paired(python, port, quick=quick)
    finally:
        server.terminate()
        server.wait()
    if "anyapi" in wanted and "floor" in wanted:
        _log("call counts (benchmarks.callcount) ...")
        doc["callcount"] = measure_calls(python)
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return doc


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: run, then write JSON, Markdown and PNG."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="one repetition, short phases")
    parser.add_argument("--reps", type=int, help="repetitions per case (full: 5, quick: 1)")
    parser.add_argument("--target", type=float, help="CPU seconds per measured phase")
    parser.add_argument("--scenarios", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--clients", help="comma-separated: " + ",".join(CLIENTS))
    parser.add_argument("--skip-imports", action="store_true", help="skip the import timings")
    parser.add_argument(
        "--skip-paired", action="store_true", help="skip the paired rounds (benchmarks.paired)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for benchmarks.json/.md/.png (full: docs/, quick: benchmarks/results/)",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw benchmarks.png")
    args = parser.parse_args(argv)
    for name in (args.scenarios or "").split(","):
        if name and name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    doc = run(
        quick=args.quick,
        reps=args.reps,
        scenarios=args.scenarios.split(",") if args.scenarios else None,
        clients=args.clients.split(",") if args.clients else None,
        target=args.target,
        skip_imports=args.skip_imports,
        skip_paired=args.skip_paired,
    )
    from .report import write_all

    out = args.out or (ROOT / ("benchmarks/results" if args.quick else "docs"))
    failed = write_all(doc, out, plot_png=not args.no_plot)
    if failed:
        sys.exit(f"{failed} case(s) failed; see the errors in {out / 'benchmarks.json'}")


if __name__ == "__main__":
    main()
