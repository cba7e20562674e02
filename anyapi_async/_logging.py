"""The logging switch: ``ANYAPI_LOG=debug|info`` turns on the ``anyapi_async`` logger.

Like the openai SDK's ``OPENAI_LOG``: read once, when the client module is first imported,
it gives the ``anyapi_async`` logger a stderr handler and that level. Without it the library
logs nothing unless the application configures logging itself.

What is logged, and at which level:

- ``INFO``: one line per HTTP attempt with its status, attempt number and time to the
  response headers; retries (with the wait and the reason) and calls that give up.
- ``DEBUG``: also the request line with its headers before each attempt, and the end of
  each call (for a stream: when it ended) with its token usage.

Credentials never appear: ``Authorization`` and the other key headers are masked, and so
are URL query values whose names look like keys (``key``, ``api_key``, ``token``...). The
per-attempt lines come from a `Hooks` that a client adds to its own when it is created
with the logger enabled for ``INFO``, so a client created with logging off pays nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._exceptions import error_kind
from ._observe import AttemptInfo, Hooks

if TYPE_CHECKING:
    from ._exceptions import APIError
    from ._types import CompletionUsage

__all__ = [
    "ENV_LOG",
    "LOGGER_NAME",
    "AttemptLogger",
    "SwitchHandler",
    "redact_url",
    "setup_logging",
    "with_log_hook",
]

ENV_LOG: Final = "ANYAPI_LOG"
LOGGER_NAME: Final = "anyapi_async"
LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
LOG_FORMAT: Final = "[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s"
#: Query parameters whose values are masked in logged URLs (matched as substrings).
SECRET_QUERY_WORDS: Final = ("key", "token", "secret", "signature", "sig", "password")

logger = logging.getLogger(LOGGER_NAME)
#: Values of ``ANYAPI_LOG`` already warned about: one warning per value and process.
_warned: set[str] = set()


class SwitchHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler `setup_logging` adds (a class of its own, so it is added once)."""


def setup_logging(value: str | None = None) -> bool:
    """Apply ``ANYAPI_LOG`` (or ``value``): a stderr handler and the level; idempotent.

    Returns whether logging was switched on. Another non-empty value than ``debug`` or
    ``info`` (any case) switches nothing on and warns once (a ``RuntimeWarning``), so that
    ``ANYAPI_LOG=verbose`` does not fail silently.
    """
    if value is None:
        value = os.environ.get(ENV_LOG)
    level = LEVELS.get((value or "").strip().lower())
    if level is None:
        if value and value.strip() and value not in _warned:
            _warned.add(value)
            warnings.warn(
                f"{ENV_LOG}={value!r} is not a log level and is ignored: "
                f"use {ENV_LOG}=debug or {ENV_LOG}=info",
                RuntimeWarning,
                stacklevel=2,
            )
        return False
    if not any(isinstance(h, SwitchHandler) for h in logger.handlers):
        handler = SwitchHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level)
    return True


def redact_url(url: str) -> str:
    """``url`` with the values of key-like query parameters replaced by ``***``."""
    if "?" not in url:
        return url
    parts = urlsplit(url)
    query = [
        (name, "***" if any(w in name.lower() for w in SECRET_QUERY_WORDS) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


class AttemptLogger(Hooks):
    """Logs each attempt's request line, status and timing (see the module docstring)."""

    # The start time lives on the attempt itself (AttemptInfo.sent_at): an attempt that is
    # cancelled takes it away with it, and nothing is kept per attempt here.

    def on_request(self, info: AttemptInfo) -> None:
        info.sent_at = time.perf_counter()

    def on_response(self, info: AttemptInfo, status: int, headers: Mapping[str, str]) -> None:
        started: float | None = getattr(info, "sent_at", None)
        if logger.isEnabledFor(logging.INFO):
            elapsed = "" if started is None else f", {(time.perf_counter() - started) * 1e3:.1f} ms"
            logger.info(
                "%s %s -> %d (attempt %d%s%s)",
                info.method,
                redact_url(info.url),
                status,
                info.attempt,
                ", stream" if info.stream else "",
                elapsed,
            )

    def on_error(self, info: AttemptInfo, error: APIError) -> None:
        logger.info(
            "%s %s failed after %d attempt(s): %s",
            info.method,
            redact_url(info.url),
            info.attempt,
            error_kind(error),
        )

    def on_complete(self, info: AttemptInfo, usage: CompletionUsage | None) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            tokens = (
                ""
                if usage is None
                else f", tokens: {usage.prompt_tokens} in, {usage.completion_tokens} out"
            )
            logger.debug(
                "%s %s complete (attempt %d%s)",
                info.method,
                redact_url(info.url),
                info.attempt,
                tokens,
            )


def with_log_hook(hooks: Sequence[Hooks]) -> tuple[Hooks, ...]:
    """``hooks`` plus an `AttemptLogger` when the logger is enabled for ``INFO`` now."""
    if logger.isEnabledFor(logging.INFO):
        return (*hooks, AttemptLogger())
    return tuple(hooks)
