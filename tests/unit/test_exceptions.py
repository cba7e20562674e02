"""The error tree and status-code mapping."""

from __future__ import annotations

import builtins
import re

import pytest
from multidict import CIMultiDict

import anyapi_async as aa
from anyapi_async._exceptions import (
    error_from_payload,
    error_kind,
    is_error_object,
    make_status_error,
)

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


def _drawn_tree() -> dict[str, str | None]:
    """Each class drawn in `_exceptions`' docstring, mapped to the class drawn above it."""
    from anyapi_async import _exceptions

    doc = _exceptions.__doc__ or ""
    drawing = doc.split("```")[1]
    parents: dict[str, str | None] = {}
    stack: list[str] = []  # the last class seen at each depth
    for line in drawing.strip("\n").splitlines():
        entries = re.findall(r"[├└]── (\w+)", line)
        if not entries:
            stack = [line.split()[0]]  # a root
            parents[stack[0]] = None
            continue
        depth = (line.index(entries[0]) - 4) // 4 + 1  # "├── " is 4 characters wide
        del stack[depth:]
        for name in entries:  # a second column holds siblings of the first
            parents[name] = stack[depth - 1]
        stack.append(entries[0])
    return parents


def test_docstring_tree_matches_the_classes() -> None:
    """The tree drawn in _exceptions' docstring names every exported exception, under its base."""
    exported = {
        name
        for name in aa.__all__
        if isinstance(getattr(aa, name), type) and issubclass(getattr(aa, name), BaseException)
    }
    parents = _drawn_tree()
    assert {name for name in parents if hasattr(aa, name)} == exported
    assert [name for name in parents if parents[name] is None] == [
        "APIError",
        "RuntimeError",
        "Exception",
    ]
    for name, parent in parents.items():
        if parent is None:
            continue
        cls = getattr(aa, name)
        base = getattr(aa, parent, None) or getattr(builtins, parent)
        assert cls.__bases__ == (base,), f"{name} is drawn under {parent}"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3600"}, 3600.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_on_status_errors(headers: dict[str, str], expected: float | None) -> None:
    """Every status error carries the server's wait in seconds, when it said one."""
    exc = make_status_error(429, None, CIMultiDict(headers))
    assert isinstance(exc, aa.RateLimitError)
    assert exc.retry_after == expected
    assert make_status_error(503, None, CIMultiDict(headers)).retry_after == expected


def test_is_error_object_and_error_kind() -> None:
    """The one error-object check and the one log description the package uses."""
    assert is_error_object({"error": {"message": "x"}})
    assert is_error_object({"object": "error", "message": "x"})
    assert not is_error_object({"error": None, "object": "chat.completion"})
    assert not is_error_object([{"error": "x"}])
    assert error_kind(aa.RateLimitError("x", status_code=429, body=None)) == (
        "429 RateLimitError"
    )
    assert error_kind(aa.APIConnectionError("x")) == "APIConnectionError"
