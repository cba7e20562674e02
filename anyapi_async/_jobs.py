"""Resumable JSONL batch jobs: `run_jsonl_job`, and the file logic any engine can reuse.

Input, one request per line: an OpenAI Batch API request line, or a plain request body
(what ``client.chat.completions.batch()`` takes), with an optional ``custom_id``::

    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ...}}
    {"custom_id": "q2", "model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}
    {"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}

A line without ``custom_id`` gets its line number, ``"line-7"``. Blank lines and a UTF-8
byte-order mark are ignored.

Output, one line per input line, as the OpenAI Batch API writes them, plus the request's
fingerprint::

    {"custom_id": "q1", "response": {"status_code": 200, "request_id": "...", "body": {...}},
     "error": null, "request_fingerprint": "9f86d081884c7d65"}

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

Stopping early: a run of `STOP_AFTER_ENDPOINT_ERRORS` consecutive connection errors (or
404s before any success: a wrong URL), or any 401, 402 or 403, stops the job with
`JobStopped`. The requests that met those errors and the ones not sent yet are not
recorded, so running the job again completes them.

Memory: results are written as they come and never kept. The one structure that grows with
the job is the table of results already in the output, read on a resume (about 150 bytes
per id); each entry is dropped as its input line is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import msgspec

from ._batch import BatchResult, BatchRun, ProgressCallback
from ._decode import COMPLETION_DECODER, JSON_DECODER
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
)
from ._resources import CHAT_PATH as CHAT_COMPLETIONS_PATH
from ._resources import check_messages
from ._types import ChatCompletion

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._ratelimit import RateLimiter

__all__ = [
    "DEFAULT_JOB_CONCURRENCY",
    "STOP_AFTER_ENDPOINT_ERRORS",
    "InputItem",
    "JobConflict",
    "JobError",
    "JobFiles",
    "JobStopped",
    "JobSummary",
    "describe_error",
    "open_job",
    "read_input",
    "request_fingerprint",
    "result_record",
    "run_jsonl_job",
]

DEFAULT_JOB_CONCURRENCY: Final = 64
#: Consecutive endpoint failures (connection errors; 404s before any success) that stop a job.
STOP_AFTER_ENDPOINT_ERRORS: Final = 5
#: Id of a line without custom_id: its 1-based line number.
LINE_ID_PREFIX: Final = "line-"
#: ``error.type`` of lines refused before any request was sent.
INVALID_TYPE: Final = "invalid_request"
#: The output field holding the request's fingerprint.
FINGERPRINT_FIELD: Final = "request_fingerprint"
#: Longest error message written to a result line or printed (an HTML page is cut short).
MAX_MESSAGE_LENGTH: Final = 300
_READ_CHUNK: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"
_LINE_SHAPES: Final = (
    'a line must be a Batch API request {"custom_id": ..., "method": "POST", "url": '
    '"/v1/chat/completions", "body": {...}} or a request body {"custom_id" (optional), '
    '"model": ..., "messages": [...], ...}'
)

_encoder = msgspec.json.Encoder()
_canonical = msgspec.json.Encoder(order="sorted")


class JobError(Exception):
    """The job cannot run or resume as asked (files, locking, a corrupt output file)."""


class JobConflict(JobError):
    """The output file holds results of other requests: it belongs to another job."""


class JobStopped(JobError):
    """The job stopped early (the endpoint failed, or the output cannot be written).

    What was recorded is kept; running the same job again resumes it. ``summary`` counts
    what this run did before stopping, ``error`` the error that stopped it.
    """

    def __init__(
        self,
        message: str,
        summary: JobSummary | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.summary = summary
        #: The error that stopped the job (an `APIError`, or the `OSError` of a write).
        self.error = error


class JobSummary:
    """What a `run_jsonl_job` call did.

    ``succeeded`` and ``failed`` count the items run this time (``failed`` includes
    ``invalid`` lines); ``skipped`` the items already in the output, ``skipped_failed`` of
    which had failed. ``retried`` counts the failed results removed to run again
    (``retry_failed``), ``repaired`` the bytes of a torn last line cut off. `ok` is true
    when the whole output is free of errors.
    """

    __slots__ = (
        "elapsed",
        "failed",
        "invalid",
        "output_path",
        "repaired",
        "retried",
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
        self.retried = 0
        self.repaired = 0
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
            f"skipped_failed={self.skipped_failed}, retried={self.retried}, "
            f"output_path={str(self.output_path)!r})"
        )


# --- identity ----------------------------------------------------------------------------


def request_fingerprint(request: object) -> str:
    """A short hash of a request (a body dict, or an invalid line's bytes), key order ignored."""
    data = request if isinstance(request, bytes) else _canonical.encode(request)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


# --- reading the input ----------------------------------------------------------------------


class InputItem(msgspec.Struct, frozen=True):
    """One input line: a request to send (``body``), or an invalid line (``error``)."""

    number: int
    custom_id: str
    fingerprint: str
    body: dict[str, Any] | None = None
    #: ``(message, code)`` of an invalid line, the message starting with ``"line N: "``.
    error: tuple[str, str] | None = None


def _check_body(body: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    body = dict(body)
    if model is not None:
        body["model"] = model
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ValueError("the body has no 'model' (or pass --model)")
    if body.get("messages") is None:
        raise ValueError("the body has no 'messages'")
    check_messages(body["messages"])
    if body.get("stream"):
        raise ValueError("'stream': true is not supported in a batch job")
    return body


def _parse_line(number: int, raw: bytes, model: str | None) -> InputItem | None:
    raw = raw.strip()
    if number == 1 and raw.startswith(_BOM):  # a file saved "with BOM" by an editor
        raw = raw[len(_BOM) :].strip()
    if not raw:
        return None
    line_id = f"{LINE_ID_PREFIX}{number}"

    def invalid(custom_id: str, fingerprint: str, message: str, code: str) -> InputItem:
        return InputItem(number, custom_id, fingerprint, error=(f"line {number}: {message}", code))

    try:
        obj = JSON_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        return invalid(line_id, request_fingerprint(raw), f"not valid JSON ({exc})", "invalid_json")
    if not isinstance(obj, dict):
        return invalid(line_id, request_fingerprint(raw), "not a JSON object", "invalid_line")
    custom_id = obj.get("custom_id", line_id)
    if not isinstance(custom_id, str):
        return invalid(
            line_id, request_fingerprint(raw), "custom_id must be a string", "invalid_line"
        )
    if "body" in obj:  # a Batch API line
        body = obj["body"]
        if not isinstance(body, dict):
            return invalid(custom_id, request_fingerprint(obj), "'body' is not an object",
                           "missing_body")  # fmt: skip
        url = obj.get("url")
        if url is not None and not str(url).rstrip("/").endswith(CHAT_COMPLETIONS_PATH):
            return invalid(custom_id, request_fingerprint(obj), f"url {url!r} is not supported",
                           "unsupported_url")  # fmt: skip
        method = obj.get("method")
        if method is not None and str(method).upper() != "POST":
            return invalid(custom_id, request_fingerprint(obj),
                           f"method {method!r} is not supported", "unsupported_method")  # fmt: skip
    else:  # a request body, as batch() takes it; custom_id is ours, not the server's
        body = {k: v for k, v in obj.items() if k != "custom_id"}
        if not body.keys() & {"model", "messages"}:
            return invalid(custom_id, request_fingerprint(obj), _LINE_SHAPES, "missing_body")
    sent = dict(body, model=model) if model is not None else body
    fingerprint = request_fingerprint(sent)
    try:
        body = _check_body(body, model)
    except (TypeError, ValueError) as exc:
        return invalid(custom_id, fingerprint, str(exc), "invalid_body")
    return InputItem(number, custom_id, fingerprint, body)


def read_input(f: BinaryIO, model: str | None = None) -> Generator[InputItem, None, None]:
    """Every non-blank line of an input file, parsed and checked (``model`` replaces each)."""
    for number, raw in enumerate(f, 1):
        item = _parse_line(number, raw, model)
        if item is not None:
            yield item


# --- the output file ----------------------------------------------------------------------


class _ErrorField(msgspec.Struct):
    code: Any = None


class _DoneLine(msgspec.Struct):
    """The fields of an output line a resume needs; msgspec skips the rest unbuilt."""

    custom_id: Any = None
    error: _ErrorField | None = None
    request_fingerprint: str | None = None


_done_decoder = msgspec.json.Decoder(_DoneLine)
#: A recorded result as the table keeps it: its fingerprint ("" when the line predates
#: fingerprints), with "!" appended when it failed. One str per id keeps the table small.
_Mark = str
_FAILED: Final = "!"


class _Recorded:
    """The results already in the output, by custom_id (a multiset: ids may repeat)."""

    __slots__ = ("_table", "count")

    def __init__(self) -> None:
        self._table: dict[str, _Mark | list[_Mark]] = {}
        self.count = 0

    def add(self, custom_id: str, fingerprint: str | None, failed: bool) -> None:
        mark = (fingerprint or "") + (_FAILED if failed else "")
        self.count += 1
        old = self._table.get(custom_id)
        if old is None:
            self._table[custom_id] = mark
        elif isinstance(old, list):
            old.append(mark)
        else:
            self._table[custom_id] = [old, mark]

    def copy(self) -> _Recorded:
        new = _Recorded()
        new.count = self.count
        new._table = {k: v[:] if isinstance(v, list) else v for k, v in self._table.items()}
        return new

    def has(self, custom_id: str) -> bool:
        return custom_id in self._table

    def take(self, custom_id: str, fingerprint: str) -> _Mark | None:
        """Remove and return the recorded result of this request, if there is one."""
        old = self._table.get(custom_id)
        if old is None:
            return None
        marks = old if isinstance(old, list) else [old]
        for i, mark in enumerate(marks):
            if mark.rstrip(_FAILED) in (fingerprint, ""):  # "": recorded before fingerprints
                rest = marks[:i] + marks[i + 1 :]
                if rest:
                    self._table[custom_id] = rest if len(rest) > 1 else rest[0]
                else:
                    del self._table[custom_id]
                self.count -= 1
                return mark
        return None

    def drop_failed(self) -> int:
        dropped = 0
        for custom_id in list(self._table):
            old = self._table[custom_id]
            marks = old if isinstance(old, list) else [old]
            kept = [m for m in marks if not m.endswith(_FAILED)]
            dropped += len(marks) - len(kept)
            if not kept:
                del self._table[custom_id]
            else:
                self._table[custom_id] = kept if len(kept) > 1 else kept[0]
        self.count -= dropped
        return dropped

    def first(self) -> str | None:
        return next(iter(self._table), None)

    def pop(self, custom_id: str) -> None:
        old = self._table.pop(custom_id, None)
        if old is not None:
            self.count -= len(old) if isinstance(old, list) else 1


def _failed(mark: _Mark) -> bool:
    return mark.endswith(_FAILED)


class _Output:
    """The output file, opened for appending, locked against a second run on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = self._open_locked(path)

    @staticmethod
    def _open_locked(path: Path) -> int:
        for _ in range(10):
            # O_APPEND: every write lands at the end, whole, even after a crash mid-run.
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _lock(fd, path)
                # A job that compacted the file renamed a new one over the path while we
                # opened it: lock that one instead.
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise JobError(f"{path} keeps being replaced by another job")  # pragma: no cover

    def valid_end(self) -> int:
        """Where the last whole line ends (a crash may have left a torn one after it)."""
        size = os.fstat(self._fd).st_size
        end = size
        while end > 0:
            start = max(0, end - _READ_CHUNK)
            chunk = os.pread(self._fd, end - start, start)
            if end == size and chunk.endswith(b"\n"):
                return size
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
        return 0

    def lines(self, end: int) -> Iterator[tuple[int, bytes]]:
        """``(line number, bytes)`` of the whole lines before ``end``."""
        with open(self.path, "rb") as f:
            pos = number = 0
            while pos < end:
                raw = f.readline(end - pos)  # bounded: never read past what was checked
                if not raw:
                    return
                pos += len(raw)
                number += 1
                yield number, raw

    def scan(self, end: int) -> tuple[_Recorded, int]:
        """The results recorded before ``end``, and the number of blank lines."""
        recorded = _Recorded()
        blank = 0
        for number, raw in self.lines(end):
            if not raw.strip():
                blank += 1  # an editor's stray newline: harmless
                continue
            try:
                line = _done_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                raise JobError(
                    f"{self.path}:{number}: not a result line ({exc}); the file is not a "
                    "job's output, or was edited"
                ) from None
            if not isinstance(line.custom_id, str):
                raise JobError(f"{self.path}:{number}: result line without a custom_id")
            recorded.add(line.custom_id, line.request_fingerprint, line.error is not None)
        return recorded, blank

    def truncate(self, end: int) -> None:
        os.ftruncate(self._fd, end)

    def compact(self, end: int) -> None:
        """Rewrite the file without its failed results and blank lines, atomically.

        The kept lines go to a new file that is fsynced and renamed over the old one, so a
        kill at any moment leaves either the old file or the new one, whole.
        """
        tmp = self.path.with_name(f".{self.path.name}.anyapi-compact")
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _lock(fd, tmp)  # before the rename, so the new file is ours from the start
            kept: list[bytes] = []
            size = 0
            for _, raw in self.lines(end):
                if raw.strip() and _done_decoder.decode(raw).error is None:
                    kept.append(raw)
                    size += len(raw)
                    if size >= _READ_CHUNK:
                        _write_all(fd, b"".join(kept))
                        kept.clear()
                        size = 0
            _write_all(fd, b"".join(kept))
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)
        old, self._fd = self._fd, fd
        os.close(old)

    def remove_stale(self) -> None:
        """Delete a compaction file a killed run left behind (we hold the lock)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path.with_name(f".{self.path.name}.anyapi-compact"))

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one line in one ``write()``, so a kill can only tear the very last line."""
        try:
            _write_all(self._fd, _encoder.encode(record) + b"\n")
        except OSError as exc:
            raise JobStopped(
                f"cannot write to {self.path}: {exc.strerror or exc}; the results written so "
                "far are kept: fix this and run the same job again to resume",
                error=exc,
            ) from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JobError(f"{path} is being written by another job") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    # A local file takes the whole buffer at once; loop in case it does not.
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- result lines ---------------------------------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """One short line for an error: an HTML error page becomes its status and title."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, APIStatusError) and isinstance(exc.body, str) and _is_html(exc.body):
        from http import HTTPStatus

        try:
            reason = HTTPStatus(exc.status_code).phrase
        except ValueError:
            reason = "error"
        title = _html_title(exc.body)
        message = f"Error code: {exc.status_code} {reason} (an HTML page"
        message += f": {title!r})" if title else ")"
        if exc.attempts is not None and exc.attempts > 1:
            message += f" (after {exc.attempts} attempts)"
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    return message


def _is_html(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith(("<!doctype html", "<html")) or "<title" in text[:2000].lower()


def _html_title(text: str) -> str | None:
    import re

    found = re.search(r"<title[^>]*>(.*?)</title>", text[:10_000], re.IGNORECASE | re.DOTALL)
    if found is None:
        return None
    import html

    return " ".join(html.unescape(found.group(1)).split())[:120] or None


def _error(message: str, type_: str, code: object = None) -> dict[str, Any]:
    return {"message": message, "type": type_, "code": code}


def _raw_body(completion: ChatCompletion) -> Any:
    body: bytes | None = completion.__dict__.get(_RAW_BODY)
    if body is None:  # decoded by the tolerant path: re-encode what we understood
        return msgspec.to_builtins(completion)
    if b"\n" in body or b"\r" in body:  # pretty-printed: one JSONL line needs it compact
        return JSON_DECODER.decode(body)
    return msgspec.Raw(body)


def invalid_record(item: InputItem) -> dict[str, Any]:
    """The result line of an invalid input line."""
    assert item.error is not None
    message, code = item.error
    return {
        "custom_id": item.custom_id,
        "response": None,
        "error": _error(message, INVALID_TYPE, code),
        FINGERPRINT_FIELD: item.fingerprint,
    }


def result_record(
    custom_id: str,
    fingerprint: str,
    completion: ChatCompletion | None,
    error: BaseException | None,
) -> dict[str, Any]:
    """The result line of a request: its completion, or the error it met."""
    record: dict[str, Any]
    if completion is not None:
        info = completion.http
        record = {
            "custom_id": custom_id,
            "response": {
                "status_code": info.status_code if info is not None else 200,
                "request_id": info.request_id if info is not None else None,
                "body": _raw_body(completion),
            },
            "error": None,
        }
    elif isinstance(error, APIStatusError):
        record = {
            "custom_id": custom_id,
            "response": {
                "status_code": error.status_code,
                "request_id": error.request_id,
                "body": error.body,
            },
            "error": _error(describe_error(error), error.type or type(error).__name__, error.code),
        }
    elif isinstance(error, APIError):
        record = {
            "custom_id": custom_id,
            "response": None,
            "error": _error(describe_error(error), type(error).__name__),
        }
    else:
        record = {
            "custom_id": custom_id,
            "response": None,
            "error": _error(str(error), INVALID_TYPE, "invalid_request"),
        }
    record[FINGERPRINT_FIELD] = fingerprint
    return record


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
    # Batch API does; read_input has checked model and messages.
    completion: ChatCompletion = await client._request_json(
        "POST", CHAT_COMPLETIONS_PATH, _encoder.encode(body), None, _KEEP_BODY
    )
    return completion


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
        output: _Output,
        recorded: _Recorded,
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
            mark = self._recorded.take(item.custom_id, item.fingerprint)
            if mark is not None:
                summary.skipped += 1
                if _failed(mark):
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

    def close(self) -> None:
        self._input.close()
        self._output.close()

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _verify(source: Path, recorded: _Recorded, model: str | None, output: Path) -> None:
    """Raise `JobConflict` unless every recorded result answers a request of the input."""
    left = recorded.copy()
    conflicts = 0
    problems: list[str] = []
    with open(source, "rb") as f:
        for item in read_input(f, model):
            if left.take(item.custom_id, item.fingerprint) is None and left.has(item.custom_id):
                conflicts += 1
                left.pop(item.custom_id)
                if not problems:
                    problems.append(
                        f"custom_id {item.custom_id!r} of line {item.number} was answered for "
                        "a different request"
                    )
    if conflicts > 1:
        problems[0] += f" (and {conflicts - 1} more)"
    if left.count:
        problems.append(
            f"{left.count} results (custom_id {left.first()!r}, ...) match no line of {source}"
        )
    if problems:
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
        output = _Output(target)
        try:
            output.remove_stale()
            end = output.valid_end()
            recorded, blank = output.scan(end)
            summary = JobSummary(target)
            if retry_failed:
                summary.retried = recorded.drop_failed()
            if recorded.count:
                _verify(source, recorded, model, target)
            summary.repaired = os.fstat(output._fd).st_size - end
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


def _fatal(error: BaseException | None) -> bool:
    return isinstance(error, (AuthenticationError, PaymentRequiredError, PermissionDeniedError))


def _endpoint_failure(error: BaseException | None, answered: bool) -> bool:
    if isinstance(error, APIConnectionError):
        return True
    # A 404 before any success is a wrong URL; after one, it is this item's (a model id).
    return isinstance(error, NotFoundError) and not answered and error.code != "model_not_found"


class _Breaker:
    """Holds back endpoint failures; stops the job after too many in a row, or a fatal one."""

    def __init__(self, files: JobFiles, limit: int) -> None:
        self._files = files
        self._limit = limit
        self._held: list[BatchResult] = []
        self._answered = False

    def add(self, result: BatchResult) -> None:
        error = result.error
        if _fatal(error):
            assert isinstance(error, APIStatusError)
            raise self._stop(f"the endpoint refused a request: {describe_error(error)}", error)
        if _endpoint_failure(error, self._answered):
            assert error is not None
            self._held.append(result)
            if len(self._held) >= self._limit:
                reason = f"{len(self._held)} requests in a row failed: {describe_error(error)}"
                raise self._stop(reason, error)
            return
        self._answered = self._answered or isinstance(error, APIStatusError) or result.ok
        self.flush()  # the streak is broken: those failures were the items' own
        self._write(result)

    def flush(self) -> None:
        for held in self._held:
            self._write(held)
        self._held.clear()

    def _write(self, result: BatchResult) -> None:
        item = result.request
        assert isinstance(item, dict)
        self._files.record(item["item"], result.completion, result.error)

    def _stop(self, reason: str, error: BaseException) -> JobStopped:
        return JobStopped(
            f"stopped: {reason.rstrip('.')}. Nothing was recorded for those requests or the "
            "ones not yet sent: fix the endpoint, key or account and run the same job again "
            "to resume",
            self._files.summary,
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

    Example::

        summary = await run_jsonl_job("requests.jsonl", "results.jsonl", rpm=500)
        print(summary)      # 998 succeeded, 2 failed, 0 skipped as already done

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
            send=_send_body,
        )
        stats = run.stats
        if progress:
            stats.total = max(0, _count_lines(files.source) - files.recorded)

        def skipped(n: int) -> None:
            stats.skipped = n

        files.on_skip = skipped
        breaker = _Breaker(files, STOP_AFTER_ENDPOINT_ERRORS)
        async with run:
            async for result in run:
                breaker.add(result)
        breaker.flush()
    finally:
        if items is not None:
            items.close()
        files.close()
        if owned is not None:
            await owned.aclose()
    summary.elapsed = asyncio.get_running_loop().time() - started
    return summary


def _count_lines(path: Path) -> int:
    count = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            count += chunk.count(b"\n")
            last = chunk
    if count and not last.endswith(b"\n"):
        count += 1
    return count
