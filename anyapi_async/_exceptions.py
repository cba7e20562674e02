"""The public error tree: every exception class the package raises for you to catch.

```
APIError
├── APIConnectionError               transport failed, or a stream was cut short
│   └── APITimeoutError              a timeout fired (``.limit`` says which)
├── APIStatusError                   a non-2xx answer or an error object (.retry_after)
│   ├── BadRequestError 400          ├── AuthenticationError 401
│   ├── PaymentRequiredError 402     ├── PermissionDeniedError 403
│   ├── NotFoundError 404            ├── ConflictError 409
│   ├── UnprocessableEntityError 422 ├── RateLimitError 429
│   ├── InternalServerError >= 500
│   └── StreamError                  an error object with a 2xx status
├── APIResponseValidationError       a body that is not the expected JSON
│   └── ContentValidationError       a parse() reply that does not decode into its type
├── ResponseTooLargeError            a body larger than the configured limit
└── AllRoutesFailedError             every route of a Router failed (.errors)
RuntimeError
└── ToolRoundsExceededError          run_tools() still asked for tools after max_rounds
Exception
└── JobError                         a JSONL job cannot run or resume as asked
    ├── JobConflict                  its output file holds another job's results
    └── JobStopped                   it stopped early (endpoint down, disk full): rerun
```

Every message is built from server data and our own words only: the API key is never part
of an exception's message or args. (tests/unit/test_exceptions.py checks this drawing
against the exported classes.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._meta import parse_retry_after

if TYPE_CHECKING:
    from ._records import JobSummary, ToolCallResult
    from ._types import ChatCompletion

__all__ = [
    "APIConnectionError",
    "AllRoutesFailedError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentValidationError",
    "InternalServerError",
    "JobConflict",
    "JobError",
    "JobStopped",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "StreamError",
    "ToolRoundsExceededError",
    "UnprocessableEntityError",
]

#: Longest piece of a non-JSON body quoted in an exception message.
SNIPPET_LENGTH = 200
#: Longest line `error_line` gives.
MAX_MESSAGE_LENGTH = 300


class APIError(Exception):
    """Base class of every error this library raises for the API's or the network's sake."""

    message: str
    #: How many HTTP attempts the call made before giving up (set by the retry layer).
    attempts: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        if self.attempts is not None and self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class APIConnectionError(APIError):
    """The request could not be sent, or the response was cut before its end."""

    def __init__(self, message: str = "Connection error.") -> None:
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """A timeout limit fired; ``limit`` names it (connect, read, first_event, idle, total)."""

    def __init__(self, message: str = "Request timed out.", *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class APIStatusError(APIError):
    """The server answered with an error status or an error object."""

    status_code: int
    body: Any
    headers: Mapping[str, str]
    request_id: str | None
    code: str | int | None
    type: str | None
    param: str | None
    #: Seconds the server asked to wait (``retry-after-ms`` or ``Retry-After``), if it said.
    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.headers = headers if headers is not None else {}
        self.request_id = request_id
        self.retry_after = _retry_after(self.headers)
        err = body.get("error", body) if isinstance(body, dict) else None
        if not isinstance(err, dict):
            err = {}
        code = err.get("code")
        self.code = code if isinstance(code, (str, int)) else None
        self.type = err.get("type") if isinstance(err.get("type"), str) else None
        self.param = err.get("param") if isinstance(err.get("param"), str) else None
        metadata = err.get("metadata")
        self.metadata: Mapping[str, Any] | None = metadata if isinstance(metadata, dict) else None


class BadRequestError(APIStatusError):
    """400: the server rejected the request."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PaymentRequiredError(APIStatusError):
    """402: the account is out of credits (AnyAPI answers this when the balance runs out)."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or resource."""


class NotFoundError(APIStatusError):
    """404: no such model or route."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens; ``retry_after`` is the server's wait, if it said."""


class InternalServerError(APIStatusError):
    """>= 500: the gateway or an upstream provider failed."""


class StreamError(APIStatusError):
    """An error object arrived inside a stream or a 2xx body, without its own error status."""


class APIResponseValidationError(APIError):
    """The body was not the JSON this endpoint answers; ``body_snippet`` holds its start."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body_snippet = snippet(body) if body is not None else ""
        self.headers = headers if headers is not None else {}
        if self.body_snippet:
            message = f"{message}; body starts: {self.body_snippet!r}"
        super().__init__(message)


class ContentValidationError(APIResponseValidationError):
    """The model's reply does not decode into the requested type.

    ``content`` is the reply, ``choice_index`` and ``finish_reason`` its choice's, and
    ``completion`` the whole response (for its usage or ``http`` facts).
    """

    def __init__(
        self,
        message: str,
        *,
        content: str,
        choice_index: int,
        finish_reason: str | None,
        completion: ChatCompletion,
    ) -> None:
        info = completion.http
        super().__init__(
            message,
            status_code=info.status_code if info is not None else None,
            body=content.encode(),
            headers=info.headers if info is not None else None,
        )
        self.content = content
        self.choice_index = choice_index
        self.finish_reason = finish_reason
        self.completion = completion


class ResponseTooLargeError(APIError):
    """A response body or stream event exceeded the configured size limit."""


class AllRoutesFailedError(APIError):
    """Every route a `Router` tried failed.

    ``errors`` lists ``(route name, error)`` for every attempt, in the order tried; the
    last error is also the exception's ``__cause__``.
    """

    def __init__(self, message: str, errors: list[tuple[str, BaseException]]) -> None:
        super().__init__(message)
        self.errors = errors


class ToolRoundsExceededError(RuntimeError):
    """The model still asked for tools when the run had made ``max_rounds`` requests.

    ``completion`` is the last answer (its tool calls were not run), ``messages`` the
    conversation so far, ``tool_calls`` the calls that were run.
    """

    def __init__(
        self,
        message: str,
        *,
        completion: ChatCompletion,
        messages: list[dict[str, Any]],
        tool_calls: list[ToolCallResult],
    ) -> None:
        super().__init__(message)
        self.completion = completion
        self.messages = messages
        self.tool_calls = tool_calls


class JobError(Exception):
    """The job cannot run or resume as asked (files, locking, a corrupt output file)."""


class JobConflict(JobError):
    """The output file holds results of other requests: it belongs to another job."""


class JobStopped(JobError):
    """The job stopped early (the endpoint failed, or the output cannot be written).

    What was recorded is kept; running the same job again resumes it. ``summary`` counts
    what this run did before stopping, ``error`` is the error that stopped it.
    """

    def __init__(
        self,
        message: str,
        summary: JobSummary | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.summary = summary
        self.error = error


def _retry_after(headers: Mapping[str, str]) -> float | None:
    if not headers:
        return None
    return parse_retry_after(headers)


STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def snippet(body: bytes) -> str:
    """A short printable start of ``body`` for messages."""
    text = body[: SNIPPET_LENGTH * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:SNIPPET_LENGTH] + ("…" if len(text) > SNIPPET_LENGTH else "")


def error_message(body: Any, status_code: int | None) -> str:
    """The human message of an error body, falling back to the status."""
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        msg = err.get("message")
        if isinstance(msg, str) and msg:
            return msg
        detail = err.get("detail")
        if isinstance(detail, str) and detail:
            return detail
    elif isinstance(err, str) and err:
        return err
    return f"HTTP {status_code}" if status_code else "Error"


def make_status_error(
    status_code: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """The `APIStatusError` subclass for ``status_code``, carrying the decoded ``body``."""
    if status_code >= 500:
        cls: type[APIStatusError] = InternalServerError
    elif status_code < 400:
        cls = StreamError
    else:
        cls = STATUS_ERRORS.get(status_code, APIStatusError)
    prefix = f"Error code: {status_code}" if status_code >= 400 else "Error in response"
    message = f"{prefix} - {error_message(body, status_code)}"
    return cls(message, status_code=status_code, body=body, headers=headers, request_id=request_id)


def error_from_payload(
    payload: Mapping[str, Any],
    status_code: int,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """An error object received with a 2xx status (in a body or a stream event).

    The error's own numeric ``code`` picks the class when it looks like an HTTP status
    (AnyAPI and OpenRouter put the upstream status there), else it is a `StreamError`.
    """
    err = payload.get("error", payload)
    code = err.get("code") if isinstance(err, dict) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    effective = code if isinstance(code, int) and 400 <= code < 600 else status_code
    return make_status_error(effective, dict(payload), headers, request_id)


def is_error_object(obj: object) -> bool:
    """Whether a decoded answer is an error object, not a result: a dict (or a Struct with
    those fields) whose ``error`` is not null or whose ``object`` is ``"error"``. Package
    seam for the error checks off the per-chunk path (the chat fast path checks inline)."""
    if isinstance(obj, dict):
        return obj.get("error") is not None or obj.get("object") == "error"
    return getattr(obj, "error", None) is not None or getattr(obj, "object", None) == "error"


def error_kind(error: BaseException) -> str:
    """``"429 RateLimitError"`` (status and class) or the class name alone: for log lines."""
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    return f"{status} {name}" if status is not None else name


def error_line(exc: BaseException) -> str:
    """One bounded line for an error, as job results, the CLI and spans show it.

    An HTML error page becomes its status and title; the line is at most
    ``MAX_MESSAGE_LENGTH`` characters.
    """
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
