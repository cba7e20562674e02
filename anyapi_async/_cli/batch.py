"""``anyapi batch``: a resumable JSONL job, run by `anyapi_async._jobs` or on Ray."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .common import Output, endpoint, make_client, one_line, url_hint
from .errors import EXIT_ERROR, EXIT_STOPPED, CLIError

if TYPE_CHECKING:
    from .._batch import ProgressCallback
    from .._jobs import JobSummary

__all__ = ["MAX_LISTED_INVALID", "run"]

#: Invalid input lines ``anyapi batch`` lists one by one on stderr before only counting them.
MAX_LISTED_INVALID: Final = 20


def _default_output(source: Path) -> Path:
    name = source.name[: -len(".jsonl")] if source.name.endswith(".jsonl") else source.name
    return source.with_name(name + ".output.jsonl")


def _progress_display(wanted: bool | None) -> ProgressCallback | None:
    from .._batch import TqdmProgress

    if wanted is False or (wanted is None and not sys.stderr.isatty()):
        return None
    try:
        return TqdmProgress(desc="anyapi batch", file=sys.stderr)
    except ImportError as exc:
        if wanted:
            raise CLIError(str(exc)) from None
        return None


def _say(message: str) -> None:
    print(f"anyapi batch: {one_line(message)}", file=sys.stderr)


async def _batch_on_ray(
    args: argparse.Namespace,
    source: Path,
    target: Path,
    progress: ProgressCallback | None,
    on_invalid_line: Callable[[int, str], object],
) -> JobSummary:
    try:
        from .._jobs.on_ray import run_jsonl_job_on_ray
    except ImportError as exc:  # no ray: the extra is not installed
        raise CLIError(f"--engine ray needs Ray ({exc}): pip install 'anyapi-async[ray]'") from None
    base_url, key = endpoint(args)  # timeout and retries: checked by the engine (no I/O)
    try:
        return await run_jsonl_job_on_ray(
            source,
            target,
            api_key=key,
            base_url=base_url,
            model=args.model,
            max_retries=args.max_retries,
            timeout=args.timeout,
            concurrency=args.concurrency,
            rpm=args.rpm,
            tpm=args.tpm,
            workers=args.workers,
            address=args.ray_address,
            connect_timeout=args.ray_connect_timeout,
            rate_budget=args.rate_budget,
            retry_failed=args.retry_failed,
            progress=progress,
            on_invalid_line=on_invalid_line,
            on_notice=_say,
            cache=args.cache,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None


async def run(args: argparse.Namespace, out: Output) -> int:
    """Run the job; the exit status (see the ``anyapi batch --help`` epilog)."""
    # Imported here: `anyapi chat` should not pay for loading the batch engine.
    from .. import _jobs

    source = Path(args.input)
    target = Path(args.output) if args.output else _default_output(source)
    listed = 0

    def on_invalid_line(number: int, message: str) -> None:
        nonlocal listed
        listed += 1
        if listed <= MAX_LISTED_INVALID:
            _say(f"{source}: {message}")

    progress = _progress_display(args.progress)
    try:
        if args.engine == "ray":
            if args.routes is not None:
                raise CLIError("--routes works with --engine local only")
            summary = await _batch_on_ray(args, source, target, progress, on_invalid_line)
        elif args.routes is not None:
            from .routes import open_router

            async with open_router(args) as router:
                summary = await _jobs.run_jsonl_job(
                    source,
                    target,
                    router=router,
                    model=args.model,
                    concurrency=args.concurrency,
                    rpm=args.rpm,
                    tpm=args.tpm,
                    progress=progress,
                    retry_failed=args.retry_failed,
                    on_invalid_line=on_invalid_line,
                    on_notice=_say,
                )
        else:
            async with make_client(args) as client:
                summary = await _jobs.run_jsonl_job(
                    source,
                    target,
                    client=client,
                    model=args.model,
                    concurrency=args.concurrency,
                    rpm=args.rpm,
                    tpm=args.tpm,
                    progress=progress,
                    retry_failed=args.retry_failed,
                    on_invalid_line=on_invalid_line,
                    on_notice=_say,
                )
    except _jobs.JobStopped as exc:
        hint = url_hint(exc.error, args) if exc.error is not None else ""
        _say(str(exc) + (f" ({hint})" if hint else ""))
        return EXIT_STOPPED
    except _jobs.JobError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        name = exc.filename if exc.filename is not None else source
        raise CLIError(f"cannot open {name}: {exc.strerror or exc}") from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        _say(f"interrupted; results so far are in {target}; run the same command again to resume")
        raise
    if listed > MAX_LISTED_INVALID:
        _say(f"{listed - MAX_LISTED_INVALID} more invalid lines (see {target})")
    out.write(f"anyapi batch: {summary} -> {target}\n")
    if summary.ok:
        return 0
    _say(
        f"{summary.failed + summary.skipped_failed} requests failed (error lines in {target}); "
        "fix what they name, then add --retry-failed to run them again"
    )
    return EXIT_ERROR
