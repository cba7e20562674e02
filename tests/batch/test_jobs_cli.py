"""``anyapi batch`` as a user runs it: subprocesses against the local server, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from anyapi_async._cli import DEFAULT_BATCH_CONCURRENCY
from anyapi_async._jobs import DEFAULT_JOB_CONCURRENCY, STOP_AFTER_ENDPOINT_ERRORS
from anyapi_async.testing import ErrorResponse, Generated, Hang, LocalServer

from .conftest import wait_until
from .test_jobs import batch_line, body, read_output, write_input

TIMEOUT = 60


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYAPI_")}
    env.update(extra)
    return env


async def start(*args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async", "batch", *args, "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(**env),
    )  # fmt: skip


async def batch(*args: str, **env: str) -> tuple[int, str, str]:
    """Run ``anyapi batch ARGS`` to the end: status, stdout, stderr."""
    proc = await start(*args, **env)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return proc.returncode, out.decode(), err.decode()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ids_and_errors(path: Path) -> dict[str, Any]:
    """custom_id -> error of every line, checking each id appears once."""
    lines = read_output(path)
    by_id = {line["custom_id"]: line["error"] for line in lines}
    assert len(by_id) == len(lines), [line["custom_id"] for line in lines]
    return by_id


def test_default_concurrency_matches_the_job() -> None:
    """The CLI's --concurrency default is the job's."""
    assert DEFAULT_BATCH_CONCURRENCY == DEFAULT_JOB_CONCURRENCY


async def test_help_lists_every_option_the_environment_and_exit_statuses() -> None:
    """`anyapi batch --help` documents options, variables and statuses like `chat --help`."""
    status, out, _ = await batch("--help")
    assert status == 0 and out.startswith("usage: anyapi batch")
    for text in (
        "INPUT", "--output", "--retry-failed", "--model", "--concurrency", "--rpm", "--tpm",
        "--progress", "--base-url", "--api-key-env", "--timeout", "--max-retries",
        "ANYAPI_API_KEY", "ANYAPI_BASE_URL", "exit status", "130", '"custom_id"', '"body"',
    ):  # fmt: skip
        assert text in out, text
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {code}" in out, code


async def test_summary_and_exit_statuses(server: LocalServer, tmp_path: Path) -> None:
    """0 when all succeed (output named from the input), 1 with a hint when any failed."""
    source = write_input(tmp_path / "in.jsonl", [batch_line("a"), json.dumps(body(1))])
    status, out, err = await batch(str(source), "--base-url", server.base_url)
    target = tmp_path / "in.output.jsonl"
    assert (status, err) == (0, "")
    assert out == f"anyapi batch: 2 succeeded, 0 failed, 0 skipped as already done -> {target}\n"
    write_input(source, [batch_line("a"), json.dumps(body(1)), "oops"])
    status, out, err = await batch(str(source), "--base-url", server.base_url)
    assert status == 1
    assert "0 succeeded, 1 failed, 2 skipped as already done -> " in out
    assert f"anyapi batch: {source}: line 3: not valid JSON" in err
    assert "add --retry-failed to run them again" in err


async def test_retry_failed_survives_sigkill_and_leaves_one_line_each(
    server: LocalServer, tmp_path: Path
) -> None:
    """400/500 failures, then --retry-failed killed with SIGKILL mid-run, then a resume."""
    n = 12
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(n)])
    out = tmp_path / "out.jsonl"
    common = (str(source), "-o", str(out), "--base-url", server.base_url, "--max-retries", "0")
    failing = {3: 400, 4: 500, 7: 500, 8: 400, 11: 500}
    server.queue(*(ErrorResponse(failing[i]) if i in failing else Generated() for i in range(n)))
    status, stdout, err = await batch(*common, "--concurrency", "1")
    assert status == 1, err
    assert "7 succeeded, 5 failed" in stdout
    first = read_output(out)
    errors = ids_and_errors(out)
    assert {cid for cid, e in errors.items() if e} == {f"r{i}" for i in failing}
    # A plain rerun sends nothing and still says how many had failed.
    server.reset()
    status, stdout, _ = await batch(*common)
    assert (
        status == 1
        and "0 succeeded, 0 failed, 12 skipped as already done (5 of them had failed)" in stdout
    )
    assert server.requests == []

    # The retry run answers two of them, then hangs on the rest until killed.
    server.queue(Generated(), Generated())
    server.set_default(Hang())
    proc = await start(*common, "--retry-failed", "--concurrency", "2")
    try:
        await wait_until(lambda: len(server.requests) == 4 and server.in_flight == 2, TIMEOUT)
        await wait_until(lambda: len(out.read_bytes().splitlines()) == n - len(failing) + 2)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Killed: the file holds the old successes, two new ones, and nothing for the rest.
    errors = ids_and_errors(out)
    assert len(errors) == n - len(failing) + 2 and not any(errors.values())
    assert [line for line in read_output(out)[: n - len(failing)]] == [
        line for line in first if line["error"] is None
    ]
    await wait_until(lambda: server.in_flight == 0)
    server.set_default(None)
    status, stdout, err = await batch(*common)  # a plain resume finishes the job
    assert status == 0, err
    assert "3 succeeded, 0 failed, 9 skipped as already done" in stdout
    errors = ids_and_errors(out)
    assert sorted(errors) == sorted(f"r{i}" for i in range(n)) and not any(errors.values())


_KILL_AT = """
import os, signal, sys
from anyapi_async import _cli
from anyapi_async._jobs import files
point = sys.argv.pop(1)
real_replace, real_write = os.replace, os.write
writes = 0
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst):
    if point == "before-rename":
        die()
    real_replace(src, dst)
    if point == "after-rename":
        die()
def write(fd, data):
    global writes
    writes += 1
    if point == "mid-copy" and writes == 2:  # half of the kept lines are in the new file
        real_write(fd, bytes(data)[: len(data) // 2])
        die()
    return real_write(fd, data)
files.os.replace = replace
files.os.write = write
files.READ_CHUNK = 64  # copy in many small writes
sys.exit(_cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("point", ["mid-copy", "before-rename", "after-rename"])
async def test_retry_failed_compaction_killed_at_any_point_stays_valid(
    server: LocalServer, tmp_path: Path, point: str
) -> None:
    """SIGKILL while the failed results are being removed: the file stays whole and resumable."""
    n = 10
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(n)])
    out = tmp_path / "out.jsonl"
    common = (str(source), "-o", str(out), "--base-url", server.base_url, "--max-retries", "0")
    server.queue(*(ErrorResponse(500) if i % 3 == 0 else Generated() for i in range(n)))
    assert (await batch(*common, "--concurrency", "1"))[0] == 1
    before = out.read_bytes()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILL_AT, point, "batch", *common, "--retry-failed",
        "--no-progress", env=clean_env(),
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == -signal.SIGKILL
    after = out.read_bytes()
    kept = b"".join(line for line in before.splitlines(keepends=True) if b'"error":null' in line)
    assert after == (kept if point == "after-rename" else before)
    leftover = ".out.jsonl.anyapi-compact"  # the new file, not renamed yet
    assert (leftover in os.listdir(tmp_path)) == (point != "after-rename")
    if point == "mid-copy":
        assert 0 < len((tmp_path / leftover).read_bytes()) < len(kept)
    assert server.requests_for("/chat/completions")[n:] == []  # killed before sending
    status, stdout, err = await batch(*common, "--retry-failed")
    assert status == 0, err
    assert "4 succeeded, 0 failed, 6 skipped as already done" in stdout
    errors = ids_and_errors(out)
    assert sorted(errors) == sorted(f"r{i}" for i in range(n)) and not any(errors.values())
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []


async def test_dead_endpoint_stops_early_and_records_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    """A closed port: one line, status 3, nothing recorded; the rerun completes every line."""
    n = 40
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(n)])
    out = tmp_path / "out.jsonl"
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    status, stdout, err = await batch(
        str(source), "-o", str(out), "--base-url", dead, "--max-retries", "0",
        "--concurrency", "2",
    )  # fmt: skip
    assert status == 3 and stdout == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"anyapi batch: stopped: {STOP_AFTER_ENDPOINT_ERRORS} requests in a row")
    assert "Connection error" in err and "run the same job again to resume" in err
    assert out.read_bytes() == b""
    status, stdout, err = await batch(str(source), "-o", str(out), "--base-url", server.base_url)
    assert status == 0, err
    assert f"{n} succeeded, 0 failed, 0 skipped" in stdout
    assert len(ids_and_errors(out)) == n


async def test_a_short_job_against_a_dead_endpoint_records_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    """Fewer lines than the stop threshold, all unreachable: status 3, the rerun completes."""
    source = write_input(tmp_path / "one.jsonl", [batch_line("only")])
    out = tmp_path / "out.jsonl"
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    status, stdout, err = await batch(
        str(source), "-o", str(out), "--base-url", dead, "--max-retries", "0"
    )
    assert status == 3 and stdout == "" and err.count("\n") == 1, err
    assert err.startswith("anyapi batch: stopped: no request succeeded (1 failed): ")
    assert "Connection error" in err and "run the same job again to resume" in err
    assert out.read_bytes() == b""
    status, stdout, err = await batch(str(source), "-o", str(out), "--base-url", server.base_url)
    assert status == 0, err
    assert "1 succeeded, 0 failed, 0 skipped" in stdout
    assert ids_and_errors(out) == {"only": None}


@pytest.mark.parametrize(
    ("code", "error_code"), [(401, None), (402, None), (403, None), (429, "insufficient_quota")]
)
async def test_refused_key_or_account_stops_at_once(
    server: LocalServer, tmp_path: Path, code: int, error_code: str | None
) -> None:
    """401/402/403 or out of credit stop the job; the refused request is not recorded."""
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(20)])
    out = tmp_path / "out.jsonl"
    refusal = ErrorResponse(code, code=error_code)
    server.queue(Generated(), Generated(), refusal, *(Hang() for _ in range(3)))
    args = (
        str(source), "-o", str(out), "--base-url", server.base_url, "--concurrency", "1",
        "--max-retries", "0",
    )  # fmt: skip
    status, _, err = await batch(*args)
    assert status == 3
    assert err.startswith(
        f"anyapi batch: stopped: the endpoint refused a request: Error code: {code}"
    )
    assert err.count("\n") == 1
    assert sorted(ids_and_errors(out)) == ["r0", "r1"]
    server.reset()
    status, stdout, _ = await batch(*args)
    assert status == 0 and "18 succeeded, 0 failed, 2 skipped" in stdout
    assert len(server.requests) == 18


async def test_wrong_base_url_stops_with_a_hint(server: LocalServer, tmp_path: Path) -> None:
    """A base URL without /v1: the 404s stop the job and the line says what to try."""
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(30)])
    out = tmp_path / "out.jsonl"
    status, _, err = await batch(
        str(source), "-o", str(out), "--base-url", server.url, "--concurrency", "1"
    )
    assert status == 3 and err.count("\n") == 1
    assert f"try --base-url {server.url}/v1" in err
    assert out.read_bytes() == b""
    assert len(server.requests) == STOP_AFTER_ENDPOINT_ERRORS


async def test_unknown_model_is_an_item_failure_not_a_stop(tmp_path: Path) -> None:
    """404 model_not_found belongs to its line: recorded, and the job goes on."""
    async with LocalServer() as strict:  # serves anyapi-local only
        lines = [batch_line(f"r{i}", body(i, model="anyapi-local")) for i in range(8)]
        lines[0] = batch_line("bad", body(0, model="no-such-model"))
        source = write_input(tmp_path / "in.jsonl", lines)
        out = tmp_path / "out.jsonl"
        status, stdout, _ = await batch(str(source), "-o", str(out), "--base-url", strict.base_url)
    assert status == 1 and "7 succeeded, 1 failed" in stdout
    error = ids_and_errors(out)["bad"]
    assert error["code"] == "model_not_found" and "no-such-model" in error["message"]


async def test_another_jobs_output_is_refused(server: LocalServer, tmp_path: Path) -> None:
    """Two inputs whose line-N ids collide: the second is refused, nothing written, status 2."""
    a = write_input(tmp_path / "a.jsonl", [json.dumps(body(i)) for i in range(5)])
    b = write_input(tmp_path / "b.jsonl", [json.dumps(body(100 + i)) for i in range(5)])
    out = tmp_path / "out.jsonl"
    assert (await batch(str(a), "-o", str(out), "--base-url", server.base_url))[0] == 0
    before = out.read_bytes()
    server.reset()
    status, stdout, err = await batch(str(b), "-o", str(out), "--base-url", server.base_url)
    assert status == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"anyapi batch: error: {out} holds results of other requests: ")
    assert "custom_id 'line-1' of line 1 was answered for a different request (and 4 more)" in err
    assert out.read_bytes() == before and server.requests == []
    # Results for ids the input does not have are another job's too.
    c = write_input(tmp_path / "c.jsonl", [batch_line(f"c{i}", body(i)) for i in range(2)])
    status, _, err = await batch(str(c), "-o", str(out), "--base-url", server.base_url)
    assert status == 2 and "5 results (custom_id 'line-1', ...) match no line of" in err
    # Another --model is another request as well; the same command resumes.
    status, _, err = await batch(
        str(a), "-o", str(out), "--base-url", server.base_url, "--model", "x"
    )
    assert status == 2 and "holds results of other requests" in err
    assert (await batch(str(a), "-o", str(out), "--base-url", server.base_url))[0] == 0
    assert out.read_bytes() == before and server.requests == []


async def test_a_file_that_is_no_jobs_output_is_refused_untouched(
    server: LocalServer, tmp_path: Path
) -> None:
    """-o naming a data file (no newline; or whole non-result lines): status 2, nothing cut."""
    source = write_input(tmp_path / "one.jsonl", [batch_line("a")])
    for name, data in [
        ("precious.txt", b"precious data"),
        ("notes.txt", b"line one\nline two"),
        ("input.jsonl", source.read_bytes()),  # an input file given as the output
        ("records.jsonl", b'{"custom_id": "a", "note": 1}\n'),
    ]:
        target = tmp_path / name
        target.write_bytes(data)
        status, stdout, err = await batch(
            str(source), "-o", str(target), "--base-url", server.base_url
        )
        assert status == 2 and stdout == "", (name, err)
        assert err.startswith("anyapi batch: error: ") and err.count("\n") == 1, err
        assert "not a job's output" in err or "not a result line" in err, err
        assert target.read_bytes() == data, name
    assert server.requests == []


async def test_retry_failed_keeps_a_symlinked_outputs_link_and_mode(
    server: LocalServer, tmp_path: Path
) -> None:
    """Compaction rewrites the link's target in place of the link, with the old mode."""
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(4)])
    real = tmp_path / "data" / "results.jsonl"
    real.parent.mkdir()
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    args = (str(source), "-o", str(link), "--base-url", server.base_url, "--concurrency", "1")
    server.queue(ErrorResponse(400), Generated(), ErrorResponse(400))
    status, _, _ = await batch(*args)
    assert status == 1
    real.chmod(0o640)
    status, stdout, err = await batch(*args, "--retry-failed")
    assert status == 0, err
    assert "2 succeeded, 0 failed, 2 skipped" in stdout
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real.stat().st_mode & 0o777) == 0o640
    errors = ids_and_errors(real)
    assert sorted(errors) == [f"r{i}" for i in range(4)] and not any(errors.values())
    assert sorted(p.name for p in real.parent.iterdir()) == ["results.jsonl"]


async def test_edited_failed_line_runs_again_with_retry_failed(
    server: LocalServer, tmp_path: Path
) -> None:
    """A line fixed after it failed is refused as changed, unless --retry-failed redoes it."""
    source = write_input(tmp_path / "in.jsonl", [batch_line("a"), "{broken", batch_line("c")])
    out = tmp_path / "out.jsonl"
    common = (str(source), "-o", str(out), "--base-url", server.base_url)
    assert (await batch(*common))[0] == 1
    write_input(source, [batch_line("a"), json.dumps(body(7)), batch_line("c")])
    status, _, err = await batch(*common)
    assert status == 2 and "use --retry-failed if only lines that had failed were changed" in err
    status, stdout, err = await batch(*common, "--retry-failed")
    assert status == 0, err
    assert "running the 1 failed requests again" in err
    assert "1 succeeded, 0 failed, 2 skipped" in stdout
    assert sorted(ids_and_errors(out)) == ["a", "c", "line-2"]


async def test_input_and_output_slips_get_clear_messages(
    server: LocalServer, tmp_path: Path
) -> None:
    """A BOM, missing messages, the request-body shape, a blank and a torn output line."""
    lines = [
        batch_line("bom"),
        json.dumps({"custom_id": "plain", **body(1)}),
        json.dumps({"custom_id": "nomsg", "model": "m"}),
        json.dumps({"custom_id": "neither", "prompt": "hi"}),
    ]  # fmt: skip
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\n" for line in lines).encode())
    out = tmp_path / "out.jsonl"
    common = (str(source), "-o", str(out), "--base-url", server.base_url)
    status, stdout, err = await batch(*common)
    assert status == 1 and "2 succeeded, 2 failed" in stdout
    errors = ids_and_errors(out)
    assert errors["bom"] is None and errors["plain"] is None
    assert all("custom_id" not in r.json for r in server.requests)
    assert errors["nomsg"]["message"] == "line 3: the body has no 'messages'"
    assert errors["neither"]["code"] == "missing_body"
    assert (
        '"body": {...}} or a request body {"custom_id" (optional), "model"'
        in errors["neither"]["message"]
    )
    assert f"{source}: line 3: the body has no 'messages'" in err
    # A blank line in the output (an editor's) is tolerated; a torn last line is reported.
    data = out.read_bytes()
    torn = b'{"custom_id": "tor'
    out.write_bytes(b"\n" + data + torn)
    status, stdout, err = await batch(*common)
    assert status == 1 and "0 succeeded, 0 failed, 4 skipped" in stdout
    assert f"anyapi batch: {out}: removed a torn last line ({len(torn)} bytes)" in err
    assert out.read_bytes() == b"\n" + data


async def test_usage_mistakes_are_status_2(server: LocalServer, tmp_path: Path) -> None:
    """--model '', --base-url '', a missing input, no key for a remote URL: one line each."""
    source = write_input(tmp_path / "in.jsonl", [batch_line("a")])
    for args, text in [
        ((str(source), "--model", ""), "argument -m/--model: must not be empty"),
        ((str(source), "--base-url", ""), "--base-url is empty"),
        ((str(tmp_path / "nope.jsonl"), "--base-url", server.base_url), "cannot open"),
        ((str(source), "--base-url", "https://api.invalid/v1"), "no API key: set ANYAPI_API_KEY"),
        ((str(source), "-o", str(source), "--base-url", server.base_url), "must not be the input"),
    ]:
        status, stdout, err = await batch(*args)
        assert status == 2 and stdout == "", (args, err)
        assert text in err, (args, err)
        if "--model" not in args:  # argparse's own errors add a usage line
            assert err.count("\n") == 1 and err.startswith("anyapi batch: error: "), err
    assert not (tmp_path / "nope.output.jsonl").exists()


async def test_write_error_names_the_file_and_how_to_resume(
    server: LocalServer, tmp_path: Path
) -> None:
    """A full disk (/dev/full): status 3 and one line naming the file."""
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(3)])
    status, _, err = await batch(str(source), "-o", "/dev/full", "--base-url", server.base_url)
    assert status == 3 and err.count("\n") == 1
    assert "cannot write to /dev/full: No space left on device" in err
    assert "run the same job again to resume" in err


async def test_retry_failed_from_python(server: LocalServer, tmp_path: Path) -> None:
    """run_jsonl_job(retry_failed=True) keeps one line per id, the newest result."""
    from anyapi_async import run_jsonl_job

    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(4)])
    out = tmp_path / "out.jsonl"
    server.queue(Generated(), ErrorResponse(400, "first"), Generated(), Generated())
    kwargs: dict[str, Any] = {"api_key": "k", "base_url": server.base_url, "concurrency": 1}
    first = await run_jsonl_job(source, out, **kwargs)
    assert (first.succeeded, first.failed) == (3, 1)
    server.queue(ErrorResponse(400, "second"))
    again = await run_jsonl_job(source, out, retry_failed=True, **kwargs)
    assert (again.retried, again.failed, again.skipped, again.skipped_failed) == (1, 1, 3, 0)
    assert ids_and_errors(out)["r1"]["message"].endswith("second")
    done = await run_jsonl_job(source, out, retry_failed=True, **kwargs)
    assert done.ok and (done.retried, done.succeeded, done.skipped) == (1, 1, 3)
    assert not any(ids_and_errors(out).values())


async def test_ctrl_c_says_how_to_resume(server: LocalServer, tmp_path: Path) -> None:
    """SIGINT mid-run: status 130, a line naming the output, and the rerun completes it."""
    source = write_input(tmp_path / "in.jsonl", [batch_line(f"r{i}", body(i)) for i in range(6)])
    out = tmp_path / "out.jsonl"
    args = (str(source), "-o", str(out), "--base-url", server.base_url, "--concurrency", "2")
    server.queue(Generated(), Generated())
    server.set_default(Hang())
    proc = await start(*args)
    try:
        await wait_until(lambda: len(server.requests) == 4 and server.in_flight == 2, TIMEOUT)
    finally:
        proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 130
    assert f"anyapi batch: interrupted; results so far are in {out}" in err.decode()
    assert "Traceback" not in err.decode()
    assert sorted(ids_and_errors(out)) == ["r0", "r1"]
    await wait_until(lambda: server.in_flight == 0)
    server.set_default(None)
    status, stdout, _ = await batch(*args)
    assert status == 0 and "4 succeeded, 0 failed, 2 skipped" in stdout


async def test_progress_without_tqdm_is_a_usage_error(tmp_path: Path) -> None:
    """--progress without tqdm installed: status 2 and the pip command to run."""
    source = write_input(tmp_path / "in.jsonl", [batch_line("a")])
    script = (
        "import sys; sys.modules['tqdm'] = None; from anyapi_async._cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, "batch", str(source), "--progress",
        "--base-url", "http://127.0.0.1:9/v1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2 and err.decode().count("\n") == 1
    assert "pip install 'anyapi-async[progress]'" in err.decode()
