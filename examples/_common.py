"""What the examples share: the choice between the local server and AnyAPI.

``--local`` starts `anyapi_async.testing.LocalServer` in the process (no network, no key);
``--remote`` talks to ``ANYAPI_BASE_URL`` (default AnyAPI) with ``ANYAPI_API_KEY``. With
neither flag, an example runs remotely when ``ANYAPI_API_KEY`` is set, locally otherwise.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyapi_async import AsyncClient

DEFAULT_MODEL = os.environ.get("ANYAPI_MODEL", "gpt-4o-mini")


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``--local`` / ``--remote`` and ``--model``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--local", action="store_true", help="use the built-in local server (no key needed)"
    )
    where.add_argument(
        "--remote", action="store_true", help="use ANYAPI_BASE_URL / AnyAPI with ANYAPI_API_KEY"
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model id (default: {DEFAULT_MODEL})"
    )


def wants_local(args: argparse.Namespace) -> bool:
    """Whether the example should start the local server."""
    if args.local or args.remote:
        return bool(args.local)
    return not os.environ.get("ANYAPI_API_KEY")


@asynccontextmanager
async def open_client(
    args: argparse.Namespace, *, max_concurrency: int | None = None
) -> AsyncIterator[AsyncClient]:
    """A client for the chosen target; the local server lives as long as the client."""
    if wants_local(args):
        from anyapi_async.testing import ANY_MODEL, LocalServer

        async with (
            LocalServer(models=ANY_MODEL) as server,
            AsyncClient(
                api_key="local", base_url=server.base_url, max_concurrency=max_concurrency
            ) as client,
        ):
            yield client
    else:
        async with AsyncClient(max_concurrency=max_concurrency) as client:
            yield client
