"""Resumable JSONL batch jobs: `run_jsonl_job`, and the file logic any engine can reuse.

Input, one request per line: an OpenAI Batch API request line, or a plain request body
(what ``client.chat.completions.batch()`` takes), with an optional ``custom_id``:

```text
{"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ...}}
{"custom_id": "q2", "model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}
{"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}
```

A line without ``custom_id`` gets its line number, ``"line-7"``. Blank lines and a UTF-8
byte-order mark are ignored.

Output, one line per input line, as the OpenAI Batch API writes them, plus the request's
fingerprint:

```text
{"custom_id": "q1", "response": {"status_code": 200, "request_id": "...", "body": {...}},
 "error": null, "request_fingerprint": "9f86d081884c7d65"}
```

``error`` is set exactly when the item failed; ``response`` holds what the server answered,
if it answered. An invalid input line gets an error line naming its line number (type
``invalid_request``).

Identity: ``request_fingerprint`` is a hash of the request as sent (keys sorted, after
``model=``). Before anything is written, a resumed job checks every recorded result
against the input: a result whose custom_id now names a different request, or that no
input line produced, means the file is another job's output, and `JobConflict` is raised.

Resuming: each result is appended as one ``write()`` of one whole line, so a killed run
leaves at most a torn last line. On start the runner cuts a torn tail, reads the results
already written, skips the input lines they answer and runs the rest. With
``retry_failed`` it first rewrites the file without its failed results (a new file renamed
over the old one, so a kill leaves either), and their lines run again.

Stopping early (`Breaker`, shared by every engine): a run of `STOP_AFTER_ENDPOINT_ERRORS`
consecutive connection errors (or 404s before any success: a wrong URL), any 401, 402 or
403, or a 429 ``insufficient_quota`` (out of credit), stops the job with `JobStopped`; so
does a run that ends with only such failures and no success. The requests that met those
errors and the ones not sent yet are not recorded, so running the job again completes them.

The file logic (input lines, fingerprints, the locked output, result lines) lives in
`anyapi_async._jobfiles`; `open_job` and `JobFiles` here put it together for any engine,
and `run_jsonl_job` is the local engine.

Memory: results are written as they come and never kept. The one structure that grows with
the job is the table of results already in the output, read on a resume (about 165 bytes
per id); each entry is dropped as its input line is skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from ._batch import BatchResult, BatchRun, ProgressCallback
from ._exceptions import (
    APIConnectionError,
    AuthenticationError,
    JobConflict,
    JobError,
    JobStopped,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    error_line,
)
from ._jobfiles import (
    InputItem,
    OutputFile,
    Recorded,
    count_lines,
    invalid_record,
    read_input,
    result_record,
)
from ._messages import CHAT_PATH as CHAT_COMPLETIONS_PATH
from ._records import JobSummary
from ._types import ChatCompletion

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._ratelimit import RateLimiter

__all__ = [
    "DEFAULT_JOB_CONCURRENCY",
    "STOP_AFTER_ENDPOINT_ERRORS",
    "Breaker",
    "JobConflict",
    "JobError",
    "JobFiles",
    "JobStopped",
    "JobSummary",
    "failure_kind",
    "open_job",
    "run_jsonl_job",
]

DEFAULT_JOB_CONCURRENCY: Final = 64
#: Consecutive endpoint failures (connection errors; 404s before any success) that stop a job.
STOP_AFTER_ENDPOINT_ERRORS: Final = 5


async def send_body(client: AsyncClient, body: dict[str, Any]) -> ChatCompletion:
    """Send one job body through the client's public seam (the Ray engine does too).

    The body goes out as written in the file, gateway-specific fields included, as the
    Batch API does; read_input has checked model and messages. The completion keeps the
    server's bytes (to_dict()) for the result line.
    """
    return await client.post(CHAT_COMPLETIONS_PATH, body=body, cast_to=ChatCompletion)


# --- opening a job: the part every engine shares ----------------------------------------------


class JobFiles:
    """An input and its locked, checked output, ready to run (from `open_job`).

    `pending` yields the input items still to run (writing invalid lines as it meets them
    and skipping the ones already answered); `record` appends a result. Close it (or use
    ``with``) when done.
    """

    def __init__(
        self,
        source: Path,
        input_file: BinaryIO,
        output: OutputFile,
        recorded: Recorded,
        summary: JobSummary,
        model: str | None,
    ) -> None:
        self.source = source
        self.summary = summary
        self._input = input_file
        self._output = output
        self._recorded = recorded
        self._model = model
        #: Results already in the output that this run keeps (and skips).
        self.recorded = recorded.count
        #: Told the running count of skipped items (for a progress display).
        self.on_skip: Callable[[int], None] | None = None

    @property
    def output_path(self) -> Path:
        return self._output.path

    def pending(
        self, on_invalid_line: Callable[[int, str], object] | None = None
    ) -> Generator[InputItem, None, None]:
        """The items to run, lazily; invalid lines are written (and reported) as met."""
        summary = self.summary
        for item in read_input(self._input, self._model):
            failed = self._recorded.take(item.custom_id, item.fingerprint)
            if failed is not None:
                summary.skipped += 1
                if failed:
                    summary.skipped_failed += 1
                if self.on_skip is not None:
                    self.on_skip(summary.skipped)
                continue
            if item.error is not None:
                self._output.write(invalid_record(item))
                summary.invalid += 1
                summary.failed += 1
                if on_invalid_line is not None:
                    on_invalid_line(item.number, item.error[0])
                continue
            yield item

    def record(
        self,
        item: InputItem,
        completion: ChatCompletion | None,
        error: BaseException | None = None,
    ) -> None:
        """Append the result of ``item`` and count it."""
        self._output.write(result_record(item.custom_id, item.fingerprint, completion, error))
        if completion is not None:
            self.summary.succeeded += 1
        else:
            self.summary.failed += 1

    def record_line(self, record: Mapping[str, Any], *, ok: bool) -> None:
        """Append a result line another engine built with `result_record`, and count it."""
        self._output.write(record)
        if ok:
            self.summary.succeeded += 1
        else:
            self.summary.failed += 1

    def close(self) -> None:
        self._input.close()
        self._output.close()

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _verify(source: Path, recorded: Recorded, model: str | None, output: Path) -> None:
    """Raise `JobConflict` unless every recorded result answers a request of the input."""
    left = recorded.copy()
    # Input lines whose custom_id has results, none of them for this request (first line).
    unmatched: dict[str, int] = {}
    with open(source, "rb") as f:
        for item in read_input(f, model):
            custom_id = item.custom_id
            if left.take(custom_id, item.fingerprint) is None and recorded.has(custom_id):
                unmatched.setdefault(custom_id, item.number)
    if not left.count:
        return
    problems: list[str] = []
    changed = [(cid, number) for cid, number in unmatched.items() if left.has(cid)]
    if changed:
        cid, number = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        problems.append(
            f"custom_id {cid!r} of line {number} was answered for a different request{more}"
        )
    orphans = [cid for cid in left.ids() if cid not in unmatched]
    if orphans:
        count = sum(left.count_of(cid) for cid in orphans)
        example = orphans[0]
        problems.append(f"{count} results (custom_id {example!r}, ...) match no line of {source}")
    raise JobConflict(
        f"{output} holds results of other requests: {'; '.join(problems)}. It is another "
        "job's output (or INPUT or --model changed): write to a new output file, or use "
        "--retry-failed if only lines that had failed were changed"
    )


def open_job(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    model: str | None = None,
    retry_failed: bool = False,
    on_notice: Callable[[str], object] | None = None,
) -> JobFiles:
    """Open the input, lock the output, check that it is this job's and make it resumable.

    In order: lock the output; read its results (a torn last line left aside); refuse it
    with `JobConflict` if they answer other requests; only then write: cut the torn line,
    and with ``retry_failed`` rewrite the file without its failed results. Nothing is
    written when an error is raised. ``on_notice`` hears about repairs, one line each.
    """
    source, target = Path(input_path), Path(output_path)
    if target.exists() and source.resolve() == target.resolve():
        raise JobError("the output file must not be the input file")
    f = open(source, "rb")  # noqa: SIM115 - closed by JobFiles.close
    try:
        output = OutputFile(target)
        try:
            output.remove_stale()
            end = output.valid_end()
            recorded, blank = output.scan(end)
            summary = JobSummary(target)
            if retry_failed:
                summary.retried = recorded.drop_failed()
            if recorded.count:
                _verify(source, recorded, model, target)
            summary.repaired = output.size() - end
            if summary.repaired:
                output.truncate(end)
                if on_notice is not None:
                    on_notice(
                        f"{target}: removed a torn last line ({summary.repaired} bytes) left "
                        "by an interrupted run; its request runs again"
                    )
            if summary.retried or (retry_failed and blank):
                output.compact(end)
                if on_notice is not None and summary.retried:
                    on_notice(f"{target}: running the {summary.retried} failed requests again")
        except BaseException:
            output.close()
            raise
    except BaseException:
        f.close()
        raise
    return JobFiles(source, f, output, recorded, summary, model)


# --- the local engine -----------------------------------------------------------------------


#: Kinds of failure that may be the endpoint's rather than the request's (`failure_kind`).
REFUSED: Final = "refused"
UNREACHABLE: Final = "unreachable"
NOT_FOUND: Final = "not_found"
#: The 429 code OpenAI-compatible APIs send when the account is out of credit.
INSUFFICIENT_QUOTA: Final = "insufficient_quota"


def failure_kind(error: BaseException | None) -> str:
    """`REFUSED`, `UNREACHABLE`, `NOT_FOUND` for an endpoint-like failure, else ``""``.

    Refused: the key or account (401, 402, 403, a 429 ``insufficient_quota``); unreachable:
    a connection error; not found: a 404 that is not ``model_not_found`` (a wrong URL,
    unless an earlier request of the run succeeded).
    """
    if isinstance(error, (AuthenticationError, PaymentRequiredError, PermissionDeniedError)):
        return REFUSED
    if isinstance(error, RateLimitError) and error.code == INSUFFICIENT_QUOTA:
        return REFUSED
    if isinstance(error, APIConnectionError):
        return UNREACHABLE
    if isinstance(error, NotFoundError) and error.code != "model_not_found":
        return NOT_FOUND
    return ""


class Breaker:
    """The early stop every engine shares: results go through `add`, then `finish`.

    A refused key or account stops the job at once; endpoint failures are held back, and
    ``limit`` of them in a row stop it. A held failure is recorded only once the streak is
    broken by another result, or at the end of a run in which some request succeeded; a
    run that ends with nothing but held failures stops the same way. What stops the job is
    not recorded, so running it again sends those requests.
    """

    def __init__(self, files: JobFiles, limit: int = STOP_AFTER_ENDPOINT_ERRORS) -> None:
        self._files = files
        self._limit = limit
        self._held: list[tuple[Mapping[str, Any], bool]] = []
        self._answered = False
        self._last: tuple[str, BaseException | None] = ("", None)

    def add(
        self,
        record: Mapping[str, Any],
        ok: bool,
        kind: str,
        message: str,
        error: BaseException | None = None,
    ) -> None:
        """Record one result line (``kind``/``message``: its `failure_kind` and description)."""
        if kind == REFUSED:
            raise self._stop(f"the endpoint refused a request: {message}", error)
        if kind == UNREACHABLE or (kind == NOT_FOUND and not self._answered):
            self._held.append((record, ok))
            if len(self._held) >= self._limit:
                raise self._stop(f"{len(self._held)} requests in a row failed: {message}", error)
            self._last = (message, error)
            return
        self._answered = self._answered or ok
        self._flush()  # the streak is broken: those failures were the requests' own
        self._files.record_line(record, ok=ok)

    def finish(self) -> None:
        """The run's end: record held failures, or stop if nothing succeeded this run."""
        if self._held and not self._answered:
            message, error = self._last
            raise self._stop(f"no request succeeded ({len(self._held)} failed): {message}", error)
        self._flush()

    def _flush(self) -> None:
        for record, ok in self._held:
            self._files.record_line(record, ok=ok)
        self._held.clear()

    def _stop(self, reason: str, error: BaseException | None) -> JobStopped:
        return JobStopped(
            f"stopped: {reason.rstrip('.')}. Nothing was recorded for those requests or the "
            "ones not yet sent: fix the endpoint, key or account and run the same job again "
            "to resume",
            self._files.summary,
            error,
        )


def _add_result(breaker: Breaker, result: BatchResult) -> None:
    item = result.request
    assert isinstance(item, dict)
    input_item: InputItem = item["item"]
    error = result.error
    kind = failure_kind(error)
    breaker.add(
        result_record(input_item.custom_id, input_item.fingerprint, result.completion, error),
        result.ok,
        kind,
        error_line(error) if kind and error is not None else "",
        error,
    )


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
) -> JobSummary:
    """Run every request of a JSONL file and append one result line per request.

    Run it again with the same paths after a crash, a kill or Ctrl-C and it resumes where
    it stopped; see `anyapi_async._jobs` for the formats. ``retry_failed=True`` runs the
    requests whose recorded result is a failure again, leaving one line per request.
    Without ``client`` one is made from ``api_key``/``base_url``/``max_retries`` (defaults:
    the environment) and closed at the end. ``model`` replaces every body's model.
    ``on_invalid_line(number, message)`` hears about each invalid input line (they are also
    written as error lines), ``on_notice(message)`` about repairs of the output.

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
        if client is None:
            from ._client import AsyncClient

            # The key comes from resolve_api_key(), as for the CLI: api_key, else the
            # environment's (pasted blank stripped), else none for a local server.
            client = owned = AsyncClient(api_key=api_key, base_url=base_url)
        if max_retries is not None:
            client = client.with_options(max_retries=max_retries)
        items = (
            {"custom_id": item.custom_id, "body": item.body, "item": item}
            for item in files.pending(on_invalid_line)
        )
        run = BatchRun(
            client,
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
