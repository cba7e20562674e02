"""docs/cli.md's synopses list exactly the options each subcommand takes (its ``--help``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def synopsis(command: str) -> str:
    """The fenced synopsis under ``## `anyapi COMMAND` `` in docs/cli.md."""
    text = CLI_MD.read_text(encoding="utf-8")
    section = text.split(f"## `anyapi {command}`\n", 1)[1]
    match = re.search(rf"```\n(anyapi {command} .*?)```", section, re.S)
    assert match is not None, f"docs/cli.md: no synopsis under `anyapi {command}`"
    return match[1]


def help_usage(command: str) -> str:
    """The usage lines of ``anyapi COMMAND --help`` (up to the first blank line)."""
    proc = subprocess.run(
        [sys.executable, "-m", "anyapi_async", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    return proc.stdout.split("\n\n", 1)[0]


@pytest.mark.parametrize("command", ["chat", "batch"])
def test_synopsis_lists_the_commands_options(command: str) -> None:
    documented = set(OPTION.findall(synopsis(command)))
    actual = set(OPTION.findall(help_usage(command))) - {"-h", "--help"}
    assert documented == actual, (
        f"docs/cli.md's `anyapi {command}` synopsis: missing {sorted(actual - documented)}, "
        f"not options of this command {sorted(documented - actual)}"
    )
