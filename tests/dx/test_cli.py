"""The ``anyapi`` command as a user runs it: subprocesses, their output and exit status."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
