"""``RecordedRequest``: what the local server received, with secrets masked."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec
from multidict import CIMultiDict

__all__ = ["SECRET_HEADERS", "RecordedRequest", "masked"]

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

    ``headers`` look-ups ignore case (``headers["content-type"]``); ``json`` is the body
    decoded (on each access, so that 100,000 recorded requests stay small), or None when the
    body is empty or not JSON; ``request_id`` is the ``x-request-id`` the server answered.
    """

    __slots__ = ("body", "headers", "method", "path", "query", "request_id")

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: CIMultiDict[str],
        body: bytes,
        request_id: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.request_id = request_id

    @property
    def json(self) -> Any:
        """The body decoded as JSON, or None."""
        return _decode_or_none(self.body)

    def __repr__(self) -> str:
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"headers={dict(self.headers)!r}, body={self.body[:200]!r})"
        )


def _decode_or_none(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return None
