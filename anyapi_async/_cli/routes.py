"""``--routes routes.toml``: a `Router` for ``anyapi batch`` and ``anyapi chat``.

The file (see docs/cli.md):

```toml
[breaker]                 # optional: CircuitBreaker(...)
failures = 5
cooldown = 30.0

[hedge]                   # optional: Hedge(...)
after = "p95"
max_extra = 0.1

[[route]]
name = "primary"
base_url = "https://api.anyapi.ai/v1"
api_key_env = "ANYAPI_API_KEY"      # the key is read from this variable, never the file
model = "gpt-5"                     # optional: replaces the request's model
on_context_length = false           # optional
timeout = 60.0                      # optional
```

TOML is read with the standard library's ``tomllib``, which Python 3.10 does not have:
there ``--routes`` refuses with a message saying so (``tomli`` is not a dependency).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .common import PLAIN_HTTP_WARNING, api_key_from, make_cache, redacted
from .errors import CLIError

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._router import Router
    from ..cache import Cache

__all__ = ["open_router", "read_routes"]

_ROUTE_KEYS: Final = frozenset(
    ("name", "base_url", "api_key_env", "model", "on_context_length", "prefill", "timeout")
)
_BREAKER_KEYS: Final = frozenset(("failures", "cooldown", "failure_rate", "window", "min_calls"))
_HEDGE_KEYS: Final = frozenset(("after", "max_extra", "initial", "min_samples", "burst"))


def read_routes(path: str) -> dict[str, Any]:
    """The routes file as checked tables (``route``, ``breaker``, ``hedge``); no I/O but
    reading it."""
    if sys.version_info < (3, 11):
        raise CLIError(
            "--routes needs Python 3.11 or later (it reads TOML with the standard library's "
            "tomllib); on Python 3.10 build a Router in Python instead (docs/failover.md)"
        )
    # By name: the package's type check targets 3.10, which has no tomllib.
    tomllib: Any = importlib.import_module("tomllib")
    try:
        with Path(path).open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise CLIError(f"cannot open {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"route", "breaker", "hedge"}
    if unknown:
        raise CLIError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}")
    routes = data.get("route")
    if not isinstance(routes, list) or not routes:
        raise CLIError(f"{path}: no routes: add at least one [[route]] table")
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            raise CLIError(f"{path}: route {i + 1} must be a [[route]] table")
        extra = set(route) - _ROUTE_KEYS
        if extra:
            hint = " (put the key in an environment variable: api_key_env)" if (
                "api_key" in extra
            ) else ""
            raise CLIError(
                f"{path}: route {i + 1} has unknown key(s) {', '.join(sorted(extra))}{hint}"
            )
    for table, keys in (("breaker", _BREAKER_KEYS), ("hedge", _HEDGE_KEYS)):
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise CLIError(f"{path}: [{table}] must be a table")
        extra = set(value) - keys
        if extra:
            raise CLIError(f"{path}: [{table}] has unknown key(s) {', '.join(sorted(extra))}")
    return data


def _client(
    route: dict[str, Any], i: int, args: argparse.Namespace, cache: Cache | None
) -> AsyncClient:
    from .._client import AsyncClient
    base_url = route.get("base_url")
    if base_url is not None and not isinstance(base_url, str):
        raise CLIError(f"--routes: route {i + 1}: base_url must be a string")
    key = api_key_from(route.get("api_key_env", args.api_key_env), base_url)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", PLAIN_HTTP_WARNING, UserWarning)
            return AsyncClient(
                api_key=key,
                base_url=base_url,
                timeout=route.get("timeout", args.timeout),
                max_retries=0,  # the router is the only retry loop
                cache=cache,
            )
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--routes: route {i + 1}: {redacted(str(exc), base_url)}") from None


@asynccontextmanager
async def open_router(args: argparse.Namespace) -> AsyncIterator[Router]:
    """The router ``--routes`` describes, its clients closed on exit."""
    from .._router import CircuitBreaker, Hedge, Route, Router

    if args.base_url is not None:
        raise CLIError("--routes and --base-url both name endpoints: give one of them")
    data = read_routes(args.routes)
    try:
        breaker = CircuitBreaker(**data["breaker"]) if "breaker" in data else None
        hedge = Hedge(**data["hedge"]) if "hedge" in data else None
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--routes: {exc}") from None
    # One --cache for every route: a key holds the body, and so the route's model.
    cache = make_cache(getattr(args, "cache", None))
    clients: list[AsyncClient] = []
    try:
        routes = []
        for i, spec in enumerate(data["route"]):
            client = _client(spec, i, args, cache)
            clients.append(client)
            try:
                routes.append(
                    Route(
                        client,
                        model=spec.get("model"),
                        name=spec.get("name"),
                        on_context_length=bool(spec.get("on_context_length", False)),
                        prefill=bool(spec.get("prefill", False)),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise CLIError(f"--routes: route {i + 1}: {exc}") from None
        try:
            router = Router(routes, breaker=breaker, hedge=hedge)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"--routes: {exc}") from None
        yield router
    finally:
        for client in clients:
            await client.aclose()
