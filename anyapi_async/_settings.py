"""Pure checks of a client's settings: base URL, key, headers, query, pool sizes; env names.

No I/O and no aiohttp: the client, the CLI, the job runner and the Ray stage all read their
settings through these functions, so a bad value fails the same way everywhere.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from ._config import Limits, NotGiven
from ._logging import redact_url

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "SECRET_HEADERS",
    "build_headers",
    "check_base_url",
    "check_bounds",
    "check_header",
    "check_query",
    "is_loopback",
    "pool_limits",
    "redact_headers",
    "resolve_api_key",
    "split_query",
]

DEFAULT_BASE_URL: Final = "https://api.anyapi.ai/v1"
ENV_API_KEY: Final = "ANYAPI_API_KEY"
ENV_BASE_URL: Final = "ANYAPI_BASE_URL"
#: Headers (lower-cased) that carry credentials: masked in logs, and never sent on to
#: another origin by a redirect.
SECRET_HEADERS: Final = frozenset(
    ("authorization", "proxy-authorization", "api-key", "x-api-key", "cookie")
)


def check_header(name: str, value: object) -> str:
    """Refuse header values that are not strings or that could split the header block."""
    if not isinstance(value, str):
        raise TypeError(f"Header {name!r} must be a str, not {type(value).__name__}")
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
        # The value is not echoed: it may be a credential.
        raise ValueError(f"Header {name!r} contains a CR or LF character")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """``url`` checked, without a trailing slash (the query string, if any, stays on)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http:// or https:// URL, got {redact_url(url)!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        warnings.warn(
            f"base_url {redact_url(url)!r} uses plain HTTP to a non-loopback host: the API "
            "key would travel unencrypted. Use https://.",
            UserWarning,
            stacklevel=3,
        )
    if parts.query or parts.fragment:
        return parts._replace(path=parts.path.rstrip("/")).geturl()
    return url.rstrip("/")


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its query string, and that query as a dict (Azure's ``api-version``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return parts._replace(query="", fragment="").geturl(), query


def check_query(query: object) -> dict[str, str]:
    if not isinstance(query, Mapping):
        raise TypeError(f"default_query must be a dict of str, not {type(query).__name__}")
    for name, value in query.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(
                f"default_query must map str to str; {name!r} maps to {type(value).__name__}"
            )
    return dict(query)


def resolve_api_key(
    api_key: str | None = None, base_url: str | None = None, *, env: str = ENV_API_KEY
) -> str | None:
    """The API key to use: ``api_key``, else the environment variable ``env``.

    A key read from the environment loses the blank a paste leaves around it; one with a
    space or control character inside is refused, naming the variable (never the key).
    Without a key, a loopback ``base_url`` (a local server) gives ``None``: requests then
    carry no ``Authorization``; any other raises `ValueError` saying what to set.
    Used by `AsyncClient`, the CLI and the job runner.
    """
    if api_key is None:
        api_key = (os.environ.get(env) or "").strip() or None
        if api_key is not None and any(c.isspace() or not c.isprintable() for c in api_key):
            raise ValueError(f"{env} holds a space or control character inside the key: check it")
    if api_key == "":
        api_key = None
    if api_key is None:
        host = urlsplit(base_url).hostname if base_url else None
        if host is None or not is_loopback(host):
            raise ValueError(f"No API key: pass api_key=... or set the {env} environment variable")
    return api_key


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` fit for logs: credentials masked."""
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def pool_limits(
    limits: Limits | None,
    max_connections: int | NotGiven,
    max_connections_per_host: int | NotGiven,
    keepalive_timeout: float | NotGiven,
) -> Limits:
    """``limits``, or one built from the separate keyword arguments (not both)."""
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("max_connections", max_connections),
            ("max_connections_per_host", max_connections_per_host),
            ("keepalive_timeout", keepalive_timeout),
        )
        if not isinstance(value, NotGiven)
    }
    if limits is not None:
        if given:
            raise TypeError(f"pass limits=Limits(...) or {', '.join(given)}=..., not both")
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
        return limits
    return Limits(**given)


def check_bounds(
    max_concurrency: object, max_response_size: object, max_event_size: object
) -> None:
    """Refuse a ``max_concurrency`` that is not an int >= 1 (or None) and size limits that
    are not ints >= 1 (bools and floats included)."""
    if max_concurrency is not None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(
                "max_concurrency must be an int >= 1 or None, "
                f"not {type(max_concurrency).__name__}"
            )
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
    for size_name, size in (
        ("max_response_size", max_response_size),
        ("max_event_size", max_event_size),
    ):
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"{size_name} must be an int, not {type(size).__name__}")
        if size < 1:
            raise ValueError(f"{size_name} must be >= 1")


def build_headers(
    key: str | None,
    user_agent: str,
    http_referer: str | None,
    x_title: str | None,
    default_headers: Mapping[str, str] | None,
) -> dict[str, str]:
    """Every request's headers: ours, the attribution ones, the caller's, then the key."""
    headers = {
        "User-Agent": user_agent,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    if http_referer is not None:
        headers["HTTP-Referer"] = http_referer
    if x_title is not None:
        headers["X-Title"] = x_title
    for name, value in (default_headers or {}).items():
        headers[name] = value
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    for name, value in headers.items():
        check_header(name, value)
    return headers
