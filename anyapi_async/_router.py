"""Failover across routes: `Router`, `Route`, `CircuitBreaker`, `Hedge`.

```text
router.chat.completions  (the client's own `Completions`, built over a RouterPipeline)
   │  send() / send_raw() / stream() / open()
   ▼
RouterPipeline ── observers' call() once ── the route loop:
   │   pick the next route that is neither open (breaker), cooling (Retry-After) nor
   │   already tried; swap its model into the body; one attempt through its client's
   │   pipeline with retries off; classify a failure (next route / raise / cool / open)
   ▼
route.client.pipeline (one attempt, observed=True: the call level was heard once above)
```

The router is the only retry loop: a failing route costs one attempt. Which failure does
what is `classify` (docs/failover.md has the table). Breaker state is per process, kept in
plain attributes changed only between awaits, so it is safe under asyncio concurrency.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

import msgspec

from ._exceptions import (
    AllRoutesFailedError,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    RateLimitError,
    ResponseTooLargeError,
    error_line,
)
from ._observe import CallContext
from ._pipeline import Pipeline, call_context, observe_call
from ._resources import Completions
from ._retry import RetryPolicy
from ._streaming import AsyncStream, StreamObserver
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionCreateParams,
    keep_response,
    kept_body,
)
from ._waits import sleep

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._chat_stream import ChatCompletionStreamManager
    from ._messages import MessageInput
    from ._observe import Hooks, Observer
    from ._response import APIResponse, StreamedAPIResponse

__all__ = [
    "CONTINUE_INSTRUCTION",
    "CircuitBreaker",
    "ContinuingStream",
    "Hedge",
    "Route",
    "RouteHealth",
    "Router",
    "classify",
]

T = TypeVar("T")
logger = logging.getLogger("anyapi_async")

#: What a failed attempt means for the call: try the next route, raise at once, try only
#: routes marked ``on_context_length``, or open this route's breaker and go on.
Verdict = Literal["next", "raise", "context", "auth"]
State = Literal["closed", "open", "half_open"]

_MODEL_PREFIX: Final = b'{"model":"'
_CONTEXT_WORDS: Final = (
    "context length", "context_length", "maximum context", "context window",
    "too many tokens", "prompt is too long",
)
#: Recent errors and latencies kept per route (for health() and "pNN" hedging).
_RECENT_ERRORS: Final = 5
_LATENCIES: Final = 200
#: The user message that follows the partial reply when a cut stream is continued on a
#: route without assistant prefill (docs/failover.md).
CONTINUE_INSTRUCTION: Final = (
    "Continue exactly where your previous message stopped, without repeating it."
)


def classify(exc: BaseException) -> Verdict:
    """What a route's failure means for the call (see docs/failover.md)."""
    if isinstance(exc, APIStatusError):
        status = exc.status_code
        if status == 400:
            return "context" if _is_context_length(exc) else "raise"
        if status in (401, 402, 403):
            return "auth"
        if status == 404:
            return "next" if _is_model_not_found(exc) else "raise"
        if status in (408, 409, 429) or status >= 500 or status < 400:
            # < 400: an error object inside a 2xx answer (an upstream failure).
            return "next"
        return "raise"  # 422 and the other 4xx would fail anywhere
    if isinstance(exc, APIConnectionError):  # timeouts included
        return "next"
    if isinstance(exc, ResponseTooLargeError):
        return "raise"
    if isinstance(exc, APIResponseValidationError):
        return "next"  # a gateway answering garbage: another may not
    return "raise"


def _is_context_length(exc: APIStatusError) -> bool:
    if exc.code == "context_length_exceeded":
        return True
    message = exc.message.lower()
    return any(word in message for word in _CONTEXT_WORDS)


def _is_model_not_found(exc: APIStatusError) -> bool:
    if exc.code == "model_not_found" or exc.type == "model_not_found":
        return True
    message = exc.message.lower()
    return "model" in message and ("not found" in message or "does not exist" in message)


class CircuitBreaker:
    """When a route stops getting traffic, and how it gets it back (one per route).

    Opens after ``failures`` consecutive failures, or when at least ``min_calls`` calls in
    the last ``window`` seconds failed at a rate of ``failure_rate`` or more (off unless
    given). An open route gets no traffic for ``cooldown`` seconds; then one probe goes
    through (half-open): success closes the breaker, failure opens it again.
    """

    __slots__ = ("cooldown", "failure_rate", "failures", "min_calls", "window")

    def __init__(
        self,
        failures: int = 5,
        cooldown: float = 30.0,
        *,
        failure_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 20,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError(f"failures must be an int >= 1, got {failures!r}")
        if not cooldown >= 0:
            raise ValueError(f"cooldown must be >= 0, got {cooldown!r}")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate!r}")
        if not window > 0:
            raise ValueError(f"window must be > 0, got {window!r}")
        if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
            raise ValueError(f"min_calls must be an int >= 1, got {min_calls!r}")
        self.failures = failures
        self.cooldown = float(cooldown)
        self.failure_rate = failure_rate
        self.window = float(window)
        self.min_calls = min_calls

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self.failures}, cooldown={self.cooldown})"


class Hedge:
    """Hedged requests: when a call has no answer after ``after`` seconds, the same request
    starts on the next healthy route and the first success wins.

    ``after`` is seconds, or a latency quantile of the route such as ``"p95"`` (``initial``
    seconds until the route has ``min_samples`` latencies). Hedges never exceed
    ``max_extra`` of the calls: each call earns ``max_extra`` of a hedge, up to a reserve of
    ``burst`` hedges.
    """

    __slots__ = ("after", "burst", "initial", "max_extra", "min_samples", "quantile")

    def __init__(
        self,
        after: float | str = 1.0,
        max_extra: float = 0.1,
        *,
        initial: float = 1.0,
        min_samples: int = 20,
        burst: float = 10.0,
    ) -> None:
        self.quantile: float | None = None
        if isinstance(after, str):
            if not (after.startswith("p") and after[1:].replace(".", "", 1).isdigit()):
                raise ValueError(f"after must be seconds or a quantile like 'p95', got {after!r}")
            q = float(after[1:]) / 100
            if not 0 < q < 1:
                raise ValueError(f"after's quantile must be between p0 and p100, got {after!r}")
            self.quantile = q
        elif isinstance(after, bool) or not isinstance(after, (int, float)) or not after > 0:
            raise ValueError(f"after must be seconds > 0 or a quantile like 'p95', got {after!r}")
        if isinstance(max_extra, bool) or not 0 < max_extra <= 1:
            raise ValueError(f"max_extra must be in (0, 1], got {max_extra!r}")
        if not initial > 0:
            raise ValueError(f"initial must be > 0, got {initial!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.after = after
        self.max_extra = float(max_extra)
        self.initial = float(initial)
        self.min_samples = min_samples
        self.burst = float(burst)

    def __repr__(self) -> str:
        return f"Hedge(after={self.after!r}, max_extra={self.max_extra})"


class Route:
    """One way to answer: a client (its base URL and key), optionally a model to use.

    ``model``, when set, replaces the caller's model. ``on_context_length``: a
    context-length 400 on an earlier route moves on to this one (a model with a longer
    context). ``prefill``: the route's API takes ``{"role": "assistant", "prefix": true}``
    to continue a reply (used when a cut stream is continued on it). The router does not close
    clients. A route's breaker state lives on the `Route`: give each `Router` its own.
    """

    __slots__ = (
        "_quantile",
        "_quantile_at",
        "calls",
        "client",
        "consecutive",
        "cooling_until",
        "errors",
        "failures",
        "half_open",
        "latencies",
        "model",
        "model_prefix",
        "name",
        "on_context_length",
        "opened_at",
        "outcomes",
        "pipeline",
        "prefill",
        "probing",
        "source",
    )

    def __init__(
        self,
        client: Any,
        model: str | None = None,
        name: str | None = None,
        *,
        on_context_length: bool = False,
        prefill: bool = False,
    ) -> None:
        pipeline = client if isinstance(client, Pipeline) else getattr(client, "pipeline", None)
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"Route needs an AsyncClient, not {type(client).__name__}")
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"model must be a non-empty str or None, got {model!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty str or None, got {name!r}")
        self.client = client
        #: The client's own pipeline (to see it closed) and the copy the router sends
        #: through: same pool, observers and settings, retries off (one attempt per call,
        #: without a per-call options dict or policy copy).
        self.source = pipeline
        self.pipeline = pipeline.copy()
        self.pipeline.retry_policy = pipeline.retry_policy.with_max_retries(0)
        self.model = model
        self.name = name or ""
        self.on_context_length = on_context_length
        self.prefill = prefill
        #: The body's start for this route's model (``{"model":"m"``), swapped in by bytes.
        self.model_prefix = (
            b'{"model":' + msgspec.json.encode(model) if model is not None else b""
        )
        # Breaker and health state (per process; changed between awaits only).
        self.consecutive = 0
        self.opened_at: float | None = None
        self.half_open = False
        self.probing = False
        self.cooling_until = 0.0
        self.calls = 0
        self.failures = 0
        self.errors: deque[str] = deque(maxlen=_RECENT_ERRORS)
        self.latencies: deque[float] = deque(maxlen=_LATENCIES)
        self.outcomes: deque[tuple[float, bool]] = deque()
        self._quantile: float | None = None
        self._quantile_at = 0

    def __repr__(self) -> str:
        url = self.pipeline.base_url
        return f"Route(name={self.name!r}, model={self.model!r}, base_url={url!r})"

    def quantile(self, q: float) -> float | None:
        """The route's ``q`` latency quantile over its recent successes (cached)."""
        n = len(self.latencies)
        if n == 0:
            return None
        # Sorted again every 10 calls (the window slides once it is full).
        if self._quantile is None or self.calls - self._quantile_at >= 10 or n < 10:
            ordered = sorted(self.latencies)
            self._quantile = ordered[min(n - 1, math.ceil(q * n) - 1)]
            self._quantile_at = self.calls
        return self._quantile


class RouteHealth(msgspec.Struct, frozen=True):
    """One route's state as ``router.health()`` reports it.

    ``state`` is ``"closed"``, ``"open"`` or ``"half_open"``; ``cooling`` the seconds left
    of a server's Retry-After; ``errors`` the last few errors (one line each); ``latency``
    the median of recent successes (seconds, ``None`` before any).
    """

    state: State
    cooling: float
    consecutive_failures: int
    calls: int
    failures: int
    errors: list[str]
    latency: float | None


class RouterShared:
    """What `Completions` reads of a pipeline's observers, gathered from the route clients
    each time (a client may be instrumented after the router was made)."""

    __slots__ = ("_pipelines",)

    def __init__(self, pipelines: Sequence[Pipeline]) -> None:
        unique: dict[int, Pipeline] = {}
        for p in pipelines:
            unique.setdefault(id(p.shared), p)
        self._pipelines = tuple(unique.values())

    def _gather(self, level: str) -> tuple[Any, ...]:
        out: list[Any] = []
        for p in self._pipelines:
            for o in getattr(p.shared, level):
                if o not in out:
                    out.append(o)
        return tuple(out)

    # Read on every call (by `Completions` and the router pipeline): with no observer
    # anywhere each is one pass over the routes' pipelines, without allocating.

    @property
    def observers(self) -> tuple[Hooks, ...]:
        for p in self._pipelines:
            if p.shared.observers:
                return self._gather("observers")
        return ()

    @property
    def callers(self) -> tuple[Observer, ...]:
        """The call-level observers, one of each kind: instrumenting every route's client
        gives one span per routed call, not one per client."""
        for p in self._pipelines:
            if p.shared.callers:
                break
        else:
            return ()
        kinds: dict[type, Observer] = {}
        for caller in self._gather("callers"):
            kinds.setdefault(type(caller), caller)
        return tuple(kinds.values())

    @property
    def batch_observers(self) -> tuple[Observer, ...]:
        return self._gather("batch_observers")

    @property
    def stream_usage(self) -> bool:
        for p in self._pipelines:  # noqa: SIM110 (a loop: no generator per call)
            if p.shared.stream_usage:
                return True
        return False


def _swap_model(body: bytes, route: Route) -> bytes:
    """``body`` with the route's model in place of the caller's.

    The chat body builder writes ``model`` first, so the swap is a byte splice; any other
    body is decoded and encoded again.
    """
    if body.startswith(_MODEL_PREFIX):
        end = body.find(b'"', 10)
        while end > 0 and body[end - 1] == 0x5C:  # an escaped quote inside the model id
            end = body.find(b'"', end + 1)
        if end > 0:
            return route.model_prefix + body[end + 1 :]
    payload = msgspec.json.decode(body)
    payload["model"] = route.model
    return msgspec.json.encode(payload)


class RouterPipeline:
    """The four pipeline operations over a router's routes (what `Completions` is built over)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.shared = RouterShared([r.pipeline for r in router.routes])
        # The first route's client's own settings (its policy with its retries: the number
        # of waits when every route is cooling, and a batch's 429 budget).
        first = router.routes[0].source
        self.base_url = first.base_url
        self.timeout = first.timeout
        self.retry_policy = first.retry_policy

    @property
    def pipeline(self) -> RouterPipeline:
        """Itself: the raw-response resources take a client or a pipeline."""
        return self

    @property
    def observers(self) -> tuple[Hooks, ...]:
        return self.shared.observers

    @property
    def batch_observers(self) -> tuple[Observer, ...]:
        return self.shared.batch_observers

    @property
    def stream_usage(self) -> bool:
        return self.shared.stream_usage

    def context(
        self, method: str, path: str, body: object, stream: bool, operation: str = ""
    ) -> CallContext:
        """A `CallContext` for a call made by path."""
        return call_context(method, path, body, stream, operation)

    async def _observed(self, context: CallContext, send: Callable[[], Awaitable[T]]) -> T:
        return await observe_call(self.shared.callers, self.base_url, context, send)

    async def send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> Any:
        """`Pipeline.send` over the routes."""
        if not observed and self.shared.callers:
            if context is None:
                context = self.context(method, path, None, False)
            return await self._observed(
                context,
                lambda: self.send(method, path, body, options, cast_to, context, observed=True),
            )
        router = self.router
        if router.hedge is not None:
            return await router.hedged(
                lambda p, b, o, c: p.send(method, path, b, o, cast_to, c, observed=True),
                body, options, context,
            )
        return await router.route_call(
            lambda p, b, o, c: p.send(method, path, b, o, cast_to, c, observed=True),
            body, options, context,
        )

    async def send_raw(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> APIResponse[Any]:
        """`Pipeline.send_raw` over the routes."""
        if not observed and self.shared.callers:
            if context is None:
                context = self.context(method, path, None, False)
            return await self._observed(
                context,
                lambda: self.send_raw(method, path, body, options, cast_to, context, observed=True),
            )
        result: APIResponse[Any] = await self.router.route_call(
            lambda p, b, o, c: p.send_raw(method, path, b, o, cast_to, c, observed=True),
            body, options, context,
        )
        return result

    async def stream(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any = None,
        context: CallContext | None = None,
        *,
        observed: bool = False,
    ) -> AsyncStream[Any]:
        """`Pipeline.stream` over the routes: a failure before the first event moves on."""
        from ._types import ChatCompletionChunk

        if cast_to is None:
            cast_to = ChatCompletionChunk
        if not observed and self.shared.callers:
            if context is None:
                context = self.context(method, path, None, True)
            return await self._observed(
                context,
                lambda: self.stream(method, path, body, options, cast_to, context, observed=True),
            )
        router = self.router

        def attempt(
            p: Pipeline, b: bytes | None, o: Mapping[str, Any] | None, c: CallContext | None
        ) -> Coroutine[Any, Any, Any]:
            return p.stream(method, path, b, o, cast_to, c, observed=True)

        if router.continue_streams and cast_to is ChatCompletionChunk:
            # Which route opened the stream (several attempts may run when hedging).
            origin: dict[int, Route] = {}

            async def attempt_noting(
                p: Pipeline, b: bytes | None, o: Mapping[str, Any] | None, c: CallContext | None
            ) -> Any:
                opened = await p.stream(method, path, b, o, cast_to, c, observed=True)
                origin[id(opened)] = router.route_of(p)
                return opened

            attempt = attempt_noting
        if router.hedge is not None:
            opened: AsyncStream[Any] = await router.hedged(attempt, body, options, context)
        else:
            opened = await router.route_call(attempt, body, options, context)
        if router.continue_streams and cast_to is ChatCompletionChunk:
            return ContinuingStream(
                router, opened, origin[id(opened)], method, path, body, options, context
            )
        return opened

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        cast_to: Any,
        *,
        stream: bool,
        context: CallContext | None = None,
        observed: bool = False,
    ) -> tuple[StreamedAPIResponse[Any], Callable[[], None]]:
        """`Pipeline.open` over the routes (failover up to the response headers)."""
        if not observed and self.shared.callers:
            if context is None:
                context = self.context(method, path, None, stream)
            return await self._observed(
                context,
                lambda: self.open(
                    method, path, body, options, cast_to,
                    stream=stream, context=context, observed=True,
                ),
            )
        result: tuple[StreamedAPIResponse[Any], Callable[[], None]] = await self.router.route_call(
            lambda p, b, o, c: p.open(
                method, path, b, o, cast_to, stream=stream, context=c, observed=True
            ),
            body, options, context,
        )
        return result


#: One attempt of a call on a route's pipeline: (pipeline, body, options, context).
Attempt = Callable[
    [Pipeline, "bytes | None", "Mapping[str, Any] | None", "CallContext | None"],
    Coroutine[Any, Any, Any],
]


class Router:
    """Failover across routes with the surface of a client's completions.

    ```python
    router = Router([Route(primary, model="gpt-5", name="primary"),
                     Route(backup, model="gpt-5", name="backup")],
                    breaker=CircuitBreaker(failures=5, cooldown=30.0))
    c = await router.chat.completions.create(model="gpt-5", messages=msgs)
    ```

    Routes are tried in order; each attempt goes out with the client's retries off (the
    router is the only retry loop). See docs/failover.md for which error does what, the
    breaker, Retry-After cool-downs, ``hedge`` and ``continue_streams`` (a text stream cut
    after content goes on on the next route: the caller reads one whole stream, whose
    ``continued`` counts the continuations; ``continue_instruction`` is the user message
    sent after the partial reply to routes without ``prefill``). The router does not own
    its clients: close them yourself.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        breaker: CircuitBreaker | None = None,
        hedge: Hedge | None = None,
        continue_streams: bool = False,
    ) -> None:
        routes = list(routes)
        if not routes:
            raise ValueError("Router needs at least one Route")
        names: set[str] = set()
        for i, route in enumerate(routes):
            if not isinstance(route, Route):
                raise TypeError(f"routes[{i}] must be a Route, not {type(route).__name__}")
            if not route.name:
                route.name = f"route-{i}"
            if route.name in names:
                raise ValueError(f"route names must be unique: {route.name!r} appears twice")
            if any(route is r for r in routes[:i]):
                raise ValueError(f"routes[{i}] is given twice: make one Route per position")
            names.add(route.name)
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker, not {type(breaker).__name__}")
        if hedge is not None and not isinstance(hedge, Hedge):
            raise TypeError(f"hedge must be a Hedge, not {type(hedge).__name__}")
        self.routes: tuple[Route, ...] = tuple(routes)
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.hedge = hedge
        #: Continue a text stream cut after content on the next route (docs/failover.md).
        self.continue_streams = bool(continue_streams)
        #: The user message sent after the partial reply to a route without ``prefill``.
        self.continue_instruction: str = CONTINUE_INSTRUCTION
        #: Hedges earned (``max_extra`` per call) and not yet spent.
        self.hedge_tokens = 0.0
        #: Hedged attempts started so far (for the benchmark and tests).
        self.hedges = 0
        self.pipeline = RouterPipeline(self)
        #: ``router.chat.completions``: the client's `Completions` over the router's
        #: pipeline, ``model`` optional when every route sets one.
        self.chat = RouterChat(self)

    def __repr__(self) -> str:
        return f"Router({[r.name for r in self.routes]!r})"

    def route_of(self, pipeline: Pipeline) -> Route:
        """The route whose attempts go through ``pipeline``."""
        for route in self.routes:
            if route.pipeline is pipeline:
                return route
        raise LookupError("no route sends through this pipeline")  # pragma: no cover

    # --- what a batch run needs of its client (BatchClient) -----------------------------------

    @property
    def retry_policy(self) -> RetryPolicy:
        """The first route's client's policy (the batch's 429 budget reads it)."""
        return self.pipeline.retry_policy

    def with_options(self, **options: Any) -> Router:
        """The router itself: it is the only retry loop (``max_retries``, ``retry_policy``
        change nothing), and the routes' clients carry the other settings."""
        return self

    async def post(
        self, path: str, *, cast_to: type[T], body: object = None, timeout: Any = None
    ) -> T:
        """``POST`` a body to ``path`` on the routes (what the JSONL job runner sends):
        ``body`` a dict, Struct or bytes; a route's ``model`` replaces the body's."""
        from ._client import check_path, encode_body
        from ._pipeline import item_decoder

        content = encode_body(body)
        path = check_path(path)
        item_decoder(cast_to)  # an unusable cast_to fails here, before any I/O
        pipeline = self.pipeline
        context = pipeline.context("POST", path, body, False) if pipeline.observers else None
        options = None if timeout is None else {"timeout": timeout}
        result: T = await pipeline.send("POST", path, content, options, cast_to, context)
        return result

    # --- health ---------------------------------------------------------------------------------

    def health(self) -> dict[str, RouteHealth]:
        """Each route's breaker state, cool-down, recent errors and median latency."""
        now = _now()
        out: dict[str, RouteHealth] = {}
        for route in self.routes:
            latency = None
            if route.latencies:
                ordered = sorted(route.latencies)
                latency = ordered[len(ordered) // 2]
            out[route.name] = RouteHealth(
                state=self._state(route, now),
                cooling=max(0.0, route.cooling_until - now),
                consecutive_failures=route.consecutive,
                calls=route.calls,
                failures=route.failures,
                errors=list(route.errors),
                latency=latency,
            )
        return out

    def _state(self, route: Route, now: float) -> State:
        if route.opened_at is None:
            return "closed"
        if route.half_open or now >= route.opened_at + self.breaker.cooldown:
            return "half_open"
        return "open"

    # --- breaker bookkeeping ------------------------------------------------------------------

    def _available(self, route: Route, now: float) -> bool:
        if route.cooling_until > now:
            return False
        if route.opened_at is None:
            return True
        if route.probing:  # half-open: its one probe is out
            return False
        return now >= route.opened_at + self.breaker.cooldown

    def _start(self, route: Route) -> None:
        if route.opened_at is not None:
            route.half_open = True
            route.probing = True

    def succeeded(self, route: Route, latency: float) -> None:
        route.calls += 1
        route.consecutive = 0
        route.latencies.append(latency)
        if route.opened_at is not None:
            logger.info("Route %r is healthy again: its breaker is closed", route.name)
            route.opened_at = None
            route.half_open = route.probing = False
        if self.breaker.failure_rate is not None:
            self._outcome(route, True)

    def failed(self, route: Route, exc: BaseException, verdict: Verdict) -> None:
        now = _now()
        route.calls += 1
        route.errors.append(f"{type(exc).__name__}: {error_line(exc)}")
        after = exc.retry_after if isinstance(exc, APIStatusError) else None
        if after is not None and after > 0:
            # The server said when to come back: cool the route instead of counting it.
            route.cooling_until = now + after
        if route.probing:
            route.probing = False
            route.half_open = False
            route.opened_at = now  # the probe failed: open again
        if verdict == "raise" or verdict == "context":
            return  # the request's fault, not the route's
        if isinstance(exc, RateLimitError):
            return  # busy, not broken
        route.failures += 1
        route.consecutive += 1
        if verdict == "auth":
            logger.warning(
                "Route %r refused the key (%s): its breaker is open for %.0fs",
                route.name, type(exc).__name__, self.breaker.cooldown,
            )
            route.opened_at = now
            return
        rate_open = self.breaker.failure_rate is not None and self._outcome(route, False)
        if route.opened_at is None and (route.consecutive >= self.breaker.failures or rate_open):
            logger.warning(
                "Route %r failed %d times in a row: its breaker is open for %.0fs",
                route.name, route.consecutive, self.breaker.cooldown,
            )
            route.opened_at = now

    def _outcome(self, route: Route, ok: bool) -> bool:
        """Record an outcome in the rate window; whether the failure rate is over."""
        breaker = self.breaker
        now = _now()
        outcomes = route.outcomes
        outcomes.append((now, ok))
        while outcomes and outcomes[0][0] < now - breaker.window:
            outcomes.popleft()
        if len(outcomes) < breaker.min_calls:
            return False
        failed = sum(1 for _, good in outcomes if not good)
        return failed / len(outcomes) >= breaker.failure_rate  # type: ignore[operator]

    # --- the route loop -----------------------------------------------------------------------

    def pick(self, tried: Sequence[Route], context_only: bool, now: float) -> Route | None:
        """The next route to try: in order, not tried, not open, not cooling."""
        for route in self.routes:
            if route in tried or (context_only and not route.on_context_length):
                continue
            if self._available(route, now):
                return route
        return None

    def prepare(
        self, route: Route, body: bytes | None, options: Mapping[str, Any] | None,
        context: CallContext | None,
    ) -> tuple[bytes | None, Mapping[str, Any] | None]:
        """The body and options of one attempt on ``route``; tell observers the route."""
        if context is not None:
            context.route = route.name
            context.base_url = route.pipeline.base_url
        if route.model is not None and body is not None:
            body = _swap_model(body, route)
        if route.source.closed:
            raise RuntimeError(f"Route {route.name!r}: its client has been closed")
        if options and "max_retries" in options:
            options = {**options, "max_retries": 0}
        return body, options

    def exhausted(
        self,
        errors: list[tuple[str, BaseException]],
        tried: list[Route],
        waits: int,
        deadline: float | None,
    ) -> float:
        """No route is left to try: the wait before trying the cooling ones again, or raise
        (also after the first route's client's ``max_retries`` such waits)."""
        now = _now()
        # This round's failures (none when no route could be tried at all).
        recent = errors[-len(tried):] if tried else []
        if recent and not all(
            isinstance(e, APIStatusError) and e.retry_after for _, e in recent
        ):
            raise _all_failed(errors) from errors[-1][1]
        cooling = [r.cooling_until - now for r in self.routes if r.cooling_until > now]
        if cooling:
            wait = min(cooling)
        elif recent:
            wait = 0.0  # the cool-downs they asked for are already over
        elif errors:
            raise _all_failed(errors) from errors[-1][1]
        else:
            raise AllRoutesFailedError(
                "No route can take the call: every route's breaker is open", []
            )
        policy = self.retry_policy
        if (
            wait > policy.max_retry_after
            or waits >= policy.max_retries
            or (deadline is not None and now + wait >= deadline)
        ):
            error = RateLimitError(
                f"Every route is cooling down; the soonest is free in {wait:.2f}s",
                status_code=429,
            )
            error.retry_after = wait
            if errors:
                raise error from errors[-1][1]
            raise error
        return wait

    def _deadline(self, options: Mapping[str, Any] | None, started: float) -> float | None:
        from ._config import Timeout

        timeout = self.pipeline.timeout
        if options and "timeout" in options:
            timeout = Timeout.coerce(options["timeout"])
        return None if timeout.total is None else started + timeout.total

    async def route_call(
        self,
        attempt: Attempt,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        context: CallContext | None,
        *,
        tried: list[Route] | None = None,
        errors: list[tuple[str, BaseException]] | None = None,
    ) -> Any:
        """Try the routes in order, one attempt each (the fast path: no hedging).

        ``tried`` and ``errors`` carry routes already tried in this call and their errors
        (a stream's continuation: the routes that cut it)."""
        if errors is None:
            errors = []
        if tried is None:
            tried = []
        context_only = False
        deadline: float | None = None
        waits = 0
        loop = asyncio.get_running_loop()
        started = now = loop.time()
        route = self.routes[0]
        while True:
            # The common case inline: the first route, closed and not cooling.
            if tried or route.opened_at is not None or route.cooling_until > now:
                picked = self.pick(tried, context_only, now)
                if picked is None:
                    if deadline is None:
                        deadline = self._deadline(options, started)
                    await sleep(self.exhausted(errors, tried, waits, deadline))
                    waits += 1
                    tried.clear()
                    now = loop.time()
                    route = self.routes[0]
                    continue
                route = picked
                self._start(route)
            tried.append(route)
            if context is not None:
                context.route = route.name
                context.base_url = route.pipeline.base_url
            b = body
            if route.model is not None and body is not None:
                b = _swap_model(body, route)
            if route.source.closed:
                raise RuntimeError(f"Route {route.name!r}: its client has been closed")
            try:
                result = await attempt(
                    route.pipeline,
                    b,
                    options if not options or "max_retries" not in options
                    else {**options, "max_retries": 0},
                    context,
                )
            except APIError as exc:
                verdict = classify(exc)
                self.failed(route, exc, verdict)
                if verdict == "raise":
                    raise
                errors.append((route.name, exc))
                if verdict == "context":
                    context_only = True
                now = loop.time()
                continue
            except BaseException:
                route.probing = False  # a cancelled probe lets the next one through
                raise
            self.succeeded(route, loop.time() - now)
            return result

    async def hedged(
        self,
        attempt: Attempt,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        context: CallContext | None,
    ) -> Any:
        """`route_call` with hedging: after ``hedge.after`` seconds without an answer, the
        same request starts on the next healthy route; the first success wins and the
        others are cancelled (a stream that also opened is closed)."""
        hedge = self.hedge
        assert hedge is not None
        self.hedge_tokens = min(hedge.burst, self.hedge_tokens + hedge.max_extra)
        errors: list[tuple[str, BaseException]] = []
        tried: list[Route] = []
        pending: dict[asyncio.Task[Any], tuple[Route, float]] = {}
        context_only = False
        hedged = False
        deadline: float | None = None
        waits = 0
        loop = asyncio.get_running_loop()
        call_started = loop.time()

        def start(route: Route) -> None:
            tried.append(route)
            self._start(route)
            # Attempts run side by side: each gets a copy of the call's context naming its
            # route; the call's own context names the route that answered (when one wins).
            own = None if context is None else _copy_context(context)
            b, o = self.prepare(route, body, options, own)
            task = loop.create_task(attempt(route.pipeline, b, o, own))
            pending[task] = (route, loop.time())

        try:
            while True:
                if not pending:
                    route = self.pick(tried, context_only, loop.time())
                    if route is None:
                        if deadline is None:
                            deadline = self._deadline(options, call_started)
                        await sleep(self.exhausted(errors, tried, waits, deadline))
                        waits += 1
                        tried.clear()
                        continue
                    start(route)
                timeout = None
                if not hedged:
                    first_route, started = next(iter(pending.values()))
                    timeout = max(0.0, started + self.hedge_after(first_route) - loop.time())
                done, _ = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    hedged = True
                    route = self.pick(tried, context_only, loop.time())
                    if route is not None and self.hedge_tokens >= 1:
                        self.hedge_tokens -= 1
                        self.hedges += 1
                        logger.info("Hedging on route %r", route.name)
                        start(route)
                    continue
                winner: tuple[Route, Any] | None = None
                for task in done:
                    route, started = pending.pop(task)
                    exc = task.exception()
                    if exc is None:
                        if winner is None:
                            self.succeeded(route, loop.time() - started)
                            winner = (route, task.result())
                        else:
                            await _discard(task.result())
                        continue
                    if not isinstance(exc, APIError):
                        raise exc
                    verdict = classify(exc)
                    self.failed(route, exc, verdict)
                    if verdict == "raise" and winner is None:
                        raise exc
                    errors.append((route.name, exc))
                    if verdict == "context":
                        context_only = True
                if winner is not None:
                    if context is not None:
                        context.route = winner[0].name
                        context.base_url = winner[0].pipeline.base_url
                    return winner[1]
        finally:
            if pending:
                for task in pending:
                    task.cancel()
                # Wait for the losers to let go of their connections before returning.
                results = await asyncio.gather(*pending, return_exceptions=True)
                for (route, _), result in zip(pending.values(), results, strict=True):
                    route.probing = False
                    if not isinstance(result, BaseException):
                        await _discard(result)

    def hedge_after(self, route: Route) -> float:
        """Seconds without an answer from ``route`` before a hedge starts."""
        hedge = self.hedge
        assert hedge is not None
        if hedge.quantile is None:
            return float(hedge.after)
        if len(route.latencies) < hedge.min_samples:
            return hedge.initial
        q = route.quantile(hedge.quantile)
        return hedge.initial if q is None else q


class RouterCompletions(Completions):
    """``router.chat.completions``: a client's completions over the routes.

    Everything is as on a client; ``create`` and ``stream`` also take no ``model`` when
    every route sets its own (the body then carries the first route's, which each route
    replaces with its own).
    """

    def __init__(self, router: Router) -> None:
        super().__init__(router)  # type: ignore[arg-type]  # a batch client over its pipeline
        self._router = router

    def _model(self, model: str | None) -> str:
        if model is not None:
            return model
        for route in self._router.routes:
            if route.model is None:
                raise TypeError(
                    f"model is required: route {route.name!r} has no model of its own "
                    "(pass model=..., or give every Route a model)"
                )
        return self._router.routes[0].model  # type: ignore[return-value]

    @overload
    async def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[MessageInput],
        stream: Literal[False] = False,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[MessageInput],
        stream: Literal[True],
        **params: Unpack[CompletionCreateParams],
    ) -> AsyncStream[ChatCompletionChunk]: ...

    @overload
    async def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[MessageInput],
        stream: bool,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        model: str | None = None,
        messages: Sequence[MessageInput],
        stream: bool = False,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """`Completions.create` over the routes; ``model`` may be left out when every route
        sets one."""
        return await super().create(
            model=self._model(model), messages=messages, stream=stream, **params
        )

    def stream(
        self,
        *,
        model: str | None = None,
        messages: Sequence[MessageInput],
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletionStreamManager:
        """`Completions.stream` over the routes; ``model`` as for `create`."""
        return super().stream(model=self._model(model), messages=messages, **params)


class RouterChat:
    """``router.chat``."""

    def __init__(self, router: Router) -> None:
        self.completions = RouterCompletions(router)


class ContinuingStream(AsyncStream[ChatCompletionChunk]):
    """A router's chat stream with ``continue_streams=True``: one stream over the route's
    stream and, when that one is cut after content, its continuations on the next routes.

    ``continued`` counts the continuations; the chunks they bring (and so the final
    completion's ``to_dict()``) carry ``"anyapi_continued": N``. A continuation is refused
    (the cut's `APIConnectionError` is raised) once a tool-call fragment, a refusal, a
    choice other than 0 or logprobs reached the caller, or when the request asked for
    ``n > 1`` or logprobs. Headers, ``http`` and ``usage`` are those of the stream being
    read (the last route's, after a continuation).
    """

    def __init__(
        self,
        router: Router,
        stream: AsyncStream[ChatCompletionChunk],
        route: Route,
        method: str,
        path: str,
        body: bytes | None,
        options: Mapping[str, Any] | None,
        context: CallContext | None,
    ) -> None:
        # Not AsyncStream.__init__: this stream reads another one, not a response.
        self._router = router
        self._current = stream
        self._route = route
        self._request = (method, path, body, options, context)
        #: The routes that cut this stream, with their errors (in order).
        self._cuts: list[tuple[Route, BaseException]] = []
        self._text: list[str] = []  # choice 0's content delivered so far
        self._refusal: str | None = None  # why the delivered chunks forbid continuing
        self._item_decoder = None  # a chat stream (otel's yields_chunks reads it)
        self._observer: StreamObserver | None = None
        self._closed = False
        self._complete = False
        self._error: Exception | None = None
        self._iterator: Any = None
        self._reading = False
        self._opening: asyncio.Task[Any] | None = None  # a continuation being opened
        #: How many times the stream was continued on another route.
        self.continued = 0
        self.usage: Any = None
        self.http = stream.http
        self._timings = stream.http.timings

    @property
    def headers(self) -> Any:
        """The response headers of the stream being read."""
        return self._current.headers

    @property
    def request_id(self) -> str | None:
        """The request id of the stream being read."""
        return self._current.request_id

    def __aiter__(self) -> Any:
        if self._iterator is not None:
            return self._iterator
        if self._reading:
            raise RuntimeError(
                "This AsyncStream is already being iterated (by another loop or task); "
                "a stream can be read by one loop at a time"
            )
        iterator: Any = self._read()
        if self._observer is not None:
            iterator = self._observer.wrap(iterator)
        return iterator

    async def __anext__(self) -> ChatCompletionChunk:
        if self._iterator is None:
            self._iterator = self.__aiter__()
        chunk: ChatCompletionChunk = await self._iterator.__anext__()
        return chunk

    async def _read(self) -> Any:
        if self._closed or self._reading:
            if self._error is not None:
                raise self._error
            return
        self._reading = True
        try:
            while True:
                chunks = self._current.__aiter__()
                mark = (
                    b'{"anyapi_continued":%d,' % self.continued if self.continued else None
                )
                try:
                    async for chunk in chunks:
                        self._track(chunk)
                        if mark is not None:
                            raw = kept_body(chunk)
                            if raw is not None and raw.startswith(b"{"):
                                keep_response(chunk, mark + raw[1:])
                        yield chunk
                except APIConnectionError as exc:
                    if self._closed:
                        raise
                    await self._continue(exc)
                    if self._closed:
                        return  # closed by the caller meanwhile: a quiet end
                    continue
                finally:
                    await chunks.aclose()  # type: ignore[attr-defined]
                if not self._closed:
                    self._complete = True
                    if self.continued:
                        # The caller's timings (first token on the first route, as an
                        # observer that watched from the start holds them) end now too.
                        self._timings.finished = self._current.http.timings.finished
                return
        except Exception as exc:
            self._error = exc
            raise
        finally:
            self._reading = False
            await self._close()

    def _track(self, chunk: ChatCompletionChunk) -> None:
        """Keep choice 0's text; note what would make a continuation wrong."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if choice.index != 0:
                self._refusal = "a choice other than 0 was streamed"
            if delta.tool_calls or delta.function_call is not None:
                self._refusal = "a tool-call fragment was delivered"
            if delta.refusal:
                self._refusal = "a refusal was delivered"
            if choice.logprobs is not None:
                self._refusal = "logprobs were delivered"
            if delta.content:
                self._text.append(delta.content)

    async def _continue(self, cut: APIConnectionError) -> None:
        """Open the continuation of the stream ``cut`` ended, on the next route; raise
        ``cut`` when the stream must not be continued."""
        router = self._router
        route = self._route
        method, path, body, options, context = self._request
        if self._refusal is not None or body is None or route.source.closed:
            raise cut
        payload = msgspec.json.decode(body)
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            raise cut
        n = payload.get("n")
        if (isinstance(n, int) and n > 1) or payload.get("logprobs") or payload.get(
            "top_logprobs"
        ):
            raise cut
        router.failed(route, cut, "next")
        self._cuts.append((route, cut))
        await self._current.close()
        logger.warning(
            "Stream cut on route %r after content (%s): continuing on the next route",
            route.name, error_line(cut),
        )
        partial = "".join(self._text)
        messages: list[Any] = payload["messages"]
        caller_model = payload.get("model")
        cast_to = ChatCompletionChunk

        def attempt(
            p: Pipeline, b: bytes | None, o: Mapping[str, Any] | None, c: CallContext | None
        ) -> Coroutine[Any, Any, Any]:
            target = router.route_of(p)
            tail: list[dict[str, Any]] = []
            if partial and target.prefill:
                tail = [{"role": "assistant", "content": partial, "prefix": True}]
            elif partial:
                tail = [
                    {"role": "assistant", "content": partial},
                    {"role": "user", "content": router.continue_instruction},
                ]
            sent = {
                **payload,
                "model": target.model if target.model is not None else caller_model,
                "messages": messages + tail,
            }
            encoded = msgspec.json.encode(sent)
            return p.stream(method, path, encoded, o, cast_to, c, observed=True)

        tried = [r for r, _ in self._cuts]
        errors: list[tuple[str, BaseException]] = [(r.name, e) for r, e in self._cuts]
        origin: dict[int, Route] = {}

        async def noting(
            p: Pipeline, b: bytes | None, o: Mapping[str, Any] | None, c: CallContext | None
        ) -> Any:
            opened = await attempt(p, b, o, c)
            origin[id(opened)] = router.route_of(p)
            return opened

        # A task, so that close() from another task can stop the opening (as it wakes a
        # reader waiting on a plain stream); asyncio.wait leaves it to be cancelled here
        # when this task is.
        opening = self._opening = asyncio.get_running_loop().create_task(
            router.route_call(noting, body, options, context, tried=tried, errors=errors)
        )
        try:
            await asyncio.wait((opening,))
        except BaseException:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            raise
        finally:
            self._opening = None
        if opening.cancelled():  # close() stopped it: a quiet end, as for a plain stream
            return
        opened: AsyncStream[ChatCompletionChunk] = opening.result()
        if self._closed:  # closed by the caller (another task) meanwhile
            await opened.close()
        self._current = opened
        self._route = origin[id(opened)]
        self.http = opened.http
        self.continued += 1

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        await self._current.close()
        if self._observer is not None:
            self._observer.closed(self)

    async def close(self) -> None:
        """Release the connection; idempotent."""
        await self._close()

    aclose = close

    async def __aenter__(self) -> ContinuingStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()
        iterator, self._iterator = self._iterator, None
        if iterator is not None:
            await iterator.aclose()

    def __del__(self, _warn: Any = None) -> None:
        # The stream read (an AsyncStream) warns and lets go of its connection itself.
        pass


async def _discard(result: Any) -> None:
    """Let go of an answer that lost the race (an open stream is closed)."""
    close = getattr(result, "close", None)
    if close is not None and asyncio.iscoroutinefunction(close):
        await close()


def _copy_context(context: CallContext) -> CallContext:
    copy = CallContext(context.operation)
    for name in CallContext.__slots__:
        setattr(copy, name, getattr(context, name))
    return copy


def _all_failed(errors: list[tuple[str, BaseException]]) -> AllRoutesFailedError:
    parts = "; ".join(f"{name}: {error_line(exc)}" for name, exc in errors)
    return AllRoutesFailedError(f"All routes failed ({parts})", errors)


def _now() -> float:
    return asyncio.get_running_loop().time()
