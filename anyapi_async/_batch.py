"""Fan-out of many chat-completion requests: bounded concurrency, rate limits, progress.

``client.chat.completions.batch(requests)`` returns a `BatchRun`, an async iterable of
`BatchResult`. How it runs:

- ``requests`` (an iterable or async iterable of parameter dicts) is read lazily, one item
  each time a slot frees, so a million-line input is never held in memory.
- ``concurrency`` slots: an item holds its slot from its start until the consumer has
  received its result, so requests in flight plus results waiting to be read (including the
  reorder buffer of ``ordered=True``) never exceed it.
- Every request passes the `RateLimiter` (``rpm=``/``tpm=``, or a shared ``limiter=``).
  A 429 is retried here, not in the client's retry loop, so the limiter sees it and can
  pause and slow *every* request; other retryable failures (5xx, connection errors) are
  retried by the client as usual.
- Leaving the ``async for`` early (``break`` inside ``async with``, an exception, a
  cancelled consumer) cancels the requests in flight and waits for them to finish
  cancelling, so no task or connection outlives the run.
"""

from __future__ import annotations

import asyncio
import importlib
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from typing import TYPE_CHECKING, Any, Final, Protocol, TextIO, Union

from ._exceptions import APIError, APIStatusError, RateLimitError
from ._meta import RateLimitInfo
from ._ratelimit import Limiter, RateLimiter
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from types import TracebackType

    from ._observe import Observer
    from ._pipeline import Pipeline
    from ._types import ChatCompletion

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BatchClient",
    "MAX_RATE_LIMIT_RETRIES",
    "BatchResult",
    "BatchRun",
    "BatchStats",
    "ProgressCallback",
    "TqdmProgress",
]

DEFAULT_CONCURRENCY: Final = 16
#: 429 answers a request may meet before it fails (each one pauses and slows the batch).
MAX_RATE_LIMIT_RETRIES: Final = 10

RequestItem = Mapping[str, Any]
Requests = Union[Iterable[RequestItem], AsyncIterable[RequestItem]]


class BatchClient(Protocol):
    """What a batch run needs of its client (an `AsyncClient` has it)."""

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def pipeline(self) -> Pipeline: ...

    @property
    def chat(self) -> Any: ...

    def with_options(self, *, retry_policy: RetryPolicy) -> BatchClient: ...


#: Sends one request's parameters through the client given to the run (a copy whose retries
#: leave 429 out): an `AsyncClient`, or whatever the run was given.
Send = Callable[[Any, dict[str, Any]], Awaitable["ChatCompletion"]]
#: Wraps one request's whole run (`anyapi_async.otel`): (the run to await, index, input item).
ObserveItem = Callable[[Awaitable["BatchResult"], int, RequestItem], Awaitable["BatchResult"]]


class BatchResult:
    """The outcome of one request of a batch.

    Exactly one of ``completion`` and ``error`` is set. ``index`` is the request's position
    in the input; ``custom_id`` is the one it carried (``None`` if it had none);
    ``request`` is the input item itself. ``attempts`` counts HTTP attempts (0 when the
    request was refused before any I/O); ``latency`` is the seconds from its first attempt
    to its result, retries and waits included.
    """

    __slots__ = ("attempts", "completion", "custom_id", "error", "index", "latency", "request")

    def __init__(
        self,
        index: int,
        custom_id: str | None,
        request: object,
        *,
        completion: ChatCompletion | None = None,
        error: Exception | None = None,
        attempts: int = 0,
        latency: float = 0.0,
    ) -> None:
        self.index = index
        self.custom_id = custom_id
        self.request = request
        self.completion = completion
        self.error = error
        self.attempts = attempts
        self.latency = latency

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.error is None

    def __repr__(self) -> str:
        outcome = "ok" if self.error is None else f"error={type(self.error).__name__}"
        return (
            f"BatchResult(index={self.index}, custom_id={self.custom_id!r}, {outcome}, "
            f"attempts={self.attempts}, latency={self.latency:.3f})"
        )


class BatchStats:
    """Live counters of a run, handed to the progress callback (the same object each time)."""

    __slots__ = (
        "_clock",
        "_started_at",
        "failed",
        "finished",
        "in_flight",
        "rate_limited",
        "skipped",
        "started",
        "succeeded",
        "total",
    )

    def __init__(self, total: int | None = None) -> None:
        #: Requests in the input, when known (``len(requests)``, or set by the job runner).
        self.total = total
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.in_flight = 0
        #: 429 answers met (each retried after a pause).
        self.rate_limited = 0
        #: Items the job runner skipped as already done (0 for a plain batch).
        self.skipped = 0
        #: True on the last call, once the run has ended (finished, failed or cancelled).
        self.finished = False
        self._clock: Callable[[], float] | None = None
        self._started_at = 0.0

    def _start(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started_at = clock()

    @property
    def done(self) -> int:
        """Requests finished, successfully or not."""
        return self.succeeded + self.failed

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return 0.0 if self._clock is None else self._clock() - self._started_at

    @property
    def rate(self) -> float:
        """Finished requests per second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the rest is done at the current rate, when ``total`` is known."""
        rate = self.rate
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def __repr__(self) -> str:
        return (
            f"BatchStats(done={self.done}, succeeded={self.succeeded}, failed={self.failed}, "
            f"in_flight={self.in_flight}, skipped={self.skipped}, total={self.total})"
        )


class ProgressCallback(Protocol):
    """Called with the run's `BatchStats` when it starts, after each result, and at the end.

    It runs on the event loop between requests: keep it quick, and copy what you keep,
    as the same object is updated in place.
    """

    def __call__(self, stats: BatchStats, /) -> object: ...


def _import_tqdm() -> Any:
    try:
        return importlib.import_module("tqdm")
    except ImportError as exc:
        raise ImportError(
            "The progress display needs tqdm: pip install 'anyapi-async[progress]'"
        ) from exc


class TqdmProgress:
    """A terminal progress bar (tqdm): done of total, rate, ETA, and ok/failed/in-flight.

    Needs the optional ``progress`` extra (``pip install 'anyapi-async[progress]'``);
    pass ``progress=True`` to `batch` for the default one, or an instance to tune it
    (any other keyword goes to ``tqdm.tqdm``). It closes itself when the run ends.
    """

    def __init__(
        self, *, desc: str | None = "batch", file: TextIO | None = None, **options: Any
    ) -> None:
        tqdm = _import_tqdm()
        options.setdefault("unit", "req")
        options.setdefault("dynamic_ncols", True)
        self._bar: Any = tqdm.tqdm(total=None, desc=desc, file=file, **options)
        self._closed = False

    def __call__(self, stats: BatchStats, /) -> None:
        if self._closed:
            return
        bar = self._bar
        if stats.total is not None and bar.total != stats.total:
            bar.total = stats.total
        text = f"ok={stats.succeeded} failed={stats.failed} in_flight={stats.in_flight}"
        if stats.skipped:
            text += f" skipped={stats.skipped}"
        if stats.rate_limited:
            text += f" 429s={stats.rate_limited}"
        bar.set_postfix_str(text, refresh=False)
        done = stats.done
        if done > bar.n:
            bar.update(done - bar.n)  # tqdm derives the rate and the ETA from this
        if stats.finished:
            self.close()

    def close(self) -> None:
        """Close the bar (idempotent)."""
        if not self._closed:
            self._closed = True
            self._bar.close()


def _split(item: object) -> tuple[str | None, dict[str, Any]]:
    """``(custom_id, parameters)`` of an input item: a parameter dict or a batch request line."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a batch request must be a dict, not {type(item).__name__}")
    custom_id = item.get("custom_id")
    if custom_id is not None and not isinstance(custom_id, str):
        raise TypeError(f"custom_id must be a str, not {type(custom_id).__name__}")
    body = item.get("body")
    if isinstance(body, Mapping):  # {"custom_id": ..., "body": {...}}: OpenAI batch format
        params = dict(body)
    elif body is not None:
        raise TypeError(f"'body' must be a dict, not {type(body).__name__}")
    else:
        params = dict(item)
        params.pop("custom_id", None)
    if params.get("stream"):
        raise ValueError("batch requests cannot stream: leave out stream=True")
    return custom_id, params


def _without_429(policy: RetryPolicy) -> RetryPolicy:
    # The batch retries 429 itself, so the limiter sees it.
    return RetryPolicy(
        policy.max_retries,
        initial_delay=policy.initial_delay,
        multiplier=policy.multiplier,
        max_delay=policy.max_delay,
        jitter=policy.jitter,
        max_retry_after=policy.max_retry_after,
        retry_statuses=policy.retry_statuses - {429},
        retry_connection_errors=policy.retry_connection_errors,
        retry_timeouts=policy.retry_timeouts,
    )


async def _create(client: BatchClient, params: dict[str, Any]) -> ChatCompletion:
    # _split refused stream=True, so this is the non-streaming overload.
    completion: ChatCompletion = await client.chat.completions.create(**params)
    return completion


def _item_observer(observers: tuple[Observer, ...]) -> ObserveItem | None:
    """One wrapper for each item's run from the pipeline's batch observers (or none)."""
    if not observers:
        return None
    if len(observers) == 1:
        return observers[0].batch_item

    async def observe(run: Awaitable[BatchResult], index: int, item: RequestItem) -> BatchResult:
        for observer in observers:
            run = observer.batch_item(run, index, item)
        return await run

    return observe


class _End:
    """Marks the end of an async input."""


_END: Final = _End()


async def _next_item(iterator: AsyncIterator[RequestItem]) -> RequestItem | _End:
    # StopAsyncIteration must not escape into a Task.
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


class _Feed:
    """The input, read one item at a time: straight from an iterable; from an async one
    through a task, so that results keep flowing while a slow input waits."""

    __slots__ = ("_async", "_sync", "_wake", "exhausted", "fetch")

    def __init__(self, requests: Requests, wake: Callable[[object], None]) -> None:
        self._sync: Iterator[RequestItem] | None = None
        self._async: AsyncIterator[RequestItem] | None = None
        if isinstance(requests, AsyncIterable):
            self._async = aiter(requests)
        else:
            self._sync = iter(requests)
        self._wake = wake  # called when a fetch finishes
        self.exhausted = False
        self.fetch: asyncio.Task[RequestItem | _End] | None = None

    def next(self) -> RequestItem | None:
        """The next item if one is at hand; else ``None`` (the end, or a fetch under way)."""
        if self.exhausted:
            return None
        if self._sync is not None:
            try:
                return next(self._sync)
            except StopIteration:
                self.exhausted = True
                return None
        fetch = self.fetch
        if fetch is None:
            assert self._async is not None
            self.fetch = fetch = asyncio.create_task(_next_item(self._async))
            fetch.add_done_callback(self._wake)
            return None
        if not fetch.done():
            return None
        self.fetch = None
        got = fetch.result()
        if isinstance(got, _End):
            self.exhausted = True
            return None
        return got


class _Reorder:
    """Holds results back until every earlier index has been handed out."""

    __slots__ = ("next_out", "waiting")

    def __init__(self) -> None:
        self.next_out = 0
        self.waiting: dict[int, BatchResult] = {}

    def ready(self, result: BatchResult) -> Iterator[BatchResult]:
        """``result`` in, the results now due (in input order) out."""
        self.waiting[result.index] = result
        while self.next_out in self.waiting:
            self.next_out += 1
            yield self.waiting.pop(self.next_out - 1)


class BatchRun:
    """An async iterable of `BatchResult`, from `Completions.batch`.

    Nothing is sent until iteration starts. Use ``async with`` so that leaving the loop
    early cancels the work in flight at once:

    ```python
    async with client.chat.completions.batch(requests, concurrency=32) as run:
        async for result in run:
            ...
    ```

    A run can be iterated once. ``stats`` holds its live counters.
    """

    def __init__(
        self,
        client: BatchClient,
        requests: Requests,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        stop_on_error: bool = False,
        rpm: float | None = None,
        tpm: float | None = None,
        limiter: Limiter | None = None,
        progress: ProgressCallback | bool | None = None,
        send: Send | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if limiter is not None and (rpm is not None or tpm is not None):
            raise ValueError("pass either limiter=... or rpm=/tpm=, not both")
        if not isinstance(requests, (Iterable, AsyncIterable)) or isinstance(
            requests, (str, bytes, Mapping)
        ):
            raise TypeError(
                "requests must be an iterable or async iterable of request dicts, "
                f"not {type(requests).__name__}"
            )
        self._requests = requests
        self._concurrency = concurrency
        self._ordered = ordered
        self._stop_on_error = stop_on_error
        self.limiter: Limiter = limiter if limiter is not None else RateLimiter(rpm, tpm)
        self._policy = client.retry_policy
        # Same pool and hooks; 429 is left to us (see the module docstring).
        self._client = client.with_options(retry_policy=_without_429(client.retry_policy))
        self._send: Send = send if send is not None else _create
        # anyapi_async.otel: one span per request around its 429 retries and limiter waits.
        self._observe_item = _item_observer(client.pipeline.batch_observers)
        if progress is True:
            progress = TqdmProgress()
        self._progress: ProgressCallback | None = progress or None
        total = len(requests) if isinstance(requests, Sized) else None
        self.stats = BatchStats(total)
        self._iterator: AsyncGenerator[BatchResult, None] | None = None
        self._done: deque[asyncio.Task[BatchResult]] = deque()
        self._running: set[asyncio.Task[BatchResult]] = set()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def client(self) -> BatchClient:
        """The client the requests go through (a copy sharing the caller's pool)."""
        return self._client

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        if self._iterator is not None:
            raise RuntimeError("a BatchRun can be iterated only once")
        self._iterator = self._run()
        return self._iterator

    async def __aenter__(self) -> BatchRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel the requests in flight and wait for them (idempotent)."""
        if self._iterator is not None:
            await self._iterator.aclose()

    # --- the engine --------------------------------------------------------------------------

    def _wake(self, _: object = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_done(self, task: asyncio.Task[BatchResult]) -> None:
        self._running.discard(task)
        self._done.append(task)
        self._wake()

    def _start(self, index: int, item: RequestItem) -> None:
        task = asyncio.create_task(self._run_one(index, item), name=f"anyapi-batch-{index}")
        self._running.add(task)
        task.add_done_callback(self._on_done)

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self.stats)

    async def _run(self) -> AsyncGenerator[BatchResult, None]:
        loop = asyncio.get_running_loop()
        self.stats._start(loop.time)
        self._report()
        feed = _Feed(self._requests, self._wake)
        free = self._concurrency  # slots: held from an item's start until it is yielded
        started = 0
        reorder = _Reorder() if self._ordered else None
        done = self._done
        try:
            while True:
                while free > 0 and (item := feed.next()) is not None:
                    self._start(started, item)
                    started += 1
                    free -= 1
                if done:
                    result = done.popleft().result()  # an unexpected exception is a bug: raise
                    if self._stop_on_error and result.error is not None:
                        raise result.error
                    for ready in (result,) if reorder is None else reorder.ready(result):
                        free += 1
                        yield ready
                    continue
                if feed.exhausted and not self._running:
                    break
                await self._sleep(loop)
        finally:
            await self._stop(feed.fetch)

    async def _sleep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until a request finishes or the input has an item (see `_wake`)."""
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _stop(self, fetch: asyncio.Task[Any] | None) -> None:
        """Cancel the requests in flight and the input's fetch, wait for them, report the end."""
        pending: list[asyncio.Future[Any]] = list(self._running)
        if fetch is not None:
            pending.append(fetch)
        for task in pending:
            task.cancel()
        if pending:
            # Let every request unwind (and release its connection) before we return.
            await asyncio.wait(pending)
        self._running.clear()
        self._done.clear()
        self.stats.finished = True
        self._report()

    def _rate_limit_budget(self, params: Mapping[str, Any]) -> int:
        if 429 not in self._policy.retry_statuses:
            return 0
        retries = params.get("max_retries")
        if isinstance(retries, bool) or not isinstance(retries, int):
            retries = self._policy.max_retries
        return max(retries, MAX_RATE_LIMIT_RETRIES) if retries > 0 else 0

    def _retryable_429(self, exc: RateLimitError) -> bool:
        verdict = exc.headers.get("x-should-retry")
        # An exhausted quota is a billing matter, not a rate: waiting does not help. Nor is
        # a server asking for a longer wait than max_retry_after: the result carries it.
        after = exc.retry_after
        return (
            verdict != "false"
            and exc.code != "insufficient_quota"
            and (after is None or after <= self._policy.max_retry_after)
        )

    async def _run_one(self, index: int, item: RequestItem) -> BatchResult:
        stats = self.stats
        stats.started += 1
        stats.in_flight += 1
        try:
            attempt = self._attempt(index, item)
            observe = self._observe_item
            result = await (attempt if observe is None else observe(attempt, index, item))
        finally:
            stats.in_flight -= 1
        if result.error is None:
            stats.succeeded += 1
        else:
            stats.failed += 1
        self._report()
        return result

    async def _attempt(self, index: int, item: RequestItem) -> BatchResult:
        try:
            custom_id, params = _split(item)
        except (TypeError, ValueError) as exc:
            return BatchResult(index, None, item, error=exc)
        limiter = self.limiter
        cost = limiter.estimate(params) if limiter.limits_tokens else 0
        budget = self._rate_limit_budget(params)
        loop = asyncio.get_running_loop()
        first: float | None = None
        attempts = 0
        limited = 0
        while True:
            await limiter.acquire(cost)
            if first is None:
                first = loop.time()
            limited_now = False
            try:
                completion = await self._send(self._client, params)
            except APIError as exc:
                limited_now = isinstance(exc, RateLimitError)
                attempts += exc.attempts or 1
                if isinstance(exc, APIStatusError) and exc.headers:
                    limiter.observe(RateLimitInfo(exc.headers))
                if isinstance(exc, RateLimitError):
                    self.stats.rate_limited += 1
                    # Slow everyone down even when this request gives up.
                    limiter.on_rate_limited(self._policy.delay(limited + 1, exc.headers))
                    if limited < budget and self._retryable_429(exc):
                        limited += 1
                        continue  # the next acquire waits out the pause
                exc.attempts = attempts
                return BatchResult(
                    index,
                    custom_id,
                    item,
                    error=exc,
                    attempts=attempts,
                    latency=loop.time() - first,
                )
            except (TypeError, ValueError) as exc:  # the item's own mistake, before any I/O
                return BatchResult(
                    index, custom_id, item, error=exc, attempts=attempts, latency=0.0
                )
            finally:
                limiter.release(ok=not limited_now)
            info = completion.http
            if info is not None:
                attempts += info.attempts
                info.attempts = attempts
                limiter.observe(info.rate_limit)
            else:
                attempts += 1
            if cost:
                limiter.record_usage(cost, completion.usage)
            return BatchResult(
                index,
                custom_id,
                item,
                completion=completion,
                attempts=attempts,
                latency=loop.time() - first,
            )
