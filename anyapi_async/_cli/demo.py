"""``anyapi demo``: the library against its own local server, offline (see `anyapi_async._demo`)."""

from __future__ import annotations

import argparse

from .common import Output

__all__ = ["run"]


async def run(args: argparse.Namespace, out: Output) -> int:
    """Run the demo to its end; the exit status."""
    from .._demo import run_demo

    await run_demo(out.stream)
    return 0
