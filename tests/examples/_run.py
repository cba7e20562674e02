"""Running an example the way a user does: ``python examples/NAME.py ...``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's ANYAPI_* settings (so nothing goes remote)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYAPI_")}
    env.update(extra)
    return env


async def run_example(name: str, *args: str, **env: str) -> tuple[int, str, str]:
    """Run ``examples/<name>.py`` with ``args``; return status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=example_env(**env),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
