"""The resumable JSONL job runner and the ``anyapi batch`` command functions."""

from __future__ import annotations

import argparse
import ast
import asyncio
import gc
import json
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from anyapi_async._batch import BatchStats
from anyapi_async._cli import build_parser
from anyapi_async._jobs import JobError, JobSummary, run_jsonl_job
from anyapi_async._jobs.files import count_lines, read_input, result_record
from anyapi_async._jobs.plan import open_job
from anyapi_async.testing import ErrorResponse, Generated, Hang, LocalServer

from ..conftest import API_KEY
from .conftest import wait_until

MESSAGES = [{"role": "user", "content": "hello"}]


def body(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}], **extra}


def batch_line(custom_id: str, b: dict[str, Any] | None = None) -> str:
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**line, "body": b if b is not None else body()})


def write_input(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


async def job(server: LocalServer, tmp_path: Path, **kwargs: Any) -> JobSummary:
    kwargs.setdefault("concurrency", 4)
    return await run_jsonl_job(
        tmp_path / "in.jsonl",
        tmp_path / "out.jsonl",
        api_key=API_KEY,
        base_url=server.base_url,
        **kwargs,
    )


async def test_mixed_input_gives_one_line_per_input(
    server: LocalServer, tmp_path: Path, no_backoff: list[float]
) -> None:
    """Good lines, plain bodies, invalid lines and an API error: exactly one line each."""
    good = body(1, provider={"order": ["x"]})  # a gateway field goes out untouched
    write_input(
        tmp_path / "in.jsonl",
        [
            batch_line("a", good),  # 1
            json.dumps(body(2)),  # 2: a plain body, id line-2
            "{not json",  # 3
            "[1, 2]",  # 4
            json.dumps({"custom_id": "nob"}),  # 5
            json.dumps({"custom_id": 5, "body": body()}),  # 6
            json.dumps({"custom_id": "u", "url": "/v1/embeddings", "body": body()}),  # 7
            json.dumps({"custom_id": "meth", "method": "GET", "body": body()}),  # 8
            batch_line("nomodel", {"messages": MESSAGES}),  # 9
            batch_line("st", body(stream=True)),  # 10
            "   ",  # 11: blank, ignored
            batch_line("srv400"),  # 12
        ],
    )
    server.queue(Generated(), Generated(), ErrorResponse(400, "nope"))
    invalid: list[int] = []
    summary = await job(
        server, tmp_path, concurrency=1, on_invalid_line=lambda n, message: invalid.append(n)
    )
    lines = read_output(tmp_path / "out.jsonl")
    by_id = {line["custom_id"]: line for line in lines}
    assert len(lines) == len(by_id) == 11
    assert invalid == [3, 4, 5, 6, 7, 8, 9, 10]
    codes = {cid: line["error"]["code"] for cid, line in by_id.items() if line["error"]}
    assert codes == {
        "line-3": "invalid_json",
        "line-4": "invalid_line",
        "nob": "missing_body",
        "line-6": "invalid_line",
        "u": "unsupported_url",
        "meth": "unsupported_method",
        "nomodel": "invalid_body",
        "st": "invalid_body",
        "srv400": None,
    }
    for n, cid in [(3, "line-3"), (5, "nob"), (9, "nomodel"), (10, "st")]:
        assert by_id[cid]["error"]["message"].startswith(f"line {n}: ")
        assert by_id[cid]["error"]["type"] == "invalid_request" and by_id[cid]["response"] is None
    error = by_id["srv400"]
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["message"] == "nope"
    assert error["error"]["type"] == "invalid_request_error" and "nope" in error["error"]["message"]
    ok = by_id["a"]
    assert ok["error"] is None and ok["response"]["status_code"] == 200
    assert ok["response"]["body"]["object"] == "chat.completion"  # the server's body, verbatim
    sent = {rec.request_id: rec.json for rec in server.requests}
    assert sent[ok["response"]["request_id"]]["provider"] == {"order": ["x"]}
    assert by_id["line-2"]["error"] is None
    assert (summary.succeeded, summary.failed, summary.invalid, summary.skipped) == (2, 9, 8, 0)
    assert not summary.ok and len(server.requests) == 3

    again = await job(server, tmp_path)
    assert (again.succeeded, again.failed, again.skipped, again.skipped_failed) == (0, 0, 11, 9)
    assert not again.ok and str(again) == (
        "0 succeeded, 0 failed, 11 skipped as already done (9 of them had failed)"
    )
    assert len(read_output(tmp_path / "out.jsonl")) == 11 and len(server.requests) == 3


async def test_torn_last_line_is_repaired_and_the_rest_resumed(
    server: LocalServer, tmp_path: Path
) -> None:
    """A crash mid-write leaves half a line: it is cut, and only missing items run."""
    write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(6)])
    await job(server, tmp_path)
    out = tmp_path / "out.jsonl"
    lines = out.read_bytes().splitlines(keepends=True)
    kept = {json.loads(line)["custom_id"] for line in lines[:3]}
    out.write_bytes(b"".join(lines[:3]) + lines[3][:40])  # a torn fourth line
    server.reset()
    seen: list[BatchStats] = []
    summary = await job(server, tmp_path, progress=seen.append)
    assert (summary.succeeded, summary.skipped) == (3, 3)
    assert len(server.requests) == 3
    ids = [line["custom_id"] for line in read_output(out)]
    assert sorted(ids) == [f"r{i}" for i in range(6)]
    assert {rec.json["messages"][0]["content"] for rec in server.requests} == {
        f"q{i}" for i in range(6) if f"r{i}" not in kept
    }
    assert seen[-1].finished and seen[-1].skipped == 3 and seen[-1].total == 3


async def test_duplicate_ids_each_get_a_line_and_resume(
    server: LocalServer, tmp_path: Path
) -> None:
    """Two lines with one custom_id: both run, both written, both skipped on a resume."""
    write_input(tmp_path / "in.jsonl", [batch_line("x"), batch_line("x"), batch_line("y")])
    first = await job(server, tmp_path)
    assert first.succeeded == 3
    second = await job(server, tmp_path)
    assert (second.succeeded, second.skipped) == (0, 3)
    assert sorted(line["custom_id"] for line in read_output(tmp_path / "out.jsonl")) == [
        "x",
        "x",
        "y",
    ]


async def test_model_override_replaces_every_model(server: LocalServer, tmp_path: Path) -> None:
    """model=... is sent for every line, with or without a model of its own."""
    write_input(tmp_path / "in.jsonl", [batch_line("a"), batch_line("b", {"messages": MESSAGES})])
    summary = await job(server, tmp_path, model="forced")
    assert summary.ok and summary.succeeded == 2
    assert [rec.json["model"] for rec in server.requests] == ["forced", "forced"]


async def test_cancelled_job_resumes_with_exactly_one_line_each(
    server: LocalServer, tmp_path: Path
) -> None:
    """Cancelled (as Ctrl-C does) with requests hung in flight; the rerun completes it."""
    write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(20)])
    server.queue(*(Generated() for _ in range(5)))
    server.set_default(Hang())
    out = tmp_path / "out.jsonl"
    task = asyncio.create_task(job(server, tmp_path))
    await wait_until(lambda: out.exists() and len(out.read_bytes().splitlines()) == 5)
    await wait_until(lambda: server.in_flight == 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.set_default(None)
    summary = await job(server, tmp_path)
    assert (summary.succeeded, summary.skipped) == (15, 5)
    assert sorted(line["custom_id"] for line in read_output(out)) == sorted(
        f"r{i}" for i in range(20)
    )


_KILLED_JOB = """
import asyncio, sys
from anyapi_async._jobs import run_jsonl_job
asyncio.run(run_jsonl_job(sys.argv[1], sys.argv[2], api_key="k", base_url=sys.argv[3],
                          concurrency=4))
"""


async def test_sigkilled_job_resumes_with_exactly_one_line_each(
    server: LocalServer, tmp_path: Path
) -> None:
    """A job killed with SIGKILL mid-way, then rerun: every input has exactly one line."""
    n, answered = 40, 12
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(n)])
    out = tmp_path / "out.jsonl"
    server.queue(*(Generated() for _ in range(answered)))
    server.set_default(Hang())  # the rest stay in flight until the kill
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_JOB, str(source), str(out), server.base_url
    )
    try:
        await wait_until(lambda: server.in_flight == 4 and len(server.requests) == answered + 4, 30)
        await wait_until(lambda: len(out.read_bytes().splitlines()) == answered)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    await wait_until(lambda: server.in_flight == 0)
    server.set_default(None)
    summary = await job(server, tmp_path)
    assert (summary.succeeded, summary.skipped, summary.failed) == (n - answered, answered, 0)
    ids = [line["custom_id"] for line in read_output(out)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(n))
    assert all(line["error"] is None for line in read_output(out))


async def test_refusals(server: LocalServer, tmp_path: Path) -> None:
    """Missing input, input as output, a corrupt output, a second run on the same output."""
    with pytest.raises(FileNotFoundError):
        await job(server, tmp_path)
    assert not (tmp_path / "out.jsonl").exists()
    write_input(tmp_path / "in.jsonl", [batch_line("a")])
    with pytest.raises(JobError, match="must not be the input"):
        await run_jsonl_job(tmp_path / "in.jsonl", tmp_path / "in.jsonl", api_key="k")
    ok = '{"custom_id": "a", "response": null, "error": null}\n'
    (tmp_path / "out.jsonl").write_text(ok + 'not json\n{"custom_id": "b"}\n')
    with pytest.raises(JobError, match=r"out.jsonl:2: not a result line"):
        await job(server, tmp_path)
    (tmp_path / "out.jsonl").unlink()
    server.set_default(Hang())
    first = asyncio.create_task(job(server, tmp_path))
    await wait_until(lambda: server.in_flight == 1)
    with pytest.raises(JobError, match="being written by another job"):
        await job(server, tmp_path)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(ValueError, match="either client"):
        await run_jsonl_job("a", "b", client=object(), api_key="k")  # type: ignore[arg-type]


# --- the command ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["batch", *argv])


def test_arguments_and_defaults() -> None:
    """INPUT, -o, --concurrency 64, --rpm/--tpm, --base-url, --model, --max-retries, --progress."""
    args = parse("in.jsonl")
    assert (args.input, args.output, args.concurrency, args.rpm, args.tpm) == (
        "in.jsonl",
        None,
        64,
        None,
        None,
    )
    assert (args.base_url, args.model, args.max_retries, args.progress) == (None, None, 2, None)
    assert args.retry_failed is False
    args = parse(
        "in.jsonl", "-o", "o.jsonl", "--concurrency", "8", "--rpm", "500", "--tpm", "1e5",
        "--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--max-retries", "0",
        "--no-progress", "--retry-failed",
    )  # fmt: skip
    assert (args.output, args.concurrency, args.rpm, args.tpm) == ("o.jsonl", 8, 500.0, 1e5)
    assert (args.model, args.max_retries, args.progress, args.retry_failed) == ("m", 0, False, True)
    for bad in (["--concurrency", "0"], ["--rpm", "-1"], ["--max-retries", "x"], ["--model", ""]):
        with pytest.raises(SystemExit):
            parse("in.jsonl", *bad)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"a\nb\n", 2), (b"\n", 1)],
)
def test_count_lines_counts_a_last_line_without_newline(
    tmp_path: Path, data: bytes, expected: int
) -> None:
    """A one-line file without its final newline is one line (the progress total)."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    assert count_lines(path) == expected


#: docs/batch.md: a resume needs about 220 bytes per short id at its start (the table and
#: the copy the check makes) and keeps about 165; the bounds leave 15 % for other Pythons.
RESUME_PEAK_BYTES_PER_ID = 220
RESUME_KEPT_BYTES_PER_ID = 165


def test_the_resume_table_costs_what_the_docs_say(tmp_path: Path) -> None:
    """Resuming 20,000 answered ids: the memory open_job holds and peaks at, per id."""
    n = 20_000
    source = write_input(
        tmp_path / "in.jsonl", [json.dumps({"custom_id": f"line-{i}", **body(i)}) for i in range(n)]
    )
    out = tmp_path / "out.jsonl"
    with open(source, "rb") as f, open(out, "wb") as o:
        for item in read_input(f):
            record = result_record(item.custom_id, item.fingerprint, None, ValueError("x"))
            record["error"] = None  # an answered request, as far as a resume reads it
            record["response"] = {"status_code": 200, "request_id": None, "body": {}}
            o.write(json.dumps(record).encode() + b"\n")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        job = open_job(source, out)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert job.recorded == n
        assert (held - before) / n <= RESUME_KEPT_BYTES_PER_ID * 1.15
        assert (peak - before) / n <= RESUME_PEAK_BYTES_PER_ID * 1.15
    finally:
        job.close()


def test_the_job_package_loads_no_ray_but_for_the_ray_engine() -> None:
    """files, plan and local (what run_jsonl_job needs) import neither Ray nor its engine."""
    code = (
        "import sys\n"
        "import anyapi_async._jobs.files, anyapi_async._jobs.plan, anyapi_async._jobs.local\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "anyapi_async._jobs.local" in modules  # the script did run
    loaded = {m for m in modules if m == "ray" or m.startswith(("ray.", "anyapi_async.ray"))}
    assert not loaded and "anyapi_async._jobs.on_ray" not in modules


def test_the_engines_use_only_the_clients_public_face() -> None:
    """The job package and the Ray stage take nothing from _client but AsyncClient."""
    import anyapi_async

    package = Path(anyapi_async.__file__).parent
    for path in [*sorted((package / "_jobs").glob("*.py")), package / "ray.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_client"):
                assert [a.name for a in node.names] == ["AsyncClient"], path.name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert node.value.id != "_client", f"{path.name}: _client.{node.attr}"
