"""The job logic both engines share: sending a body, opening a job, the early stop.

`send_body` is the one place a job sends a request (through the client's public
``post``). `open_job` opens the input, locks and checks the output and makes it resumable
(`JobFiles`); `answer_line` turns a request's outcome into what `Breaker` records; `Breaker`
stops a job whose endpoint keeps failing. The local engine (`.local`) and the Ray engine
(`.on_ray`) differ only in how they send the pending requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from .._exceptions import (
    AllRoutesFailedError,
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
from .._messages import CHAT_PATH as CHAT_COMPLETIONS_PATH
from .._records import JobSummary
from .._types import ChatCompletion
from .files import InputItem, OutputFile, Recorded, invalid_record, read_input, result_record

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._router import Router

__all__ = [
    "DEFAULT_JOB_CONCURRENCY",
    "STOP_AFTER_ENDPOINT_ERRORS",
    "Breaker",
    "JobFiles",
    "Line",
    "answer_line",
    "failure_kind",
    "open_job",
    "send_body",
]

DEFAULT_JOB_CONCURRENCY: Final = 64
#: Consecutive endpoint failures (connection errors; 404s before any success) that stop a job.
STOP_AFTER_ENDPOINT_ERRORS: Final = 5

#: What an engine hands `Breaker.add` for one request: its result line, whether it
#: succeeded, and, for a failure that may be the endpoint's rather than the request's, its
#: `failure_kind` and description.
Line = tuple[dict[str, Any], bool, str, str]


async def send_body(client: AsyncClient | Router, body: dict[str, Any]) -> ChatCompletion:
    """Send one job body: the one place either engine sends a request (the Ray stage too).

    Only the client's public API (`AsyncClient.post`), so the client's insides can change
    under it. The body goes out as written in the file, gateway-specific fields included,
    as the Batch API does; read_input has checked model and messages. The completion keeps
    the server's bytes (to_dict()) for the result line.
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



# --- the early stop ----------------------------------------------------------------------


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
    if isinstance(error, AllRoutesFailedError) and error.errors:
        # Through a Router: endpoint-like only when every route failed the same way.
        kinds = {failure_kind(e) for _, e in error.errors}
        if len(kinds) == 1:
            return kinds.pop()
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




def answer_line(
    custom_id: str,
    fingerprint: str,
    completion: ChatCompletion | None,
    error: BaseException | None,
) -> Line:
    """The `Line` of one request's outcome, as every engine records it."""
    kind = failure_kind(error)
    message = error_line(error) if kind and error is not None else ""
    record = result_record(custom_id, fingerprint, completion, error)
    return record, error is None, kind, message
