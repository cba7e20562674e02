"""The local engine: `run_jsonl_job` sends a job's requests from this process's event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .._batch import BatchResult, BatchRun, ProgressCallback
from .._records import JobSummary
from .files import InputItem, count_lines
from .plan import DEFAULT_JOB_CONCURRENCY, Breaker, answer_line, open_job, send_body

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._ratelimit import RateLimiter
    from .._router import Router
    from ..cache import Cache

__all__ = ["run_jsonl_job"]


def _add_result(breaker: Breaker, result: BatchResult) -> None:
    item = result.request
    assert isinstance(item, dict)
    input_item: InputItem = item["item"]
    line = answer_line(
        input_item.custom_id, input_item.fingerprint, result.completion, result.error
    )
    breaker.add(*line, result.error)


async def run_jsonl_job(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    client: AsyncClient | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    max_retries: int | None = None,
    concurrency: int = DEFAULT_JOB_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    limiter: RateLimiter | None = None,
    progress: ProgressCallback | bool | None = None,
    retry_failed: bool = False,
    on_invalid_line: Callable[[int, str], object] | None = None,
    on_notice: Callable[[str], object] | None = None,
    cache: Cache | None = None,
    router: Router | None = None,
) -> JobSummary:
    """Run every request of a JSONL file and append one result line per request.

    Run it again with the same paths after a crash, a kill or Ctrl-C and it resumes where
    it stopped; see `anyapi_async._jobs` for the formats. ``retry_failed=True`` runs the
    requests whose recorded result is a failure again, leaving one line per request.
    Without ``client`` one is made from ``api_key``/``base_url``/``max_retries`` (defaults:
    the environment) and closed at the end. With ``router`` (a `Router`, instead of
    ``client``) each request fails over across its routes (docs/failover.md). ``model``
    replaces every body's model.
    ``on_invalid_line(number, message)`` hears about each invalid input line (they are also
    written as error lines), ``on_notice(message)`` about repairs of the output. ``cache``
    (an `anyapi_async.cache` backend, for the client made here; a given client has its
    own) answers requests already answered: rerunning a finished job into a new output
    sends nothing.

    Example:

    ```python
    summary = await run_jsonl_job("requests.jsonl", "results.jsonl", rpm=500)
    print(summary)      # 998 succeeded, 2 failed, 0 skipped as already done
    ```

    Raises:
        JobConflict: the output holds results of other requests (nothing is written).
        JobStopped: the endpoint kept failing (connection errors, 401/402/403) or the
            output could not be written; running the job again resumes it.
        JobError: the output is locked by another run, or is not a result file.
        OSError: the input cannot be read or the output opened.
    """
    if client is not None and (api_key is not None or base_url is not None):
        raise ValueError("pass either client=... or api_key/base_url, not both")
    if client is not None and cache is not None:
        raise ValueError("pass cache=... to the client (AsyncClient(cache=...)), not to the job")
    if router is not None and (client is not None or api_key is not None or base_url is not None):
        raise ValueError("pass either router=... or client=... / api_key/base_url, not both")
    if router is not None and cache is not None:
        raise ValueError("pass cache=... to the routes' clients (AsyncClient(cache=...))")
    started = asyncio.get_running_loop().time()
    # Opening, checking and compacting happen before any request is in flight, so doing
    # them on the loop's thread holds nothing up.
    files = open_job(
        input_path, output_path, model=model, retry_failed=retry_failed, on_notice=on_notice
    )
    owned: AsyncClient | None = None
    items: Generator[dict[str, Any], None, None] | None = None
    summary = files.summary
    try:
        sender: AsyncClient | Router
        if router is not None:
            sender = router  # its attempts go out with retries off: max_retries is moot
        else:
            if client is None:
                from .._client import AsyncClient

                # The key comes from resolve_api_key(), as for the CLI: api_key, else the
                # environment's (pasted blank stripped), else none for a local server.
                client = owned = AsyncClient(api_key=api_key, base_url=base_url, cache=cache)
            if max_retries is not None:
                client = client.with_options(max_retries=max_retries)
            sender = client
        items = (
            {"custom_id": item.custom_id, "body": item.body, "item": item}
            for item in files.pending(on_invalid_line)
        )
        run = BatchRun(
            sender,  # type: ignore[arg-type]  # a Router is a batch client over its own pipeline
            items,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            limiter=limiter,
            progress=progress,
            send=send_body,
        )
        stats = run.stats
        if progress:
            stats.total = max(0, count_lines(files.source) - files.recorded)

        def skipped(n: int) -> None:
            stats.skipped = n

        files.on_skip = skipped
        breaker = Breaker(files)
        async with run:
            async for result in run:
                _add_result(breaker, result)
        breaker.finish()
    finally:
        if items is not None:
            items.close()
        files.close()
        if owned is not None:
            await owned.aclose()
    summary.elapsed = asyncio.get_running_loop().time() - started
    return summary
