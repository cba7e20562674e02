"""What the ``anyapi`` commands share: the endpoint, key and client their options give,
stdout written token by token, and the hint for a base URL that looks wrong."""

from __future__ import annotations

import argparse
import os
import warnings
from typing import TYPE_CHECKING, Final, TextIO

from .._settings import DEFAULT_BASE_URL, ENV_BASE_URL
from .errors import CLIError

if TYPE_CHECKING:
    from .._client import AsyncClient
    from ..cache import Cache

__all__ = [
    "PLAIN_HTTP_WARNING",
    "Output",
    "api_key_from",
    "endpoint",
    "make_cache",
    "make_client",
    "one_line",
    "redacted",
    "url_hint",
]

#: The start of `check_base_url`'s warning about http:// to a non-loopback host: `endpoint`
#: shows it, so the client's own check of the same URL must not show it again.
PLAIN_HTTP_WARNING: Final = r"base_url .* uses plain HTTP"


def _base_url(args: argparse.Namespace) -> str | None:
    if args.base_url is not None and not args.base_url.strip():
        raise CLIError("--base-url is empty: give the endpoint, e.g. " + DEFAULT_BASE_URL)
    return args.base_url or os.environ.get(ENV_BASE_URL) or None


def api_key_from(name: str, base_url: str | None) -> str | None:
    """The key in the variable ``name``; None for a loopback server (it needs none)."""
    from .._settings import resolve_api_key

    try:
        return resolve_api_key(None, base_url, env=name)
    except ValueError as exc:
        if "No API key" in str(exc):
            raise CLIError(
                f"no API key: set {name} (or name another variable with --api-key-env)"
            ) from None
        raise CLIError(str(exc)) from None


def endpoint(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The base URL (None: the default) and key the options and environment give, checked.

    The key is None for a loopback server with no key set: the client then sends no
    ``Authorization`` header at all (local servers need none).
    """
    from .._settings import check_base_url

    base_url = _base_url(args)
    if base_url is not None:  # first: a bad URL is the mistake to report, key or no key
        try:
            check_base_url(base_url)
        except ValueError as exc:
            raise CLIError(redacted(str(exc), base_url)) from None
    return base_url, api_key_from(args.api_key_env, base_url)


def make_client(args: argparse.Namespace) -> AsyncClient:
    """The client for the endpoint the options give (not yet connected)."""
    from .._client import AsyncClient

    base_url, key = endpoint(args)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", PLAIN_HTTP_WARNING, UserWarning)
            return AsyncClient(
                api_key=key,
                base_url=base_url,
                timeout=args.timeout,
                max_retries=args.max_retries,
                cache=make_cache(getattr(args, "cache", None)),
            )
    except ValueError as exc:  # a bad timeout...
        raise CLIError(redacted(str(exc), base_url)) from None


def make_cache(where: str | None) -> Cache | None:
    """``--cache``: a Redis URL, or the path of a SQLite file."""
    if not where:
        return None
    from ..cache import open_cache

    return open_cache(where)


def redacted(text: str, base_url: str | None) -> str:
    """``text`` with the base URL's key-like query values hidden (`--base-url '...?key=...'`)."""
    from .._logging import redact_url

    if not base_url:
        return text
    return text.replace(base_url, redact_url(base_url))


class Output:
    """stdout that remembers whether the cursor is at the start of a line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.line_start = True

    def write(self, text: str) -> None:
        if text:
            self.stream.write(text)
            self.stream.flush()  # token by token, also into a pipe
            self.line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self.line_start:
            self.write("\n")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def url_hint(exc: BaseException, args: argparse.Namespace) -> str:
    """What to try when a 404 comes from a base URL that looks wrong, else ""."""
    from urllib.parse import urlsplit, urlunsplit

    from .._exceptions import NotFoundError

    if not isinstance(exc, NotFoundError) or exc.code == "model_not_found":
        return ""
    from .._logging import redact_url

    base_url = getattr(args, "base_url", None) or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")

    def with_path(new: str) -> tuple[str, str, str, str, str]:
        return (parts.scheme, parts.netloc, new, parts.query, parts.fragment)

    if path.endswith("/chat/completions"):
        fixed = redact_url(urlunsplit(with_path(path[: -len("/chat/completions")])))
        return f"the base URL must stop before /chat/completions: try --base-url {fixed}"
    if not path.endswith("/v1"):
        fixed = redact_url(urlunsplit(with_path(f"{path}/v1")))
        return f"the base URL usually ends in /v1: try --base-url {fixed}"
    return ""
