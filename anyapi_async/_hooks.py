"""Observability hooks: called once per attempt inside the retry loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._exceptions import APIError
    from ._types import CompletionUsage

__all__ = ["AttemptInfo", "Hooks"]


class AttemptInfo:
    """What a hook learns about an attempt; request headers (and so the key) are left out."""

    __slots__ = ("attempt", "method", "sent_at", "stream", "url")

    #: ``time.perf_counter()`` when the logging hook saw the attempt sent (unset otherwise).
    sent_at: float

    def __init__(self, method: str, url: str, attempt: int, stream: bool) -> None:
        self.method = method
        self.url = url
        self.attempt = attempt
        self.stream = stream

    def __repr__(self) -> str:
        return f"AttemptInfo({self.method} {self.url}, attempt={self.attempt})"


class Hooks:
    """Subclass and override what you need; pass instances as ``AsyncClient(hooks=[...])``.

    Every method is synchronous and should return quickly: they run on the request's own
    task. With no hooks configured the client skips all of this at no cost.

    Example:

    ```python
    class Metrics(Hooks):
        def on_retry(self, info, delay, error):
            RETRIES.labels(type(error).__name__).inc()

        def on_complete(self, info, usage):
            if usage:
                TOKENS.inc(usage.total_tokens)
    ```
    """

    def on_request(self, info: AttemptInfo) -> None:
        """An attempt is about to be sent."""

    def on_response(self, info: AttemptInfo, status: int, headers: Mapping[str, str]) -> None:
        """An attempt's response headers arrived."""

    def on_retry(self, info: AttemptInfo, delay: float, error: APIError) -> None:
        """An attempt failed and will be retried after ``delay`` seconds."""

    def on_error(self, info: AttemptInfo, error: APIError) -> None:
        """The call failed for good; ``error`` is about to be raised."""

    def on_complete(self, info: AttemptInfo, usage: CompletionUsage | None) -> None:
        """The call succeeded (for a stream: it ended normally)."""
