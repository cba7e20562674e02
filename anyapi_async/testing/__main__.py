"""``python -m anyapi_async.testing``: run a local server until interrupted.

The first line of stdout is the base URL (``http://127.0.0.1:PORT/v1``), flushed at once,
so another process can read it and connect. SIGINT or SIGTERM stops the server; the exit
status is then 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._server import (
    ANY_MODEL,
    DEFAULT_MAX_GENERATION,
    DEFAULT_MAX_RECORD_BODY,
    DEFAULT_MAX_RECORDS,
    DEFAULT_MODEL,
    RESET_PATH,
    LocalServer,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m anyapi_async.testing",
        description="Run a local OpenAI-compatible chat-completions server for tests and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reply generator")
    parser.add_argument(
        "--model",
        action="append",
        metavar="ID",
        help=f"a model id to serve (repeatable; default {DEFAULT_MODEL}); others get 404",
    )
    parser.add_argument(
        "--any-model", action="store_true", help="serve every model id (no 404 model_not_found)"
    )
    parser.add_argument(
        "--require-key",
        action="store_true",
        help="answer 401 to a request without an 'Authorization: Bearer ...' key "
        "(default: no key needed)",
    )
    parser.add_argument(
        "--max-records",
        type=_at_least(0),
        default=DEFAULT_MAX_RECORDS,
        metavar="N",
        help=f"keep the last N requests in memory (default {DEFAULT_MAX_RECORDS:,}); "
        f"POST {RESET_PATH} forgets them",
    )
    parser.add_argument(
        "--max-record-body",
        type=_at_least(0),
        default=DEFAULT_MAX_RECORD_BODY,
        metavar="BYTES",
        help=f"keep at most BYTES of each recorded body (default {DEFAULT_MAX_RECORD_BODY:,})",
    )
    parser.add_argument(
        "--max-generation",
        type=_at_least(1),
        default=DEFAULT_MAX_GENERATION,
        metavar="N",
        help="refuse with 400 a reply of more than N generated tokens, n x tokens x "
        f"(1 + top_logprobs) (default {DEFAULT_MAX_GENERATION:,})",
    )
    return parser


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


async def serve(
    host: str,
    port: int,
    seed: int,
    model: str | Sequence[str],
    *,
    any_model: bool = False,
    **options: Any,
) -> None:
    """Serve until SIGINT or SIGTERM; ``options`` are more ``LocalServer`` arguments."""
    names = [model] if isinstance(model, str) else list(model) or [DEFAULT_MODEL]
    if any_model:
        names.append(ANY_MODEL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still interrupts
            loop.add_signal_handler(sig, stop.set)
    server = LocalServer(
        host=host, port=port, seed=seed, model=names[0], models=names[1:], **options
    )
    async with server:
        print(server.base_url, flush=True)
        print("Serving; press Ctrl-C to stop.", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(
            serve(
                args.host,
                args.port,
                args.seed,
                args.model or (),
                any_model=args.any_model,
                require_key=args.require_key,
                max_records=args.max_records,
                max_record_body=args.max_record_body,
                max_generation=args.max_generation,
            )
        )
    except KeyboardInterrupt:
        pass  # where signal handlers are not supported, Ctrl-C ends the loop this way
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
