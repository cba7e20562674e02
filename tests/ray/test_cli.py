"""`anyapi batch --engine ray`: killed with SIGKILL and resumed, --retry-failed, progress."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray

from anyapi_async import JobStopped
from anyapi_async._batch import BatchStats
from anyapi_async._jobs.on_ray import (
    DEFAULT_CONNECT_TIMEOUT,
    ENV_CONNECT_TIMEOUT,
    connect_timeout_from_env,
    run_jsonl_job_on_ray,
    split_concurrency,
)
from anyapi_async.ray import BUDGET_NAMESPACE, RateBudget
from anyapi_async.testing import ErrorResponse, Generated

from .conftest import RAY_MARKS, ThreadedServer
from .test_stage import KEY, body

pytestmark = RAY_MARKS

WAIT_SECONDS = 90.0


def write_input(path: Path, n: int, *, invalid: bool = True) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"custom_id": f"r{i:03}", "body": body(i)}) + "\n")
        if invalid:
            f.write("{not json\n")


def output_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [
        json.loads(line)
        for line in path.read_bytes().splitlines(keepends=True)
        if line.endswith(b"\n")
    ]


def anyapi_batch(server: ThreadedServer, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("ANYAPI_API_KEY", None)  # a loopback server needs none
    cmd = [sys.executable, "-m", "anyapi_async", "batch", *args, "--engine", "ray"]
    cmd += ["--base-url", server.base_url, "--max-retries", "0"]
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=WAIT_SECONDS)
    return proc.returncode, out, err


def kill_when(proc: subprocess.Popen[str], target: Path, lines: int) -> str:
    """SIGKILL the driver once ``target`` has at least ``lines`` lines; its stderr so far."""
    deadline = time.monotonic() + WAIT_SECONDS
    while len(output_lines(target)) < lines:
        if proc.poll() is not None:
            raise AssertionError(f"the job ended before it was killed: {proc.communicate()}")
        assert time.monotonic() < deadline, "the job wrote too few lines in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == -signal.SIGKILL
    return err


def test_sigkill_and_resume_give_one_line_per_input_line(
    ray_server: ThreadedServer, tmp_path: Path
) -> None:
    """Killed twice (once mid-write), resumed on a local Ray: every line once, all answered."""
    ray_server.run(lambda: ray_server.server.set_default(Generated(first_byte_delay=0.05)))
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    n = 300
    write_input(source, n)
    address = ray.get_runtime_context().gcs_address
    common = [str(source), "-o", str(target), "--workers", "2", "--concurrency", "8"]

    first = anyapi_batch(ray_server, *common, "--ray-address", address)
    kill_when(first, target, 30)
    with open(target, "ab") as f:  # what a write cut by the kill leaves
        f.write(b'{"custom_id": "r0')
    second = anyapi_batch(ray_server, *common, "--ray-address", address)
    assert "torn last line" in kill_when(second, target, 120)

    third = anyapi_batch(ray_server, *common)  # no address: a local Ray for the job
    status, out, err = finish(third)
    assert status == 1, err  # the invalid line is an error line
    assert "skipped as already done" in out and f"{n} succeeded" not in out
    lines = output_lines(target)
    assert target.read_bytes().endswith(b"\n")
    counts = Counter(line["custom_id"] for line in lines)
    assert len(lines) == n + 1 and set(counts.values()) == {1}
    answered = [line for line in lines if line["custom_id"] != "line-301"]
    assert all(line["error"] is None for line in answered)
    assert all(line["response"]["status_code"] == 200 for line in answered)
    [invalid] = [line for line in lines if line["custom_id"] == "line-301"]
    assert invalid["error"]["type"] == "invalid_request"
    # Requests in flight at a kill may have been sent twice; no answer was written twice.
    assert len(ray_server.chat_requests()) >= n


def test_retry_failed_runs_the_failed_again(ray_server: ThreadedServer, tmp_path: Path) -> None:
    """Failed lines stay failed on a resume; --retry-failed runs them and keeps one line each."""
    ray_server.queue(*[ErrorResponse(400, message="try later") for _ in range(3)])
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 20, invalid=False)
    address = ray.get_runtime_context().gcs_address
    args = [str(source), "-o", str(target), "--ray-address", address, "--workers", "2"]
    status, _, err = finish(anyapi_batch(ray_server, *args))
    assert status == 1 and "--retry-failed" in err
    assert sum(line["error"] is not None for line in output_lines(target)) == 3
    status, out, err = finish(anyapi_batch(ray_server, *args))
    assert status == 1 and "20 skipped" in out
    status, out, err = finish(anyapi_batch(ray_server, *args, "--retry-failed"))
    assert status == 0, err
    assert "3 succeeded" in out
    lines = output_lines(target)
    assert len(lines) == 20 and all(line["error"] is None for line in lines)
    assert len({line["custom_id"] for line in lines}) == 20


async def test_progress_and_summary(ray_server: ThreadedServer, tmp_path: Path) -> None:
    """The engine reports progress as batches come back, and a last time when finished."""
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 50)
    seen: list[tuple[int, int, bool]] = []

    def progress(stats: BatchStats) -> None:
        seen.append((stats.done, stats.total or 0, stats.finished))

    invalid: list[int] = []
    summary = await run_jsonl_job_on_ray(
        source,
        target,
        api_key=KEY,
        base_url=ray_server.base_url,
        workers=2,
        concurrency=4,
        progress=progress,
        on_invalid_line=lambda number, message: invalid.append(number),
    )
    assert (summary.succeeded, summary.failed, summary.invalid) == (50, 1, 1)
    assert invalid == [51]
    assert seen[-1] == (50, 51, True)
    assert len(seen) >= 3 and seen[0][0] == 0
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)


@pytest.mark.parametrize(("args", "match"), [(["--workers", "0"], "workers")])
def test_bad_engine_options_are_usage_errors(
    ray_server: ThreadedServer, tmp_path: Path, args: list[str], match: str
) -> None:
    """A bad --workers is refused with status 2 before anything runs."""
    source = tmp_path / "in.jsonl"
    write_input(source, 1)
    status, _, err = finish(anyapi_batch(ray_server, str(source), *args))
    assert status == 2 and match in err
    assert not (tmp_path / "in.output.jsonl").exists()


def test_a_refused_key_stops_the_job(ray_server: ThreadedServer, tmp_path: Path) -> None:
    """A 401 stops the job at once (exit 3) and records nothing for it: a resume runs it."""
    ray_server.run(lambda: ray_server.server.set_default(ErrorResponse(401)))
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 40, invalid=False)
    address = ray.get_runtime_context().gcs_address
    status, _, err = finish(
        anyapi_batch(ray_server, str(source), "-o", str(target), "--ray-address", address)
    )
    assert status == 3, err
    assert "refused a request" in err and "run the same job again" in err
    assert output_lines(target) == []


async def test_an_unreachable_endpoint_stops_after_a_run_of_failures(
    ray_cluster: None, tmp_path: Path
) -> None:
    """Connection errors in a row stop the job; nothing is recorded for them."""
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 40, invalid=False)
    with pytest.raises(JobStopped, match="requests in a row failed") as stopped:
        await run_jsonl_job_on_ray(
            source,
            target,
            api_key=KEY,
            base_url="http://127.0.0.1:9/v1",  # the discard port: nothing listens
            max_retries=0,
            workers=1,
            concurrency=2,
        )
    assert stopped.value.summary is not None and stopped.value.summary.failed == 0
    assert output_lines(target) == []


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("Could not find any running Ray instance."),  # ray.init, bad address
        ray.exceptions.RaySystemError("the GCS went away"),  # type: ignore[no-untyped-call]
    ],
)
async def test_a_ray_failure_stops_the_job_naming_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """ray.init's ConnectionError (an OSError) and a RayError stop the job as Ray's fault.

    ray.init against a closed port retries for minutes, and "auto" finds the session's own
    Ray, so the failure is injected where ray.init raises it.
    """
    from anyapi_async._jobs import on_ray

    def fail(address: str | None, workers: int) -> bool:
        raise error

    monkeypatch.setattr(on_ray, "_start_ray", fail)
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"custom_id": "a", **body(0)}) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(JobStopped) as caught:
        await run_jsonl_job_on_ray(source, out, address="127.0.0.1:1", api_key=KEY)
    message = str(caught.value)
    assert message.startswith("stopped: Ray at 127.0.0.1:1 failed: ")
    assert str(error) in message and "run the same job again to resume" in message
    assert caught.value.error is error and out.read_bytes() == b""


@pytest.mark.parametrize(
    ("concurrency", "workers", "shares"),
    [(8, 2, [4, 4]), (7, 2, [4, 3]), (3, 2, [2, 1]), (1, 2, [1]), (10, 4, [3, 3, 2, 2])],
)
def test_concurrency_is_split_exactly(concurrency: int, workers: int, shares: list[int]) -> None:
    """The shares add up to --concurrency, at least 1 each (fewer workers if need be)."""
    assert split_concurrency(concurrency, workers) == shares


async def test_total_in_flight_and_the_jobs_own_budget(
    ray_server: ThreadedServer, tmp_path: Path
) -> None:
    """--concurrency 3 on 2 workers: at most 3 at the server; the rpm budget is removed."""
    ray_server.run(lambda: ray_server.server.set_default(Generated(first_byte_delay=0.05)))
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 40, invalid=False)
    summary = await run_jsonl_job_on_ray(
        source, target, api_key=KEY, base_url=ray_server.base_url,
        workers=2, concurrency=3, rpm=60_000,
    )  # fmt: skip
    assert summary.succeeded == 40
    peak = ray_server.run(lambda: ray_server.server.max_in_flight)
    assert 1 <= peak <= 3
    left = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == BUDGET_NAMESPACE and a["name"].startswith("anyapi-")
    ]
    assert left == []


# --- connecting: bounded, interruptible, one line ------------------------------------------

#: A Ray address where nothing listens: Ray's own connect retries it for minutes.
DEAD_ADDRESS = "127.0.0.1:1"


def batch_on_dead_ray(source: Path, *args: str) -> subprocess.Popen[str]:
    """``anyapi batch --engine ray`` against `DEAD_ADDRESS` (no local server needed)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("ANYAPI_API_KEY", None)
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "anyapi_async", "batch", str(source), "--engine", "ray"]
    cmd += ["--ray-address", DEAD_ADDRESS, "--base-url", "http://127.0.0.1:9/v1", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def our_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("anyapi batch:")]


def test_an_unreachable_ray_gives_up_in_one_line(tmp_path: Path) -> None:
    """--ray-connect-timeout bounds Ray's connect retries: one line naming Ray, status 3."""
    source = tmp_path / "in.jsonl"
    write_input(source, 2, invalid=False)
    status, _, err = finish(batch_on_dead_ray(source, "--ray-connect-timeout", "2"))
    assert status == 3, err
    connecting, stopped = our_lines(err)
    assert connecting == f"anyapi batch: connecting to Ray at {DEAD_ADDRESS} (at most 2 s)"
    assert stopped.startswith(f"anyapi batch: stopped: Ray at {DEAD_ADDRESS} failed: ")
    assert "no answer within 2 s (--ray-connect-timeout" in stopped
    assert "run the same job again to resume" in stopped
    assert "Traceback" not in err
    assert (tmp_path / "in.output.jsonl").read_bytes() == b""


@pytest.mark.parametrize(
    ("sig", "status", "said"),
    [
        (signal.SIGTERM, 3, "stopped: terminated (SIGTERM) while connecting to Ray at "),
        (signal.SIGINT, 130, "interrupted; results so far are in "),
    ],
)
def test_a_signal_ends_the_connect(
    tmp_path: Path, sig: signal.Signals, status: int, said: str
) -> None:
    """SIGTERM or Ctrl-C while Ray's connect retries: the command ends at once, one line."""
    source = tmp_path / "in.jsonl"
    write_input(source, 2, invalid=False)
    proc = batch_on_dead_ray(source, "--ray-connect-timeout", "600")
    watchdog = threading.Timer(WAIT_SECONDS, proc.kill)  # a hang fails, never blocks
    watchdog.start()
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # printed once the signal handlers are in place
        assert first.startswith("anyapi batch: connecting to Ray at "), first
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=WAIT_SECONDS)
    finally:
        watchdog.cancel()
    assert proc.returncode == status, err
    [line] = our_lines(err)
    assert line.startswith(f"anyapi batch: {said}")
    assert "Traceback" not in err


def test_the_connect_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ANYAPI_RAY_CONNECT_TIMEOUT sets the default; a bad value is named."""
    monkeypatch.delenv(ENV_CONNECT_TIMEOUT, raising=False)
    assert connect_timeout_from_env() == DEFAULT_CONNECT_TIMEOUT == 30.0
    monkeypatch.setenv(ENV_CONNECT_TIMEOUT, "4.5")
    assert connect_timeout_from_env() == 4.5
    for bad in ("soon", "0", "-1", "inf"):
        monkeypatch.setenv(ENV_CONNECT_TIMEOUT, bad)
        with pytest.raises(ValueError, match=ENV_CONNECT_TIMEOUT):
            connect_timeout_from_env()


async def test_a_ray_client_address_without_ray_client_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ray:// needs ray[client] (grpcio): refused before any file or Ray is touched."""
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if ray[client] were missing
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 1, invalid=False)
    with pytest.raises(ValueError, match=r"needs Ray Client .*pip install 'anyapi-async\[ray\]'"):
        await run_jsonl_job_on_ray(source, target, address="ray://127.0.0.1:1", api_key=KEY)
    assert not target.exists()


# --- one budget for several jobs ---------------------------------------------------------


async def test_jobs_naming_one_rate_budget_share_it(
    ray_server: ThreadedServer, tmp_path: Path
) -> None:
    """Two jobs at once with the same --rate-budget lease from one actor, which stays."""
    name = f"test-shared-{uuid.uuid4().hex[:8]}"
    jobs = []
    for job in ("a", "b"):
        source, target = tmp_path / f"{job}.jsonl", tmp_path / f"{job}.out.jsonl"
        write_input(source, 20, invalid=False)
        job_run = run_jsonl_job_on_ray(
            source, target, api_key=KEY, base_url=ray_server.base_url,
            workers=1, concurrency=4, rpm=60_000, rate_budget=name,
        )  # fmt: skip
        jobs.append(job_run)
    try:
        first, second = await asyncio.gather(*jobs)
        assert first.succeeded == second.succeeded == 20
        stats = await ray.get_actor(name, namespace=BUDGET_NAMESPACE).stats.remote()
        assert stats["granted"] >= 40 and stats["rpm"] == 60_000  # both jobs' requests
    finally:
        assert RateBudget.remove(name) is True  # it outlived both jobs


async def test_a_shared_budget_needs_a_rate(tmp_path: Path) -> None:
    """--rate-budget without --rpm/--tpm is a usage error, before any file is opened."""
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, 1, invalid=False)
    with pytest.raises(ValueError, match=r"--rate-budget\) needs --rpm or --tpm"):
        await run_jsonl_job_on_ray(source, target, api_key=KEY, rate_budget="shared")
    assert not target.exists()


def test_rate_budget_reaches_the_engine(ray_server: ThreadedServer, tmp_path: Path) -> None:
    """`anyapi batch --rate-budget NAME` passes the name on (refused here: no --rpm)."""
    source = tmp_path / "in.jsonl"
    write_input(source, 1)
    status, _, err = finish(anyapi_batch(ray_server, str(source), "--rate-budget", "shared"))
    assert status == 2 and "needs --rpm or --tpm" in err
    assert not (tmp_path / "in.output.jsonl").exists()
