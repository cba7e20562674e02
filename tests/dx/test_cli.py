"""The ``anyapi`` command as a user runs it: subprocesses, their output and exit status."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from anyapi_async import AsyncClient, ChatCompletion
from anyapi_async.testing import ErrorResponse, Generated, JSONResponse, LocalServer, RawResponse

SCRIPT = Path(sys.executable).with_name("anyapi")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without the developer's ANYAPI_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYAPI_")}
    env.update(extra)
    return env


def run(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyapi_async", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("anyapi: error: "), lines[0]
    return lines[0]


def test_console_script_and_module_are_the_same_program() -> None:
    """`anyapi --help` (the installed script) and `python -m anyapi_async --help` agree."""
    assert SCRIPT.exists(), f"{SCRIPT} missing: pip install -e . installs it"
    script = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    module = run("--help")
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout
    for command in ("chat", "models", "demo", "batch"):
        assert f"    {command} " in module.stdout
    assert "ANYAPI_API_KEY" in module.stdout and "exit status" in module.stdout


def test_chat_help_is_complete() -> None:
    """Every chat option is documented in --help."""
    result = run("chat", "--help")
    assert result.returncode == 0
    for option in (
        "--model", "--system", "--max-tokens", "--temperature", "--logprobs", "--json",
        "--no-stream", "--usage", "--base-url", "--api-key-env", "--timeout", "--max-retries",
        "'-' reads it from stdin", "ANYAPI_MODEL",
    ):  # fmt: skip
        assert option in result.stdout, option


def test_import_does_not_load_the_cli() -> None:
    """`import anyapi_async` leaves the CLI (and argparse) unloaded."""
    code = "import sys, anyapi_async; print('anyapi_async._cli' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_missing_key_is_a_one_line_usage_error() -> None:
    """Without a key for a remote endpoint: status 2, one line naming the variable."""
    result = run("chat", "hi", "--api-key-env", "MY_KEY")
    line = assert_one_line_error(result, 2)
    assert "no API key: set MY_KEY" in line
    assert result.stdout == ""


def test_connection_error_is_one_line() -> None:
    """A refused connection: status 1, one line with the URL, no traceback."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = run("chat", "hi", "--base-url", url, "--max-retries", "0")
    line = assert_one_line_error(result, 1)
    assert "Connection error" in line and url in line


def test_printed_urls_hide_a_key_in_their_query() -> None:
    """A key in the base URL's query never reaches stderr (connection error, 404 hint, bad URL)."""
    dead = f"http://127.0.0.1:{closed_port()}/v1?api-key=SECRET"
    line = assert_one_line_error(run("chat", "hi", "--base-url", dead, "--max-retries", "0"), 1)
    assert "Connection error" in line and "SECRET" not in line and "api-key=***" in line
    bad = "ftp://example.invalid/v1?api_key=SECRET"
    line = assert_one_line_error(run("chat", "hi", "--base-url", bad, ANYAPI_API_KEY="k"), 2)
    assert "SECRET" not in line and "api_key=***" in line


async def test_wrong_url_hint_hides_a_key_in_the_query(anyapi_server: LocalServer) -> None:
    """The "try --base-url ..." hint rebuilds the URL with its query redacted."""
    url = f"{anyapi_server.url}?key=SECRET"
    status, _, err = await arun("chat", "hi", "--base-url", url, "--max-retries", "0")
    assert status == 1 and "SECRET" not in err, err
    assert f"try --base-url {anyapi_server.url}/v1?key=***" in err


def test_models_connection_error() -> None:
    """`anyapi models` maps errors the same way (base URL from the environment)."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = run("models", "--max-retries", "0", ANYAPI_BASE_URL=url)
    assert "Connection error" in assert_one_line_error(result, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("chat", "-", "--base-url", "http://127.0.0.1:9/v1"), "the prompt is empty"),
        (("chat", "hi", "--base-url", "ftp://x/v1"), "must be an http:// or https:// URL"),
        (("chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "-1"),
         "max_retries must be an int >= 0"),
    ],
)  # fmt: skip
def test_configuration_errors(args: tuple[str, ...], message: str) -> None:
    """Mistakes found before any request: status 2 and one line."""
    result = run(*args, stdin="   \n", ANYAPI_API_KEY="k")
    assert message in assert_one_line_error(result, 2)


def test_bad_option_value() -> None:
    """argparse rejects an out-of-range --logprobs with status 2."""
    result = run("chat", "hi", "--logprobs", "21")
    assert result.returncode == 2
    assert "expected an integer from 0 to 20, got 21" in result.stderr


# --- against the local server -------------------------------------------------------------


async def arun(*args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop that serves the local server."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "anyapi_async",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(**env),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def expected_reply(client: AsyncClient, prompt: str, max_tokens: int) -> ChatCompletion:
    """What the deterministic local server answers to ``prompt``."""
    return await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
    )


async def test_chat_streams_token_by_token(
    anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """Text reaches stdout in several flushes while the server paces its tokens."""
    expected = await expected_reply(anyapi_client, "Tell me a story", max_tokens=12)
    anyapi_server.reset()
    anyapi_server.set_default(Generated(pace=0.04))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async", "chat", "Tell me a story", "--max-tokens", "12",
        "--base-url", anyapi_server.base_url, "--model", "my-model", "--system", "Be nice.",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    reads: list[bytes] = []
    while chunk := await asyncio.wait_for(proc.stdout.read(4096), 30):
        reads.append(chunk)
    assert await proc.wait() == 0
    text = b"".join(reads).decode()
    assert text == (expected.choices[0].message.content or "") + "\n"
    assert len(reads) >= 3, reads  # a buffered CLI would deliver it all at once
    body = anyapi_server.requests_for("/chat/completions")[0].json
    assert body["model"] == "my-model" and body["stream"] is True and body["max_tokens"] == 12
    assert body["messages"] == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Tell me a story"},
    ]
    # A loopback server needs no key: none was set, and the CLI invented none.
    assert all("authorization" not in r.headers for r in anyapi_server.requests)


async def test_chat_prompt_from_stdin_with_usage(
    anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """`-` reads the prompt from stdin; --usage reports tokens on stderr; ANYAPI_MODEL works."""
    expected = await expected_reply(anyapi_client, "piped question\n", max_tokens=8)
    status, out, err = await arun(
        "chat", "-", "--max-tokens", "8", "--usage",
        stdin="piped question\n", ANYAPI_BASE_URL=anyapi_server.base_url, ANYAPI_MODEL="env-m",
    )  # fmt: skip
    assert status == 0, err
    assert out == (expected.choices[0].message.content or "") + "\n"
    usage = expected.usage
    assert usage is not None
    assert f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion" in err
    assert anyapi_server.requests_for("/chat/completions")[-1].json["model"] == "env-m"


async def test_chat_logprobs_table(anyapi_server: LocalServer) -> None:
    """--logprobs K prints every token with K alternatives after the text."""
    status, out, err = await arun(
        "chat", "Yes or no?", "--logprobs", "2", "--max-tokens", "4",
        "--base-url", anyapi_server.base_url,
    )  # fmt: skip
    assert status == 0, err
    text, table = out.split("\n\n", 1)
    header, *rows = table.strip().splitlines()
    assert header.split() == ["token", "logprob", "top", "alternatives"]
    assert len(rows) == 4
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    for row in rows:
        # 'token'  -0.123  'alt' -0.123, 'alt2' -1.234
        assert row.count(", ") >= 1 and row.split()[-1].startswith("-")
    assert "".join(ast.literal_eval(row.split("  ")[0]) for row in rows) == text


async def test_chat_json_and_no_stream(
    anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """--json prints the completion object; --no-stream prints only its text."""
    expected = await expected_reply(anyapi_client, "hello", max_tokens=5)
    status, out, _ = await arun(
        "chat", "hello", "--json", "--max-tokens", "5", "--base-url", anyapi_server.base_url
    )
    assert status == 0
    data = json.loads(out)
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == expected.choices[0].message.content
    assert data["usage"]["total_tokens"] > 0
    status, out, _ = await arun(
        "chat", "hello", "--no-stream", "--max-tokens", "5", "--base-url", anyapi_server.base_url
    )
    assert status == 0 and out == (expected.choices[0].message.content or "") + "\n"
    assert all("stream" not in r.json for r in anyapi_server.requests_for("/chat/completions"))


async def test_chat_api_error_is_one_line(anyapi_server: LocalServer) -> None:
    """A 401 ends with status 1 and one line carrying the message and request id."""
    anyapi_server.queue(ErrorResponse(401, "Incorrect API key provided."))
    status, out, err = await arun("chat", "hi", "--base-url", anyapi_server.base_url)
    assert status == 1 and out == ""
    assert "Traceback" not in err
    assert err.startswith("anyapi: error: Error code: 401 - Incorrect API key provided.")
    assert "(request id req_" in err and err.count("\n") == 1


async def test_chat_error_mid_stream_keeps_the_text(anyapi_server: LocalServer) -> None:
    """An error event after some tokens: the text stays, then one error line, status 1."""
    anyapi_server.queue(Generated(text="one two three four five", error_after=3))
    status, out, err = await arun("chat", "hi", "--base-url", anyapi_server.base_url)
    assert status == 1
    assert out.endswith("\n") and 0 < len(out.strip()) < len("one two three four five")
    assert err.startswith("anyapi: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


async def test_models(anyapi_server: LocalServer) -> None:
    """`anyapi models` prints one id per line; --json the whole list."""
    status, out, _ = await arun("models", "--base-url", anyapi_server.base_url)
    assert status == 0
    assert out.splitlines() and "anyapi-local" in out.splitlines()
    status, out, _ = await arun("models", "--json", "--base-url", anyapi_server.base_url)
    assert status == 0 and json.loads(out)["object"] == "list"


async def test_demo_prints_the_streamed_text() -> None:
    """`anyapi demo` runs offline to completion and shows all four parts."""
    status, out, err = await arun("demo")
    assert status == 0, err
    for heading in (
        "1. A streamed reply, token by token",
        "2. A non-streaming call, with usage",
        "3. Logprobs, with the top 3 alternatives",
        "4. A concurrent fan-out",
    ):
        assert heading in out
    streamed = out.split("token by token\n", 1)[1].split("\n")[0].strip()
    assert len(streamed.split()) >= 10  # the reply's words, not a placeholder
    assert re.search(r"\d+ text deltas · first token after \d+ ms", out)
    assert re.search(r"usage: \d+ prompt \+ \d+ completion = \d+ tokens", out)
    assert re.search(r"24 at once: +[\d.]+ s for all of them \((\d+)x faster", out)
    assert "\x1b[" not in out  # no colour codes into a pipe


async def test_batch_runs_the_job(tmp_path: Path, anyapi_server: LocalServer) -> None:
    """`anyapi batch` runs anyapi_async._jobs with its options (more in tests/batch)."""
    status, out, _ = await arun("batch", "--help")
    assert status == 0 and out.startswith("usage: anyapi batch")
    source = tmp_path / "requests.jsonl"
    lines = [
        {"custom_id": f"r{i}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}
        for i in range(2)
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    status, out, err = await arun(
        "batch", str(source), "--model", "batch-m", "--base-url", anyapi_server.base_url
    )
    assert status == 0, err
    assert out.startswith("anyapi batch: ")
    results = (tmp_path / "requests.output.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(r)["custom_id"] for r in results) == ["r0", "r1"]
    bodies = [r.json for r in anyapi_server.requests_for("/chat/completions")]
    assert [b["model"] for b in bodies] == ["batch-m", "batch-m"]


# --- bad input: one clear line, never a traceback ---------------------------------------------


def test_prompt_that_is_not_utf8_is_one_line() -> None:
    """Invalid UTF-8 in argv or on stdin: status 2, one line naming the byte."""
    result = subprocess.run(
        [sys.executable, "-m", "anyapi_async", "chat", b"caf\xe9", "--base-url", "http://127.0.0.1:9/v1"],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    line = assert_one_line_error(result, 2)
    assert "the prompt is not valid UTF-8 (byte 0xe9 at offset 3)" in line
    piped = subprocess.run(
        [sys.executable, "-m", "anyapi_async", "chat", "-", "--base-url", "http://127.0.0.1:9/v1"],
        input=b"ok \xff\xfe", capture_output=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    err = piped.stderr.decode()
    assert piped.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "the prompt read from stdin is not valid UTF-8 (byte 0xff at offset 3)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("chat", "hi", "--base-url", ""), "--base-url is empty"),
        (("models", "--base-url", " "), "--base-url is empty"),
    ],
)
def test_empty_base_url_is_a_usage_error(args: tuple[str, ...], message: str) -> None:
    """--base-url '' is refused, not silently replaced by the default endpoint."""
    result = run(*args, ANYAPI_API_KEY="k")
    assert message in assert_one_line_error(result, 2)


def test_empty_model_is_a_usage_error() -> None:
    """--model '' is refused by the parser (status 2)."""
    result = run("chat", "hi", "--model", "", ANYAPI_API_KEY="k")
    assert result.returncode == 2 and "argument -m/--model: must not be empty" in result.stderr


def test_key_with_a_space_inside_names_the_variable() -> None:
    """A key broken by a space or newline inside: one line naming ANYAPI_API_KEY."""
    result = run("chat", "hi", ANYAPI_API_KEY="sk-abc\ndef")
    line = assert_one_line_error(result, 2)
    assert "ANYAPI_API_KEY holds a space or control character" in line
    assert "sk-abc" not in result.stderr


async def test_key_with_a_trailing_newline_is_stripped(anyapi_server: LocalServer) -> None:
    """`export ANYAPI_API_KEY="$(cat key.txt)"`-style trailing whitespace still works."""
    status, out, err = await arun(
        "chat", "hi", "--max-tokens", "3", "--base-url", anyapi_server.base_url,
        ANYAPI_API_KEY="sk-test \n",
    )  # fmt: skip
    assert status == 0, err
    assert out.strip()


async def test_html_error_page_is_one_short_line(anyapi_server: LocalServer) -> None:
    """A proxy's HTML page: status, reason and the page's title, not kilobytes of CSS."""
    page = (
        "<!DOCTYPE html><html><head><title>502 Bad Gateway &middot; nginx</title><style>"
        + "body { color: red; } " * 100
        + "</style></head><body><h1>Bad Gateway</h1></body></html>"
    )
    anyapi_server.queue(RawResponse(page, status=502))
    status, out, err = await arun(
        "chat", "hi", "--base-url", anyapi_server.base_url, "--max-retries", "0"
    )
    assert status == 1 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and len(err) < 300, err
    assert "Error code: 502 Bad Gateway (an HTML page: '502 Bad Gateway · nginx')" in err
    assert "color" not in err


async def test_404_from_a_base_url_without_v1_says_what_to_try(anyapi_server: LocalServer) -> None:
    """A base URL missing /v1, or ending in /chat/completions: the 404 line suggests the fix."""
    status, _, err = await arun("chat", "hi", "--base-url", anyapi_server.url)
    assert status == 1 and err.count("\n") == 1
    assert f"try --base-url {anyapi_server.url}/v1" in err
    wrong = anyapi_server.base_url + "/chat/completions"
    status, _, err = await arun("models", "--base-url", wrong)
    assert status == 1 and err.count("\n") == 1
    assert f"must stop before /chat/completions: try --base-url {anyapi_server.base_url}" in err


# --- issue 20: the body as received, URL before key, one warning, the local server's model ----


async def test_chat_json_prints_the_completion_as_received(anyapi_server: LocalServer) -> None:
    """--json prints every field of the body, the ones the Structs leave out and nulls too."""
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "provider": "acme",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!", "annotations": []},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.25},
    }
    anyapi_server.queue(JSONResponse(body))
    status, out, err = await arun(
        "chat", "hi", "--json", "--model", "m", "--base-url", anyapi_server.base_url
    )
    assert status == 0, err
    assert json.loads(out) == body


@pytest.mark.parametrize("command", [("chat", "hi"), ("models",)])
def test_bad_base_url_is_reported_even_without_a_key(command: tuple[str, ...]) -> None:
    """With no key set, an invalid --base-url is still the error named (status 2)."""
    result = run(*command, "--base-url", "ftp://example.invalid/v1")
    line = assert_one_line_error(result, 2)
    assert "base_url must be an http:// or https:// URL, got 'ftp://example.invalid/v1'" in line
    bad_env = run(*command, ANYAPI_BASE_URL="example.invalid/v1")
    assert "must be an http:// or https:// URL" in assert_one_line_error(bad_env, 2)


@pytest.mark.parametrize("command", [("chat", "hi"), ("models",)])
def test_plain_http_warning_is_shown_once(command: tuple[str, ...]) -> None:
    """http:// to a non-loopback host: one warning line, though the CLI and the client both
    check the URL (no request is sent: the client then refuses --max-retries -1)."""
    url = "http://api.example.invalid/v1"
    result = run(*command, "--base-url", url, "--max-retries", "-1", ANYAPI_API_KEY="k")
    assert result.returncode == 2
    warning, error = result.stderr.splitlines()
    assert warning == (
        f"anyapi: warning: base_url '{url}' uses plain HTTP to a non-loopback host: the API "
        "key would travel unencrypted. Use https://."
    )
    assert error.startswith("anyapi: error: max_retries must be an int >= 0")


async def test_chat_without_model_uses_what_a_local_server_serves() -> None:
    """No --model: a server that does not list the default gets its own model, named on stderr."""
    async with LocalServer() as server:  # serves anyapi-local only, 404 for other models
        status, out, err = await arun(
            "chat", "hi", "--max-tokens", "3", "--base-url", server.base_url
        )
        assert status == 0, err
        assert out.strip()
        assert err == (
            "anyapi: note: no --model given: anyapi-local answered, the first model the "
            "endpoint lists (anyapi models lists them all)\n"
        )
        assert [r.json["model"] for r in server.requests_for("/chat/completions")] == [
            "anyapi-local"
        ]
        status, out, err = await arun(
            "chat", "hi", "--json", "--max-tokens", "3", "--base-url", server.base_url
        )
        assert status == 0 and json.loads(out)["model"] == "anyapi-local"
        assert "anyapi-local answered" in err


async def test_chat_without_model_keeps_the_default_where_it_is_served() -> None:
    """A server listing the default model gets it; --model or ANYAPI_MODEL skip the list."""
    async with LocalServer(model="other", models=["gpt-4o-mini"]) as server:
        status, _, err = await arun(
            "chat", "hi", "--max-tokens", "2", "--base-url", server.base_url
        )
        assert status == 0 and err == ""
        assert server.requests_for("/chat/completions")[-1].json["model"] == "gpt-4o-mini"
        server.reset()
        status, _, err = await arun(
            "chat", "hi", "--max-tokens", "2", "--base-url", server.base_url, ANYAPI_MODEL="other"
        )
        assert status == 0 and err == ""
        assert server.requests_for("/models") == []
        assert server.requests_for("/chat/completions")[-1].json["model"] == "other"


async def test_chat_against_the_local_server_command() -> None:
    """`python -m anyapi_async.testing`, then `anyapi chat hi --base-url URL`: a reply, no key."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async.testing", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    try:
        assert server.stdout is not None
        base_url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        status, out, err = await arun("chat", "hi", "--max-tokens", "4", "--base-url", base_url)
        assert status == 0, err
        assert out.strip() and "anyapi-local answered" in err
    finally:
        if server.returncode is None:
            server.terminate()
        await asyncio.wait_for(server.communicate(), 30)
