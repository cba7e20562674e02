"""The extraction, evaluation and agent examples, run as scripts against a local server."""

from __future__ import annotations

import json
import re
from pathlib import Path

from anyapi_async.testing import ErrorResponse, LocalServer

from ._run import run_example


async def test_extract_local() -> None:
    """extract.py --local prints one schema-shaped JSON object per built-in text."""
    status, out, err = await run_example("extract", "--local")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines:
        data = json.loads(line)
        assert set(data) == {"people", "sentiment", "summary"}
        assert data["sentiment"] in {"positive", "neutral", "negative"}
        for person in data["people"]:
            assert set(person) == {"name", "email", "company"}


async def test_extract_remote_with_file(tmp_path: Path, anyapi_server: LocalServer) -> None:
    """With a key (the remote path) it reads texts from a file and asks the given endpoint."""
    texts = tmp_path / "texts.txt"
    texts.write_text("Ada wrote to bob@example.com.\n\nCall Grace.\n", encoding="utf-8")
    status, out, err = await run_example(
        "extract", str(texts), "--model", "extract-m",
        ANYAPI_API_KEY="sk-test", ANYAPI_BASE_URL=anyapi_server.base_url,
    )  # fmt: skip
    assert status == 0, err
    assert len(out.splitlines()) == 2
    bodies = [r.json for r in anyapi_server.requests_for("/chat/completions")]
    assert sorted(b["messages"][1]["content"] for b in bodies) == [
        "Ada wrote to bob@example.com.",
        "Call Grace.",
    ]
    assert all(b["model"] == "extract-m" for b in bodies)
    fmt = bodies[0]["response_format"]["json_schema"]
    assert fmt["name"] == "Extraction" and fmt["strict"] is True
    assert anyapi_server.requests[0].headers["authorization"] == "Bearer ***"


async def test_extract_missing_file_is_one_line(tmp_path: Path) -> None:
    """A file that does not exist (or is not UTF-8): status 2 and one line naming it."""
    missing = tmp_path / "nope.txt"
    status, out, err = await run_example("extract", str(missing), "--local")
    assert status == 2 and out == ""
    assert err == f"extract.py: cannot read {missing}: No such file or directory\n"
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"caf\xe9\n")
    status, _, err = await run_example("extract", str(latin), "--local")
    assert status == 2 and err.startswith(f"extract.py: cannot read {latin}: 'utf-8' codec")
    assert err.count("\n") == 1


async def test_eval_job_local() -> None:
    """eval_job.py grades every item concurrently and prints a summary."""
    status, out, err = await run_example("eval_job", "--local", "--json", "--concurrency", "3")
    assert status == 0, err
    lines = out.splitlines()
    items = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(items) == 8
    for item in items:
        assert item["error"] is None and item["reply"] and item["tokens"] > 0
        assert item["mean_logprob"] is not None and item["mean_logprob"] < 0
    summary = next(line for line in lines if line.startswith("accuracy"))
    assert re.match(r"accuracy \d/8 \(\d+%\) · 0 errors · 8 requests in [\d.]+ s", summary)


async def test_eval_job_bounds_concurrency(anyapi_server: LocalServer) -> None:
    """--concurrency bounds the requests in flight; a failed item is reported, not fatal."""
    anyapi_server.queue(ErrorResponse(400, "bad question"))
    status, out, err = await run_example(
        "eval_job", "--concurrency", "2", "--model", "eval-m",
        ANYAPI_API_KEY="sk-test", ANYAPI_BASE_URL=anyapi_server.base_url,
    )  # fmt: skip
    assert status == 1, err  # one error
    assert anyapi_server.max_in_flight <= 2
    assert len(anyapi_server.requests_for("/chat/completions")) == 8
    assert out.count("ERR ") == 1 and "bad question" in out
    assert "· 1 errors ·" in out


async def test_tool_agent_local() -> None:
    """tool_agent.py runs both tools in round 1, then prints the model's answer."""
    status, out, err = await run_example("tool_agent", "--local")
    assert status == 0, err
    calls = re.findall(r"\[round (\d)\] (\w+)\((.*)\) -> (.*)", out)
    assert [(r, name) for r, name, _, _ in calls] == [
        ("1", "get_weather"),
        ("1", "convert_temperature"),
    ]
    weather_args, weather_out = json.loads(calls[0][2]), json.loads(calls[0][3])
    assert weather_out["city"] == weather_args["city"]
    convert_args = json.loads(calls[1][2])
    expected = convert_args["value"] * 9 / 5 + 32 if convert_args["to"] == "F" else None
    if expected is None:
        expected = convert_args["value"] + 273.15
    assert float(calls[1][3]) == round(expected, 2)
    assert re.search(r"^answer: \S", out, re.MULTILINE)
    assert re.search(r"\(2 requests, 2 tool calls, \d+ tokens\)", out)


async def test_tool_agent_gives_up_after_max_rounds(anyapi_server: LocalServer) -> None:
    """A model that only wants tools hits --max-rounds: status 1 and a clear message."""
    status, out, err = await run_example(
        "tool_agent", "Use get_weather for Oslo", "--max-rounds", "1",
        ANYAPI_API_KEY="sk-test", ANYAPI_BASE_URL=anyapi_server.base_url,
    )  # fmt: skip
    assert status == 1
    assert out == "question: Use get_weather for Oslo\n"  # no tool ran: the bound came first
    assert "gave up: The model still asked for tools" in err
    assert "max_rounds=1" in err
