"""``RecordedRequest``: what the local server received, with secrets masked and big bodies cut."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec
from multidict import CIMultiDict

__all__ = ["SECRET_HEADERS", "RecordedRequest", "json_or_none", "masked"]

#: Header values never stored; an ``Authorization`` value keeps its scheme ("Bearer ***").
SECRET_HEADERS: Final = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})


def masked(headers: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """A copy of ``headers`` (names and order kept) with secret values replaced."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        if name.lower() in SECRET_HEADERS:
            scheme, _, rest = value.partition(" ")
            value = f"{scheme} ***" if rest else "***"
        out.add(name, value)
    return out


class RecordedRequest:
    """One request as the server received it; secrets in headers are masked.

    ``headers`` look-ups ignore case (``headers["content-type"]``); ``body`` holds at most
    the server's ``max_record_body`` first bytes (``size`` is the length received and
    ``truncated`` says whether bytes were dropped); ``json`` is the body decoded (on each
    access, so that many recorded requests stay small), or None when the body is empty,
    truncated or not JSON; ``request_id`` is the ``x-request-id`` the server answered.
    """

    __slots__ = ("body", "headers", "method", "path", "query", "request_id", "size")

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: CIMultiDict[str],
        body: bytes,
        request_id: str,
        *,
        size: int | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.request_id = request_id
        #: The body's length as received (``len(body)`` unless it was truncated).
        self.size = len(body) if size is None else size

    @property
    def truncated(self) -> bool:
        """Whether ``body`` holds only the start of what was received."""
        return self.size > len(self.body)

    @property
    def json(self) -> Any:
        """The body decoded as JSON, or None (also for a truncated body)."""
        return None if self.truncated else json_or_none(self.body)

    def __repr__(self) -> str:
        cut = f", truncated from {self.size} bytes" if self.truncated else ""
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"headers={dict(self.headers)!r}, body={self.body[:200]!r}{cut})"
        )


def json_or_none(body: bytes) -> Any:
    """``body`` decoded as JSON, or None when it is empty or not JSON."""
    try:
        return msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return None
