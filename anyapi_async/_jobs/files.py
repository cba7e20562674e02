"""The files of a JSONL job: input lines, fingerprints, the locked output, result lines.

Every engine that runs a JSONL job (the local one, the Ray one) shares this: `read_input`
parses and checks the input lines, `request_fingerprint` names a request, `OutputFile`
appends whole lines to a locked output and can repair and compact it, `result_record`
builds a result line. `.plan.open_job` puts them together.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec

from .._decode import JSON_DECODER
from .._exceptions import APIError, APIStatusError, JobError, JobStopped, error_line
from .._messages import CHAT_PATH as CHAT_COMPLETIONS_PATH
from .._messages import check_messages
from .._types import ChatCompletion, kept_body

__all__ = [
    "FINGERPRINT_FIELD",
    "INVALID_TYPE",
    "InputItem",
    "OutputFile",
    "Recorded",
    "check_body",
    "count_lines",
    "invalid_record",
    "read_input",
    "request_fingerprint",
    "result_record",
]

#: Id of a line without custom_id: its 1-based line number.
LINE_ID_PREFIX: Final = "line-"
#: ``error.type`` of lines refused before any request was sent.
INVALID_TYPE: Final = "invalid_request"
#: The output field holding the request's fingerprint.
FINGERPRINT_FIELD: Final = "request_fingerprint"
READ_CHUNK: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"
_LINE_SHAPES: Final = (
    'a line must be a Batch API request {"custom_id": ..., "method": "POST", "url": '
    '"/v1/chat/completions", "body": {...}} or a request body {"custom_id" (optional), '
    '"model": ..., "messages": [...], ...}'
)

_encoder = msgspec.json.Encoder()
#: How every result line starts (`result_record` puts custom_id first; JSON whitespace
#: ignored): a torn tail that does not start so is not ours, and is never cut.
_RESULT_START: Final = b'{"custom_id":'
_canonical = msgspec.json.Encoder(order="sorted")


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
    _check_sent(body)
    return body


def _check_sent(body: dict[str, Any]) -> None:
    """Raise `ValueError` (or `TypeError`) naming what makes ``body`` unsendable."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ValueError("the body has no 'model' (or pass --model)")
    if body.get("messages") is None:
        raise ValueError("the body has no 'messages'")
    check_messages(body["messages"])
    if body.get("stream"):
        raise ValueError("'stream': true is not supported in a batch job")


#: The Ray stage (anyapi_async.ray) checks a row's body as an input line's.
check_body: Final = _check_body


def _batch_line_problem(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(message, code)`` when a Batch API line cannot be sent as a chat completion."""
    if not isinstance(obj["body"], dict):
        return "'body' is not an object", "missing_body"
    url = obj.get("url")
    if url is not None and not str(url).rstrip("/").endswith(CHAT_COMPLETIONS_PATH):
        return f"url {url!r} is not supported", "unsupported_url"
    method = obj.get("method")
    if method is not None and str(method).upper() != "POST":
        return f"method {method!r} is not supported", "unsupported_method"
    return None


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
        problem = _batch_line_problem(obj)
        if problem is not None:
            return invalid(custom_id, request_fingerprint(obj), *problem)
        body = obj["body"]
    else:  # a request body, as batch() takes it; custom_id is ours, not the server's
        body = {k: v for k, v in obj.items() if k != "custom_id"}
        if not body.keys() & {"model", "messages"}:
            return invalid(custom_id, request_fingerprint(obj), _LINE_SHAPES, "missing_body")
    # The body as sent (copied only to replace the model): fingerprinted and checked.
    sent = dict(body, model=model) if model is not None else body
    fingerprint = request_fingerprint(sent)
    try:
        _check_sent(sent)
    except (TypeError, ValueError) as exc:
        return invalid(custom_id, fingerprint, str(exc), "invalid_body")
    return InputItem(number, custom_id, fingerprint, sent)


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
    error: _ErrorField | msgspec.UnsetType | None = msgspec.UNSET
    response: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    request_fingerprint: str | None = None


def _looks_like_result_start(tail: bytes) -> bool:
    """Whether a torn last line is the start of one of our result lines."""
    head = b"".join(tail[:200].split())
    return head.startswith(_RESULT_START) or _RESULT_START.startswith(head)


_done_decoder = msgspec.json.Decoder(_DoneLine)
#: A recorded result as the table keeps it: its fingerprint ("" when the line predates
#: fingerprints), with "!" appended when it failed. One str per id keeps the table small.
_Mark = str
_FAILED: Final = "!"


class Recorded:
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

    def copy(self) -> Recorded:
        new = Recorded()
        new.count = self.count
        new._table = {k: v[:] if isinstance(v, list) else v for k, v in self._table.items()}
        return new

    def has(self, custom_id: str) -> bool:
        return custom_id in self._table

    def take(self, custom_id: str, fingerprint: str) -> bool | None:
        """Remove the recorded result of this request: None if none, else whether it failed."""
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
                return _failed(mark)
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

    def ids(self) -> list[str]:
        return list(self._table)

    def count_of(self, custom_id: str) -> int:
        marks = self._table.get(custom_id)
        return len(marks) if isinstance(marks, list) else int(marks is not None)


def _failed(mark: _Mark) -> bool:
    return mark.endswith(_FAILED)


class OutputFile:
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
                opened, named = os.fstat(fd), os.stat(path)
                if (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise JobError(f"{path} keeps being replaced by another job")  # pragma: no cover

    def valid_end(self) -> int:
        """Where the last whole line ends (a crash may have left a torn one after it).

        Raises `JobError` when what follows the last newline is not the start of a result
        line: the file is not a job's output, and cutting it would destroy its data.
        """
        size = os.fstat(self._fd).st_size
        end = size
        valid = 0
        while end > 0:
            start = max(0, end - READ_CHUNK)
            chunk = os.pread(self._fd, end - start, start)
            if end == size and chunk.endswith(b"\n"):
                return size
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                valid = start + cut + 1
                break
            end = start
        tail = os.pread(self._fd, min(size - valid, 200), valid)
        if not _looks_like_result_start(tail):
            raise JobError(
                f"{self.path} is not a job's output (its last line is not a result line): "
                "write to a new output file"
            )
        return valid

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

    def scan(self, end: int) -> tuple[Recorded, int]:
        """The results recorded before ``end``, and the number of blank lines."""
        recorded = Recorded()
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
            if line.error is msgspec.UNSET or line.response is msgspec.UNSET:
                raise JobError(
                    f"{self.path}:{number}: not a result line (no 'response' and 'error'); "
                    "the file is not a job's output (an input file?): write to a new output file"
                )
            recorded.add(line.custom_id, line.request_fingerprint, line.error is not None)
        return recorded, blank

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self, end: int) -> None:
        os.ftruncate(self._fd, end)

    def compact(self, end: int) -> None:
        """Rewrite the file without its failed results and blank lines, atomically.

        The kept lines go to a new file that is fsynced and renamed over the old one, so a
        kill at any moment leaves either the old file or the new one, whole.
        """
        # A symlinked output is rewritten where it points (the link stays a link), and the
        # new file keeps the old one's permissions.
        real = Path(os.path.realpath(self.path))
        tmp = _compact_path(real)
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _lock(fd, tmp)  # before the rename, so the new file is ours from the start
            os.chmod(tmp, os.fstat(self._fd).st_mode & 0o7777)
            kept: list[bytes] = []
            size = 0
            for _, raw in self.lines(end):
                if raw.strip() and _done_decoder.decode(raw).error is None:
                    kept.append(raw)
                    size += len(raw)
                    if size >= READ_CHUNK:
                        _write_all(fd, b"".join(kept))
                        kept.clear()
                        size = 0
            _write_all(fd, b"".join(kept))
            os.fsync(fd)
            os.replace(tmp, real)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(real.parent)
        old, self._fd = self._fd, fd
        os.close(old)

    def remove_stale(self) -> None:
        """Delete a compaction file a killed run left behind (we hold the lock)."""
        with contextlib.suppress(OSError):
            os.unlink(_compact_path(Path(os.path.realpath(self.path))))

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


def _compact_path(real: Path) -> Path:
    return real.with_name(f".{real.name}.anyapi-compact")


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


def _error(message: str, type_: str, code: object = None) -> dict[str, Any]:
    return {"message": message, "type": type_, "code": code}


def _raw_body(completion: ChatCompletion) -> Any:
    body = kept_body(completion)
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
            "error": _error(error_line(error), error.type or type(error).__name__, error.code),
        }
    elif isinstance(error, APIError):
        record = {
            "custom_id": custom_id,
            "response": None,
            "error": _error(error_line(error), type(error).__name__),
        }
    else:
        record = {
            "custom_id": custom_id,
            "response": None,
            "error": _error(str(error), INVALID_TYPE, "invalid_request"),
        }
    record[FINGERPRINT_FIELD] = fingerprint
    return record


def count_lines(path: Path) -> int:
    """Lines in ``path``, a last line without its newline included (for progress totals)."""
    count = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            count += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        count += 1
    return count
