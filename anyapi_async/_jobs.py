"""Resumable JSONL batch jobs: `run_jsonl_job` and the ``anyapi batch`` command.

Input, one request per line: an OpenAI Batch API request line, or a plain request body:

```text
{"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ...}}
{"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}
```

A plain body's id is its line number, ``"line-7"``. Blank lines are ignored.

Output, one line per input line, as the OpenAI Batch API writes them:

```text
{"custom_id": "q1", "response": {"status_code": 200, "request_id": "...", "body": {...}},
 "error": null}
{"custom_id": "q2", "response": {"status_code": 400, "request_id": "...", "body": {...}},
 "error": {"message": "...", "type": "invalid_request_error", "code": null}}
```

``error`` is set exactly when the item failed; ``response`` holds what the server answered,
if it answered. A line that is not valid JSON, or has no body, gets an error line that names
its line number (type ``invalid_request``).

Resuming: each result is appended as one ``write()`` of one whole line, so a killed run
leaves at most a torn last line. On start the runner cuts any torn tail, reads the custom ids
already written, skips those input lines and runs the rest: every input line ends up with
exactly one output line. Items that failed stay failed (their error line counts as done).

Memory: results are written as they come and never kept. The one structure that grows with
the job is the table of ids already in the output, read on a resume (about 120 bytes per id,
so ~12 MB for 100,000 ids); each entry is dropped as its input line is skipped. Ids should
be unique, as the Batch API requires; duplicates are each run and each get a line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import msgspec

from ._argtypes import int_in, positive_float
from ._batch import BatchResult, BatchRun, ProgressCallback, TqdmProgress
from ._client import ENV_API_KEY, ENV_BASE_URL
from ._decode import COMPLETION_DECODER, JSON_DECODER
from ._exceptions import APIError, APIStatusError, JobError
from ._resources import CHAT_PATH as CHAT_COMPLETIONS_PATH
from ._resources import check_messages
from ._types import ChatCompletion

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._ratelimit import RateLimiter

__all__ = [
    "DEFAULT_JOB_CONCURRENCY",
    "JobError",
    "JobSummary",
    "add_batch_arguments",
    "run_batch_command",
    "run_jsonl_job",
]

DEFAULT_JOB_CONCURRENCY: Final = 64
#: Id of a plain request body (no custom_id): its 1-based line number.
LINE_ID_PREFIX: Final = "line-"
#: ``error.type`` of lines refused before any request was sent.
INVALID_TYPE: Final = "invalid_request"
#: Key sent to a loopback server when none is set (local servers accept any key).
LOCAL_API_KEY: Final = "anyapi-local"
#: Invalid lines the command lists one by one on stderr before only counting them.
MAX_LISTED_INVALID: Final = 20
_READ_CHUNK: Final = 1 << 20

_encoder = msgspec.json.Encoder()


class JobSummary:
    """What a `run_jsonl_job` call did.

    ``succeeded`` and ``failed`` count the items run this time (``failed`` includes
    ``invalid`` lines); ``skipped`` the items already in the output, ``skipped_failed`` of
    which had failed earlier. `ok` is true when the whole output is free of errors.
    """

    __slots__ = (
        "elapsed",
        "failed",
        "invalid",
        "output_path",
        "skipped",
        "skipped_failed",
        "succeeded",
    )

    def __init__(self, output_path: Path) -> None:
        self.output_path = output_path
        self.succeeded = 0
        self.failed = 0
        self.invalid = 0
        self.skipped = 0
        self.skipped_failed = 0
        self.elapsed = 0.0

    @property
    def ok(self) -> bool:
        """No item of the job failed, in this run or an earlier one."""
        return self.failed == 0 and self.skipped_failed == 0

    def __str__(self) -> str:
        text = (
            f"{self.succeeded} succeeded, {self.failed} failed, "
            f"{self.skipped} skipped as already done"
        )
        if self.skipped_failed:
            text += f" ({self.skipped_failed} of them had failed)"
        return text

    def __repr__(self) -> str:
        return (
            f"JobSummary(succeeded={self.succeeded}, failed={self.failed}, "
            f"invalid={self.invalid}, skipped={self.skipped}, "
            f"skipped_failed={self.skipped_failed}, output_path={str(self.output_path)!r})"
        )


# --- the output file ----------------------------------------------------------------------


class _ErrorField(msgspec.Struct):
    code: Any = None


class _DoneLine(msgspec.Struct):
    """The two fields of an output line a resume needs; msgspec skips the rest unbuilt."""

    custom_id: Any = None
    error: _ErrorField | None = None


_done_decoder = msgspec.json.Decoder(_DoneLine)


class _Output:
    """The output file, opened for appending, locked against a second run on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # O_APPEND: every write lands at the end, whole, even after a crash mid-run.
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._lock()
        except BaseException:
            os.close(self._fd)
            raise

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobError(f"{self.path} is being written by another job") from None

    def repair(self) -> int:
        """Cut a torn last line (a write a crash interrupted); return the bytes removed."""
        size = os.fstat(self._fd).st_size
        end = size
        while end > 0:
            start = max(0, end - _READ_CHUNK)
            chunk = os.pread(self._fd, end - start, start)
            if end == size and chunk.endswith(b"\n"):
                return 0
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        os.ftruncate(self._fd, end)
        return size - end

    def scan(self) -> tuple[dict[str, int], int, int]:
        """Ids already written (with their counts), the line count, and the error lines."""
        done: dict[str, int] = {}
        lines = failed = 0
        with open(self.path, "rb") as f:
            for lines, raw in enumerate(f, 1):
                try:
                    line = _done_decoder.decode(raw)
                except msgspec.DecodeError as exc:
                    raise JobError(
                        f"{self.path}:{lines}: not a result line ({exc}); the file is not "
                        "this job's output, or was edited"
                    ) from None
                if not isinstance(line.custom_id, str):
                    raise JobError(f"{self.path}:{lines}: result line without a custom_id")
                done[line.custom_id] = done.get(line.custom_id, 0) + 1
                if line.error is not None:
                    failed += 1
        return done, lines, failed

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one line in one ``write()``, so a kill can only tear the very last line."""
        data = memoryview(_encoder.encode(record) + b"\n")
        # A local file takes the whole buffer at once; loop in case it does not.
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _error(message: str, type_: str, code: object = None) -> dict[str, Any]:
    return {"message": message, "type": type_, "code": code}


def _invalid_line(custom_id: str, message: str, code: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "response": None, "error": _error(message, INVALID_TYPE, code)}


def _raw_body(completion: ChatCompletion) -> Any:
    body: bytes | None = completion.__dict__.get(_RAW_BODY)
    if body is None:  # decoded by the tolerant path: re-encode what we understood
        return msgspec.to_builtins(completion)
    if b"\n" in body or b"\r" in body:  # pretty-printed: one JSONL line needs it compact
        return JSON_DECODER.decode(body)
    return msgspec.Raw(body)


def _result_line(result: BatchResult, custom_id: str) -> dict[str, Any]:
    completion = result.completion
    if completion is not None:
        info = completion.http
        return {
            "custom_id": custom_id,
            "response": {
                "status_code": info.status_code if info is not None else 200,
                "request_id": info.request_id if info is not None else None,
                "body": _raw_body(completion),
            },
            "error": None,
        }
    exc = result.error
    if isinstance(exc, APIStatusError):
        return {
            "custom_id": custom_id,
            "response": {
                "status_code": exc.status_code,
                "request_id": exc.request_id,
                "body": exc.body,
            },
            "error": _error(str(exc), exc.type or type(exc).__name__, exc.code),
        }
    if isinstance(exc, APIError):
        return {
            "custom_id": custom_id,
            "response": None,
            "error": _error(str(exc), type(exc).__name__),
        }
    return {
        "custom_id": custom_id,
        "response": None,
        "error": _error(str(exc), INVALID_TYPE, "invalid_request"),
    }


# --- sending a body as it is ---------------------------------------------------------------

_RAW_BODY: Final = "_anyapi_raw_body"


class _KeepBody:
    """A decoder for the client's JSON path that also keeps the body's bytes.

    The job writes the server's body verbatim: a re-encoded Struct would lose the fields
    the library does not model (and the defaults msgspec leaves out).
    """

    type = ChatCompletion

    @staticmethod
    def decode(data: bytes) -> ChatCompletion:
        completion = COMPLETION_DECODER.decode(data)
        completion.__dict__[_RAW_BODY] = data
        return completion


_KEEP_BODY: Final[Any] = _KeepBody()


async def _send_body(client: AsyncClient, body: dict[str, Any]) -> ChatCompletion:
    # The body goes out as written in the file, gateway-specific fields included, as the
    # Batch API does; _read_items has checked model and messages.
    completion: ChatCompletion = await client._request_json(
        "POST", CHAT_COMPLETIONS_PATH, _encoder.encode(body), None, _KEEP_BODY
    )
    return completion


# --- reading the input ----------------------------------------------------------------------


def _check_body(body: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    body = dict(body)
    if model is not None:
        body["model"] = model
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ValueError("the body has no 'model' (or pass --model)")
    check_messages(body.get("messages"))
    if body.get("stream"):
        raise ValueError("'stream': true is not supported in a batch job")
    return body


class _Reader:
    """Yields the input's pending items lazily; writes error lines for invalid ones."""

    def __init__(
        self,
        output: _Output,
        done: dict[str, int],
        summary: JobSummary,
        model: str | None,
        on_invalid_line: Callable[[int, str], object] | None,
    ) -> None:
        self._output = output
        self._done = done
        self._summary = summary
        self._model = model
        self._on_invalid = on_invalid_line
        #: Told the running count of skipped items (for the progress display).
        self.on_skip: Callable[[int], None] | None = None

    def _is_done(self, custom_id: str) -> bool:
        left = self._done.get(custom_id)
        if not left:
            return False
        if left == 1:
            del self._done[custom_id]  # the table shrinks as the input is read
        else:
            self._done[custom_id] = left - 1
        self._summary.skipped += 1
        if self.on_skip is not None:
            self.on_skip(self._summary.skipped)
        return True

    def _invalid(self, number: int, custom_id: str, message: str, code: str) -> None:
        message = f"line {number}: {message}"
        self._output.write(_invalid_line(custom_id, message, code))
        self._summary.invalid += 1
        self._summary.failed += 1
        if self._on_invalid is not None:
            self._on_invalid(number, message)

    def items(self, f: BinaryIO) -> Generator[dict[str, Any], None, None]:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            line_id = f"{LINE_ID_PREFIX}{number}"
            try:
                obj = JSON_DECODER.decode(raw)
            except msgspec.DecodeError as exc:
                if not self._is_done(line_id):
                    self._invalid(number, line_id, f"not valid JSON ({exc})", "invalid_json")
                continue
            if not isinstance(obj, dict):
                if not self._is_done(line_id):
                    self._invalid(number, line_id, "not a JSON object", "invalid_line")
                continue
            batch_line = "body" in obj or "custom_id" in obj
            custom_id = obj.get("custom_id") if batch_line else None
            if custom_id is None:
                custom_id = line_id
            elif not isinstance(custom_id, str):
                custom_id = line_id
                if not self._is_done(custom_id):
                    self._invalid(number, custom_id, "custom_id must be a string", "invalid_line")
                continue
            if self._is_done(custom_id):
                continue
            body = obj.get("body") if batch_line else obj
            if not isinstance(body, dict):
                self._invalid(number, custom_id, "no 'body' object", "missing_body")
                continue
            url = obj.get("url") if batch_line else None
            if url is not None and not str(url).rstrip("/").endswith(CHAT_COMPLETIONS_PATH):
                self._invalid(number, custom_id, f"url {url!r} is not supported", "unsupported_url")
                continue
            method = obj.get("method") if batch_line else None
            if method is not None and str(method).upper() != "POST":
                self._invalid(
                    number, custom_id, f"method {method!r} is not supported", "unsupported_method"
                )
                continue
            try:
                body = _check_body(body, self._model)
            except (TypeError, ValueError) as exc:
                self._invalid(number, custom_id, str(exc), "invalid_body")
                continue
            yield {"custom_id": custom_id, "body": body}


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            count += chunk.count(b"\n")
            last = chunk
    if count and not last.endswith(b"\n"):
        count += 1
    return count


# --- the job --------------------------------------------------------------------------------


def _open_job(
    source: Path, target: Path
) -> tuple[BinaryIO, _Output, dict[str, int], int, JobSummary]:
    """Open the input, then lock, repair and scan the output."""
    if target.exists() and source.resolve() == target.resolve():
        raise JobError("the output file must not be the input file")
    f = open(source, "rb")  # noqa: SIM115 - closed by run_jsonl_job
    try:
        output = _Output(target)
        try:
            output.repair()
            done, written, failed_before = output.scan()
        except BaseException:
            output.close()
            raise
    except BaseException:
        f.close()
        raise
    summary = JobSummary(target)
    summary.skipped_failed = failed_before
    return f, output, done, written, summary


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
    on_invalid_line: Callable[[int, str], object] | None = None,
) -> JobSummary:
    """Run every request of a JSONL file and append one result line per request.

    Run it again with the same paths after a crash, a kill or Ctrl-C and it resumes where
    it stopped; see `anyapi_async._jobs` for the formats. Without ``client`` one is made
    from ``api_key``/``base_url``/``max_retries`` (defaults: the environment) and closed
    at the end. ``model`` replaces every body's model. ``on_invalid_line(number, message)``
    hears about each invalid input line (they are also written as error lines).

    Example:

    ```python
    summary = await run_jsonl_job("requests.jsonl", "results.jsonl", rpm=500)
    print(summary)      # 998 succeeded, 2 failed, 0 skipped as already done
    ```

    Raises:
        JobError: the output is locked by another run, or is not a result file.
        OSError: the input cannot be read or the output written.
    """
    if client is not None and (api_key is not None or base_url is not None):
        raise ValueError("pass either client=... or api_key/base_url, not both")
    started = asyncio.get_running_loop().time()
    source = Path(input_path)
    # Opening, repairing and scanning happen before any request is in flight, so doing
    # them on the loop's thread holds nothing up.
    f, output, done, written, summary = _open_job(source, Path(output_path))
    owned: AsyncClient | None = None
    items: Generator[dict[str, Any], None, None] | None = None
    try:
        if client is None:
            from ._client import AsyncClient

            client = owned = AsyncClient(api_key=api_key, base_url=base_url)
        if max_retries is not None:
            client = client.with_options(max_retries=max_retries)
        reader = _Reader(output, done, summary, model, on_invalid_line)
        items = reader.items(f)
        run = BatchRun(
            client,
            items,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            limiter=limiter,
            progress=progress,
            send=_send_body,
        )
        stats = run.stats
        if progress:
            stats.total = max(0, _count_lines(source) - written)

        def skipped(n: int) -> None:
            stats.skipped = n

        reader.on_skip = skipped
        async with run:
            async for result in run:
                custom_id = result.custom_id
                assert custom_id is not None  # _Reader always sets one
                output.write(_result_line(result, custom_id))
                if result.ok:
                    summary.succeeded += 1
                else:
                    summary.failed += 1
    finally:
        if items is not None:
            items.close()
        f.close()
        output.close()
        if owned is not None:
            await owned.aclose()
    summary.elapsed = asyncio.get_running_loop().time() - started
    return summary


# --- the command line -------------------------------------------------------------------------


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``anyapi batch`` options to ``parser`` (the CLI builds the parser)."""
    parser.description = (
        "Run every request of a JSONL file (OpenAI Batch API lines or plain request "
        "bodies) and append one result line per request to OUTPUT. Run the same command "
        "again after an interruption to resume. The API key comes from ANYAPI_API_KEY."
    )
    parser.add_argument("input", metavar="INPUT", help="JSONL file of requests")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="JSONL file of results, appended to (default: INPUT's name + .output.jsonl)",
    )
    parser.add_argument(
        "--concurrency",
        type=int_in(1),
        default=DEFAULT_JOB_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at most (default {DEFAULT_JOB_CONCURRENCY})",
    )
    parser.add_argument("--rpm", type=positive_float, metavar="N", help="requests per minute")
    parser.add_argument("--tpm", type=positive_float, metavar="N", help="tokens per minute")
    parser.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: ANYAPI_BASE_URL or AnyAPI)"
    )
    parser.add_argument("--model", metavar="M", help="use this model for every request")
    parser.add_argument(
        "--max-retries",
        type=int_in(0),
        metavar="N",
        help="retries per request after a failure (default 2)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: on when stderr is a terminal and tqdm is installed)",
    )


def _default_output(source: Path) -> Path:
    name = source.name[: -len(".jsonl")] if source.name.endswith(".jsonl") else source.name
    return source.with_name(name + ".output.jsonl")


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    from ._client import _is_loopback

    host = urlsplit(url).hostname
    return host is not None and _is_loopback(host)


def _progress_display(wanted: bool | None) -> ProgressCallback | None:
    if wanted is False or (wanted is None and not sys.stderr.isatty()):
        return None
    try:
        return TqdmProgress(desc="anyapi batch", file=sys.stderr)
    except ImportError:
        if wanted:
            raise
        return None


async def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``anyapi batch`` with parsed ``args``; print a one-line summary; return the status.

    0 when every item succeeded, 1 when any item failed (now or in an earlier run), 2 when
    the job could not run (files, key, options).
    """
    source = Path(args.input)
    target = Path(args.output) if args.output else _default_output(source)
    base_url = args.base_url or os.environ.get(ENV_BASE_URL) or None
    api_key = os.environ.get(ENV_API_KEY) or None
    if api_key is None:
        if base_url is None or not _is_loopback_url(base_url):
            print(f"anyapi batch: error: no API key: set {ENV_API_KEY}", file=sys.stderr)
            return 2
        api_key = LOCAL_API_KEY
    listed = 0

    def on_invalid_line(number: int, message: str) -> None:
        nonlocal listed
        listed += 1
        if listed <= MAX_LISTED_INVALID:
            print(f"anyapi batch: {source}: {message}", file=sys.stderr)

    try:
        progress = _progress_display(args.progress)
        summary = await run_jsonl_job(
            source,
            target,
            api_key=api_key,
            base_url=base_url,
            model=args.model,
            max_retries=args.max_retries,
            concurrency=args.concurrency,
            rpm=args.rpm,
            tpm=args.tpm,
            progress=progress,
            on_invalid_line=on_invalid_line,
        )
    except (JobError, OSError, ImportError, ValueError) as exc:
        print(f"anyapi batch: error: {exc}", file=sys.stderr)
        return 2
    except (asyncio.CancelledError, KeyboardInterrupt):
        print(
            f"anyapi batch: interrupted; results so far are in {target}; run the same "
            "command again to resume",
            file=sys.stderr,
        )
        raise
    if listed > MAX_LISTED_INVALID:
        print(
            f"anyapi batch: {listed - MAX_LISTED_INVALID} more invalid lines (see {target})",
            file=sys.stderr,
        )
    print(f"anyapi batch: {summary} -> {target}")
    return 0 if summary.ok else 1
