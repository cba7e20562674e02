"""The error tree and status-code mapping."""

from __future__ import annotations

import pytest

import anyapi_async as aa
from anyapi_async._exceptions import error_from_payload, make_status_error

from ..conftest import STATUS_CLASSES


@pytest.mark.parametrize(
    ("status", "cls"),
    [*STATUS_CLASSES, (599, aa.InternalServerError), (418, aa.APIStatusError)],
)
def test_status_table(status: int, cls: type[aa.APIStatusError]) -> None:
    """Each status maps to its class, >= 500 to InternalServerError."""
    exc = make_status_error(status, {"error": {"message": "boom", "code": "x"}})
    assert type(exc) is cls
    assert exc.status_code == status
    assert "boom" in str(exc)


def test_hierarchy() -> None:
    """The tree in API.md holds."""
    assert issubclass(aa.APITimeoutError, aa.APIConnectionError)
    assert issubclass(aa.APIConnectionError, aa.APIError)
    assert issubclass(aa.APIStatusError, aa.APIError)
    assert issubclass(aa.APIResponseValidationError, aa.APIError)
    assert aa.RateLimitError.__module__ == "anyapi_async"


def test_error_fields_from_body() -> None:
    """message, type, code (int or str), param and metadata are lifted from the body."""
    body = {
        "error": {
            "message": "Insufficient credits",
            "type": "billing",
            "code": 402,
            "param": None,
            "metadata": {"provider": "x"},
        }
    }
    exc = make_status_error(402, body, {"x-request-id": "req_1"}, "req_1")
    assert (exc.code, exc.type, exc.request_id) == (402, "billing", "req_1")
    assert exc.metadata == {"provider": "x"}
    assert exc.body == body


def test_error_payload_with_status_200_uses_numeric_code() -> None:
    """An error object sent with 200 takes its class from a numeric code."""
    exc = error_from_payload({"error": {"message": "upstream", "code": 502}}, 200)
    assert isinstance(exc, aa.InternalServerError)
    exc2 = error_from_payload({"error": {"message": "bad", "code": "server_error"}}, 200)
    assert isinstance(exc2, aa.StreamError)
    assert exc2.code == "server_error"


def test_attempts_in_message() -> None:
    """The final exception says how many attempts were made."""
    exc = make_status_error(503, None)
    exc.attempts = 3
    assert "after 3 attempts" in str(exc)


def test_validation_error_snippet_is_short() -> None:
    """A non-JSON body is quoted by a short, single-line snippet."""
    exc = aa.APIResponseValidationError("bad", status_code=502, body=b"<html>\n" + b"x" * 5000)
    assert len(exc.body_snippet) < 300
    assert "\n" not in exc.body_snippet
