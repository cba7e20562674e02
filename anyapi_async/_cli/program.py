"""``main``: parse the command line, run the subcommand, turn errors into exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

from .._settings import ENV_BASE_URL
from . import batch, chat, demo, models
from .common import Output, one_line, url_hint
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, CLIError
from .parser import build_parser

__all__ = ["main"]

_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]]] = {
    "chat": chat.run,
    "models": models.run,
    "demo": demo.run,
    "batch": batch.run,
}


def _describe(exc: BaseException, args: argparse.Namespace) -> str:
    from .._exceptions import APIConnectionError, APIStatusError, error_line
    from .._logging import redact_url

    message = error_line(exc)
    if isinstance(exc, APIStatusError) and exc.request_id:
        message += f" (request id {exc.request_id})"
    elif isinstance(exc, APIConnectionError):
        base_url = getattr(args, "base_url", None) or os.environ.get(ENV_BASE_URL)
        if base_url:
            message += f" ({redact_url(base_url)})"
    hint = url_hint(exc, args)
    return message + (f"; {hint}" if hint else "")


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"anyapi: warning: {one_line(str(message))}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``anyapi`` with ``argv`` (default: the command line); return the exit status."""
    from .._exceptions import APIError

    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(sys.stdout)
    warnings.formatwarning = _warning_line
    try:
        return asyncio.run(_COMMANDS[args.command](args, out))
    except CLIError as exc:
        out.end_line()
        prog = "anyapi batch" if args.command == "batch" else "anyapi"
        print(f"{prog}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.status
    except APIError as exc:
        out.end_line()
        print(f"anyapi: error: {_describe(exc, args)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        out.end_line()
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`anyapi chat ... | head -1`): stop quietly, and keep
        # Python's own flush at exit from failing on the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
