"""``anyapi models``: the ids of the models the endpoint serves."""

from __future__ import annotations

import argparse

from .common import Output, make_client

__all__ = ["run"]


async def run(args: argparse.Namespace, out: Output) -> int:
    """Print the model ids, one per line (the whole list with ``--json``); the exit status."""
    import msgspec

    async with make_client(args) as client:
        models = await client.models.list()
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(models)).decode() + "\n")
    else:
        for model in models.data:
            out.write(model.id + "\n")
    return 0
