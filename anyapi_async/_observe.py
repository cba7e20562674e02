"""The one observation seam: a call's context, and the observer that hears every level of it.

```text
Observer (a Hooks with three more levels; every method optional)
├── call(context, send)             around a whole call: every attempt and wait
├── on_request / on_response / on_retry / on_error / on_complete      each attempt (Hooks)
├── stream_opened(context, stream)  a stream was handed to the caller (attach a watcher)
└── batch_item(run, index, item)    around one batch or job item: limiter waits, 429s
```

`Hooks` (what ``AsyncClient(hooks=[...])`` takes), the ``ANYAPI_LOG`` logger and
OpenTelemetry (`anyapi_async.otel`) are all observers of the client's request pipeline;
`Pipeline.add_observer` is where they plug in. A `CallContext` travels with each call: what
was asked (operation, model, the parameters as given, stream or not) and, as the call goes
on, which attempt it is on. With no observer configured, the pipeline builds none of this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._exceptions import APIError
    from ._meta import ResponseInfo
    from ._types import CompletionUsage

__all__ = ["AttemptInfo", "CallContext", "Hooks", "Observer", "overrides"]

T = TypeVar("T")


class AttemptInfo:
    """What a hook learns about an attempt; request headers (and so the key) are left out."""

    __slots__ = ("attempt", "call", "method", "sent_at", "stream", "url")

    #: ``time.perf_counter()`` when the logging hook saw the attempt sent (unset otherwise).
    sent_at: float

    def __init__(self, method: str, url: str, attempt: int, stream: bool) -> None:
        self.method = method
        self.url = url
        self.attempt = attempt
        self.stream = stream
        #: The call's `CallContext` (operation, model, parameters), when the pipeline has one.
        self.call: CallContext | None = None

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


class CallContext:
    """What one call asked for, as its caller gave it (shared by all its attempts).

    ``operation`` is ``"chat"`` for chat completions (however they are made: ``create``,
    ``stream``, raw forms, ``post("/chat/completions")``), ``"models"`` for the models
    endpoints and ``"request"`` for other ``post``/``get`` paths. ``params`` holds the
    request's parameters as given (``model``, ``messages``, ``max_tokens``...; ``None`` for
    a body given as bytes). ``attempt`` counts the attempts made so far (0 for a cache hit);
    ``route`` names the route a router sent the call to; ``cache`` says what the client's
    response cache did with the call.
    """

    __slots__ = (
        "__weakref__",
        "attempt",
        "base_url",
        "cache",
        "error",
        "method",
        "model",
        "operation",
        "params",
        "path",
        "response",
        "result",
        "route",
        "stream",
    )

    def __init__(
        self,
        operation: str,
        *,
        method: str = "POST",
        path: str = "",
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
        route: str | None = None,
    ) -> None:
        self.operation = operation
        self.method = method
        self.path = path
        self.model = model
        self.params = params
        self.stream = stream
        self.route = route
        #: The pipeline's base URL (set when the call is sent).
        self.base_url = ""
        self.attempt = 0
        #: The `ResponseInfo` of the answer, once its headers are in.
        self.response: ResponseInfo | None = None
        #: For a response read later (``with_streaming_response``): what ``parse()`` gave,
        #: or the error it raised.
        self.result: Any = None
        self.error: BaseException | None = None
        #: With a client cache: ``"hit"`` (served from it, nothing sent), ``"miss"``,
        #: ``"refresh"`` or ``"bypass"`` (``cache=False``, or not cacheable); else ``None``.
        self.cache: str | None = None

    def __repr__(self) -> str:
        return (
            f"CallContext({self.operation!r}, {self.method} {self.path}, model={self.model!r}, "
            f"stream={self.stream}, attempt={self.attempt})"
        )


class Observer(Hooks):
    """Hears calls, their attempts, their streams and batch items; override what you need.

    Every method has a default that does nothing, and the pipeline skips the levels an
    observer does not override, so an observer costs only what it asks for. ``call`` and
    ``batch_item`` wrap: they must await what they are given and return its result (or
    let its exception through).
    """

    #: Ask the chat body builder to request a final usage chunk in streams
    #: (``stream_options.include_usage``) when the caller did not set ``stream_options``.
    #: Off by default: it changes the bytes sent.
    stream_usage: bool = False

    async def call(self, context: CallContext, send: Callable[[], Awaitable[T]]) -> T:
        """Around one call: ``return await send()``; the result is a stream for streams."""
        return await send()

    def stream_opened(self, context: CallContext, stream: Any) -> None:
        """A chat stream of this call (an `AsyncStream` of chunks) is about to reach the
        caller: its first event is in."""

    async def batch_item(self, run: Awaitable[T], index: int, item: Mapping[str, Any]) -> T:
        """Around one batch (or job) item's whole run: ``return await run``."""
        return await run


def overrides(observer: object, name: str) -> bool:
    """Whether ``observer`` has its own ``name`` (a level it wants to hear)."""
    method = getattr(type(observer), name, None)
    return method is not None and method is not getattr(Observer, name, None)
