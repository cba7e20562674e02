"""Ray Data integration: chat completions as a ``map_batches`` stage, one rate budget per cluster.

Needs the ``ray`` extra (``pip install 'anyapi-async[ray]'``); ``import anyapi_async`` never
imports this module or Ray. See docs/scale-out.md::

    import ray
    from anyapi_async.ray import ChatCompletions

    ds = ray.data.read_parquet("s3://bucket/prompts/")        # columns: custom_id, body
    ds = ds.map_batches(
        ChatCompletions,
        batch_size=512,
        fn_constructor_kwargs=dict(base_url=URL, api_key=KEY, concurrency=32, rpm=3000),
        compute=ray.data.ActorPoolStrategy(size=4),
        num_cpus=0.25,
    )
    ds.write_parquet("s3://bucket/answers/")

Rows in carry ``custom_id`` and ``body`` (a request body as a dict or as JSON text, the
shapes the JSONL runner takes). Rows out keep every input column and add ``response`` (the
completion's JSON text as the server sent it, null on failure), ``error`` (JSON text, null
on success), ``status_code`` (null when the server never answered), ``request_id`` and
``attempts``. A row that fails is an error row; only faults of the stage itself (a bug, the
budget actor lost) raise.

With ``rpm``/``tpm`` every actor draws from one `RateBudget` actor, named after the
endpoint and key, so all workers of a cluster share one budget, leased in small blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import math
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import ray

from ._batch import DEFAULT_CONCURRENCY, BatchResult, BatchRun
from ._client import AsyncClient
from ._decode import JSON_DECODER
from ._jobs.files import INVALID_TYPE, check_body, result_record
from ._jobs.plan import send_body
from ._ratelimit import (
    DEFAULT_BURST_SECONDS,
    LeasedLimiter,
    Limiter,
    RateLimiter,
    SharedBudget,
    check_budgets,
)
from ._router import CircuitBreaker, Hedge, Route, Router
from ._settings import DEFAULT_BASE_URL, ENV_BASE_URL, resolve_api_key
from .cache import open_cache

if TYPE_CHECKING:
    from ray.actor import ActorHandle

__all__ = [
    "BUDGET_NAMESPACE",
    "OUTPUT_COLUMNS",
    "ChatCompletions",
    "RateBudget",
    "budget_name",
]

#: Ray namespace of the budget actors (named actors are found by namespace and name).
BUDGET_NAMESPACE: Final = "anyapi_async"
#: Seconds of the shared rate one lease hands a worker at most (with `MAX_LEASE` requests).
LEASE_SECONDS: Final = 0.1
MAX_LEASE: Final = 64
#: Seconds an unspent lease stays valid: a worker must not sit on budget others could use.
LEASE_TTL: Final = 1.0
#: A worker tells the budget about a low ``x-ratelimit-remaining-*`` once per this many
#: seconds of pause at most, not on every response.
PAUSE_REPORT_SLACK: Final = 0.05
#: Seconds an exiting actor waits for its connections to close.
CLOSE_TIMEOUT: Final = 5.0
#: Columns a `ChatCompletions` stage adds.
OUTPUT_COLUMNS: Final = ("response", "error", "status_code", "request_id", "attempts")

_encode = msgspec.json.Encoder().encode


def budget_name(base_url: str, api_key: str) -> str:
    """The default budget actor's name: one per endpoint and key (a digest, never the key)."""
    digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:16]
    return f"anyapi-budget-{digest}"


# --- the cluster's budget -------------------------------------------------------------------


class RateBudget:
    """One requests/tokens-per-minute budget for every worker of a Ray cluster.

    A Ray actor (``num_cpus=0``) holding a `SharedBudget`, the state a local
    `RateLimiter` holds (two token buckets, the factor a 429 halves and time restores, and
    the pause that 429s and nearly spent ``x-ratelimit-remaining-*`` headers impose).
    Workers lease requests in small blocks (about `LEASE_SECONDS` of the rate) instead of
    asking once per request, and report 429s, low headers and token usage, which then slow
    every worker.

    `get_or_create` finds the named actor or starts it (get-if-exists, detached, so losing
    the worker that happened to create it loses nothing); `ChatCompletions` does this
    itself when given ``rpm``/``tpm``. A detached actor outlives the job: `remove` ends it.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        burst: float = DEFAULT_BURST_SECONDS,
        adaptive: bool = True,
    ) -> None:
        self._budget = SharedBudget(rpm, tpm, burst=burst, adaptive=adaptive)

    @classmethod
    def get_or_create(
        cls,
        name: str,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        burst: float = DEFAULT_BURST_SECONDS,
    ) -> ActorHandle[RateBudget]:
        """The budget actor called ``name``, started with these budgets if it is not running.

        A running one is reconfigured to ``rpm``/``tpm`` (keeping what was spent), so every
        caller agrees on the budget.
        """
        check_budgets(rpm, tpm, burst)
        actor_class: Any = ray.remote(cls)
        handle: ActorHandle[RateBudget] = actor_class.options(
            name=name,
            namespace=BUDGET_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_restarts=-1,
        ).remote(rpm, tpm, burst=burst)
        ray.get(handle.configure.remote(rpm, tpm))
        return handle

    @staticmethod
    def remove(name: str) -> bool:
        """End the budget actor called ``name``; False if there was none."""
        try:
            handle = ray.get_actor(name, namespace=BUDGET_NAMESPACE)
        except ValueError:
            return False
        ray.kill(handle)
        return True

    # --- actor methods (called with .remote): the SharedBudget's --------------------------

    async def configure(self, rpm: float | None, tpm: float | None) -> None:
        """Set the budgets (a worker started with other values wins: the newest config)."""
        self._budget.configure(rpm, tpm)

    async def lease(self, requests: int, cost: float, adjust: float) -> int:
        """Wait until one request of ``cost`` tokens fits; grant up to ``requests`` of them.

        ``adjust`` settles the worker's earlier leases: tokens its requests used beyond
        the ``cost`` they were leased at (negative: fewer). Requests are served in arrival
        order.
        """
        return await self._budget.lease(requests, cost, adjust)

    async def pause(self, hold: float) -> None:
        """Start no request for ``hold`` seconds (a worker saw the budget nearly spent)."""
        self._budget.pause(hold)

    async def rate_limited(self, delay: float) -> None:
        """A worker met a 429: pause ``delay`` seconds and halve the rate for everyone."""
        self._budget.rate_limited(delay)

    async def stats(self) -> dict[str, float | int | None]:
        """Counters: requests granted, 429s and low-budget pauses reported, the factor and
        budgets in force."""
        return self._budget.stats()


class _ActorBudget:
    """A `RateBudget` actor as the `BudgetSource` of a worker's `LeasedLimiter`."""

    def __init__(
        self, budget: ActorHandle[RateBudget], name: str, rpm: float | None, tpm: float | None
    ) -> None:
        self._budget = budget
        self._name = name
        self._rpm = rpm
        self._tpm = tpm
        self._reports: set[asyncio.Future[Any]] = set()

    async def lease(self, requests: int, cost: float, adjust: float) -> int:
        try:
            granted: int = await self._budget.lease.remote(requests, cost, adjust)
        except ray.exceptions.RayActorError:
            # Lost with its node, or ended by RateBudget.remove: find or start it once more
            # (a second failure is a fault of the stage and raises).
            self._budget = await asyncio.to_thread(
                RateBudget.get_or_create, self._name, rpm=self._rpm, tpm=self._tpm
            )
            granted = await self._budget.lease.remote(requests, cost, adjust)
        return granted

    def pause(self, hold: float) -> None:
        self._report(self._budget.pause.remote(hold))

    def rate_limited(self, delay: float) -> None:
        self._report(self._budget.rate_limited.remote(delay))

    def _report(self, call: Any) -> None:
        # Fire and forget, keeping a reference until it is done. A report lost with the
        # budget actor is not worth failing a batch for: the next lease finds the actor
        # again, or raises.
        future: asyncio.Future[Any] = asyncio.ensure_future(call)
        self._reports.add(future)
        future.add_done_callback(self._reported)

    def _reported(self, future: asyncio.Future[Any]) -> None:
        self._reports.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it as lost


class _SharedLimiter(LeasedLimiter):
    """The `Limiter` a worker uses with a `RateBudget`: about `LEASE_SECONDS` of the rate
    per lease (with tpm alone, what the tokens allow, up to `MAX_LEASE`)."""

    def __init__(
        self, budget: ActorHandle[RateBudget], name: str, rpm: float | None, tpm: float | None
    ) -> None:
        block = (
            MAX_LEASE
            if rpm is None
            else max(1, min(MAX_LEASE, math.floor(rpm / 60 * LEASE_SECONDS)))
        )
        super().__init__(
            _ActorBudget(budget, name, rpm, tpm),
            tpm=tpm,
            block=block,
            ttl=LEASE_TTL,
            report_slack=PAUSE_REPORT_SLACK,
        )


# --- the map_batches stage --------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A body value as plain JSON types: Arrow and numpy give arrays, numpy scalars, and
    nulls for the keys other rows' bodies had (a struct column has every row's keys)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if tolist is not None:
        return _plain(tolist())
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return value


def _body(value: Any) -> dict[str, Any]:
    if isinstance(value, (str, bytes)):
        try:
            body = JSON_DECODER.decode(value)
        except msgspec.DecodeError as exc:
            raise ValueError(f"'body' is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ValueError("'body' is not a JSON object")
        return body
    if isinstance(value, Mapping):
        plain: dict[str, Any] = _plain(value)
        return plain
    raise ValueError(f"'body' must be a dict or JSON text, not {type(value).__name__}")


def _column(batch: Any, name: str) -> list[Any]:
    try:
        column = batch[name]
    except KeyError:
        raise KeyError(f"the batch has no {name!r} column (rows need custom_id and body)") from None
    to_pylist = getattr(column, "to_pylist", None)  # pyarrow
    if to_pylist is not None:
        values: list[Any] = to_pylist()
        return values
    return list(column)


def _text(obj: Any) -> str:
    return _encode(obj).decode()


_ROUTE_KEYS: Final = frozenset(
    ("name", "base_url", "api_key", "api_key_env", "model", "on_context_length", "timeout")
)


def _check_routes(
    routes: Sequence[Mapping[str, Any]], base_url: str | None, api_key: str | None
) -> list[dict[str, Any]]:
    """``routes`` checked before any I/O (plain dicts: they travel to the actors)."""
    if base_url is not None or api_key is not None:
        raise ValueError("pass either routes=[...] or base_url/api_key, not both")
    if isinstance(routes, (str, bytes, Mapping)) or not routes:
        raise ValueError("routes must be a non-empty list of route dicts")
    checked = []
    for i, spec in enumerate(routes):
        if not isinstance(spec, Mapping):
            raise TypeError(f"routes[{i}] must be a dict, not {type(spec).__name__}")
        unknown = set(spec) - _ROUTE_KEYS
        if unknown:
            raise ValueError(f"routes[{i}] has unknown key(s) {', '.join(sorted(unknown))}")
        if "api_key" in spec and "api_key_env" in spec:
            raise ValueError(f"routes[{i}]: pass api_key or api_key_env, not both")
        checked.append(dict(spec))
    return checked


class ChatCompletions:
    """A ``Dataset.map_batches`` stage sending each row's request body to chat completions.

    Use it as a callable class with an actor pool; each actor holds one `AsyncClient`,
    made on first use on the actor's event loop, and sends a batch's requests at once, at
    most ``concurrency`` in flight per actor::

        ds.map_batches(
            ChatCompletions,
            batch_size=512,
            fn_constructor_kwargs=dict(base_url=URL, api_key=KEY, concurrency=32, rpm=3000),
            compute=ray.data.ActorPoolStrategy(size=4),
            num_cpus=0.25,
        )

    The actors mostly wait on the network: ``num_cpus=0.25`` lets four share a core (an
    actor answered ~900 rows/s on well under half a core in ``benchmarks/bench_ray.py``).
    Use batches of hundreds of rows: Ray's own cost is per batch. Batches may be a
    dict of columns (numpy or lists), a ``pyarrow.Table`` or a ``pandas.DataFrame``; the
    output has the same kind.

    Args:
        base_url, api_key: the endpoint (default: ``ANYAPI_BASE_URL``/``ANYAPI_API_KEY``
            in the worker's environment, e.g. from a ``runtime_env``).
        concurrency: requests in flight per actor, over all its batches.
        rpm, tpm: a budget shared by every actor of the cluster (a `RateBudget`).
        budget: the budget actor's name (default: one per endpoint and key).
        max_retries: retries per request (5xx, connection errors; 429s are retried after
            the shared pause); timeout: as `AsyncClient`'s.
        model: replace every body's model.
        cache: a response cache for every actor (see docs/cache.md): a
            ``redis://HOST:PORT/DB`` URL, shared by all of them wherever they run (the
            ``redis`` extra), or a SQLite file path, shared by the actors of one machine.
        routes: instead of ``base_url``/``api_key``, fail over across endpoints (a
            `Router` per actor, docs/failover.md): a list of dicts with ``base_url``,
            ``api_key`` or ``api_key_env`` (the variable in the worker's environment),
            and optionally ``name``, ``model``, ``on_context_length``, ``timeout``.
        breaker, hedge: the router's `CircuitBreaker` and `Hedge` (with ``routes``).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        rpm: float | None = None,
        tpm: float | None = None,
        budget: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        model: str | None = None,
        cache: str | None = None,
        routes: Sequence[Mapping[str, Any]] | None = None,
        breaker: CircuitBreaker | None = None,
        hedge: Hedge | None = None,
    ) -> None:
        if cache is not None:
            open_cache(cache)  # a bad value fails here, on the driver
        if routes is not None:
            routes = _check_routes(routes, base_url, api_key)
        elif breaker is not None or hedge is not None:
            raise ValueError("breaker and hedge go with routes=[...]")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        check_budgets(rpm, tpm, DEFAULT_BURST_SECONDS)
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if isinstance(timeout, bool) or (isinstance(timeout, (int, float)) and not timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self._base_url = base_url
        self._api_key = api_key
        self._concurrency = concurrency
        self._rpm = rpm
        self._tpm = tpm
        self._budget_name = budget
        self._max_retries = max_retries
        self._timeout = timeout
        self._model = model
        self._cache = cache
        self._routes = routes
        self._breaker = breaker
        self._hedge = hedge
        #: What the requests go through: the client, or a Router over ``_clients``.
        self._client: AsyncClient | Router | None = None
        self._clients: list[AsyncClient] = []
        self._limiter: Limiter | None = None
        self._ready: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __del__(self) -> None:
        # Ray Data drops the stage when its actor pool shuts down gracefully: close the
        # pool's connections on the loop they belong to.
        # getattr: __init__ may have refused its arguments before setting these.
        clients, loop = getattr(self, "_clients", None), getattr(self, "_loop", None)
        if not clients or loop is None or loop.is_closed() or not loop.is_running():
            return

        async def close() -> None:
            for client in clients:
                await client.aclose()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:  # on the loop itself: all we can do is schedule it
            running.create_task(close())
            return
        future = asyncio.run_coroutine_threadsafe(close(), loop)
        try:
            future.result(CLOSE_TIMEOUT)
        except Exception:  # the actor is exiting: nothing to report to
            future.cancel()

    def __repr__(self) -> str:  # never the key
        return (
            f"ChatCompletions(base_url={self._base_url!r}, concurrency={self._concurrency}, "
            f"rpm={self._rpm!r}, tpm={self._tpm!r})"
        )

    async def _setup(self) -> tuple[AsyncClient | Router, Limiter]:
        # On the actor's event loop: the client's pool belongs to the loop it is made on.
        if self._client is not None and self._limiter is not None:
            return self._client, self._limiter
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._client is None:
                base_url = self._base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
                options: dict[str, Any] = {"max_concurrency": self._concurrency}
                if self._max_retries is not None:
                    options["max_retries"] = self._max_retries
                if self._timeout is not None:
                    options["timeout"] = self._timeout
                client: AsyncClient | Router
                if self._cache is not None:
                    options["cache"] = open_cache(self._cache)
                if self._routes is not None:
                    options.pop("max_retries", None)  # the router is the only retry loop
                    client, key = self._router(options)
                    base_url = client.pipeline.base_url
                else:
                    # The key the client uses, found as the CLI and the job runner find it.
                    key = resolve_api_key(self._api_key, base_url)
                    client = AsyncClient(api_key=key, base_url=base_url, **options)
                    self._clients.append(client)
                    base_url = client.base_url
                limiter: Limiter
                if self._rpm or self._tpm:
                    key = key or ""
                    name = self._budget_name or budget_name(base_url, key)
                    # get_or_create blocks on ray.get: off the loop.
                    handle = await asyncio.to_thread(
                        RateBudget.get_or_create, name, rpm=self._rpm, tpm=self._tpm
                    )
                    limiter = _SharedLimiter(handle, name, self._rpm, self._tpm)
                else:
                    limiter = RateLimiter()  # no budget: still adapts to 429s
                self._loop = asyncio.get_running_loop()
                self._limiter = limiter
                self._client = client
        assert self._client is not None and self._limiter is not None
        return self._client, self._limiter

    def _router(self, options: dict[str, Any]) -> tuple[Router, str | None]:
        """A Router over one client per route (made on the actor's loop), and the first
        route's key (for the budget's name)."""
        assert self._routes is not None
        routes = []
        first_key: str | None = None
        for i, spec in enumerate(self._routes):
            env = spec.get("api_key_env")
            given = spec.get("api_key")
            if env is not None:
                given = os.environ.get(env) or None
            key = resolve_api_key(given, spec.get("base_url"))
            if i == 0:
                first_key = key
            route_options = dict(options)
            if spec.get("timeout") is not None:
                route_options["timeout"] = spec["timeout"]
            client = AsyncClient(api_key=key, base_url=spec.get("base_url"), **route_options)
            self._clients.append(client)
            routes.append(
                Route(
                    client,
                    model=spec.get("model"),
                    name=spec.get("name"),
                    on_context_length=bool(spec.get("on_context_length", False)),
                )
            )
        return Router(routes, breaker=self._breaker, hedge=self._hedge), first_key

    async def answer(self, bodies: Sequence[dict[str, Any]]) -> AsyncIterator[BatchResult]:
        """Send request bodies through this actor's client and budget, all at once.

        Yields a `BatchResult` per body as it finishes (``result.index`` is the body's
        position). For engines of your own; ``__call__`` uses it for a batch's rows.
        """
        client, limiter = await self._setup()
        run = BatchRun(
            client,  # type: ignore[arg-type]  # a Router is a batch client over its own pipeline
            [{"body": body} for body in bodies],
            concurrency=self._concurrency,
            limiter=limiter,
            send=send_body,
        )
        async with run:
            async for result in run:
                yield result

    def check(self, body: Any) -> dict[str, Any]:
        """A row's ``body`` (dict or JSON text) as the request to send; ValueError if bad."""
        return check_body(_body(body), self._model)

    async def __call__(self, batch: Any) -> Any:
        """Answer every row of ``batch``; the rows come back in order, columns added."""
        ids = _column(batch, "custom_id")
        bodies = _column(batch, "body")
        n = len(ids)
        response: list[str | None] = [None] * n
        error: list[str | None] = [None] * n
        status: list[int | None] = [None] * n
        request_ids: list[str | None] = [None] * n
        attempts = [0] * n
        rows: list[int] = []
        checked: list[dict[str, Any]] = []
        for i, raw in enumerate(bodies):
            try:
                checked.append(self.check(raw))
            except (TypeError, ValueError) as exc:
                error[i] = _text(
                    {"message": str(exc), "type": INVALID_TYPE, "code": "invalid_body"}
                )
                continue
            rows.append(i)
        async for result in self.answer(checked):
            i = rows[result.index]
            attempts[i] = result.attempts
            line = result_record("", "", result.completion, result.error)
            answer = line["response"]
            if answer is not None:
                status[i] = answer["status_code"]
                request_ids[i] = answer["request_id"]
            if line["error"] is None:
                response[i] = _text(answer["body"])
            else:
                failure = dict(line["error"])
                failure["body"] = answer["body"] if answer is not None else None
                error[i] = _text(failure)
        return _with_columns(batch, response, error, status, request_ids, attempts)


def _with_columns(
    batch: Any,
    response: list[str | None],
    error: list[str | None],
    status: list[int | None],
    request_ids: list[str | None],
    attempts: list[int],
) -> Any:
    """``batch`` with the output columns added, in the batch's own format."""
    if hasattr(batch, "append_column"):  # pyarrow.Table
        pa: Any = importlib.import_module("pyarrow")

        table = batch
        for name, values, kind in (
            ("response", response, pa.string()),
            ("error", error, pa.string()),
            ("status_code", status, pa.int32()),
            ("request_id", request_ids, pa.string()),
            ("attempts", attempts, pa.int32()),
        ):
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, pa.array(values, type=kind))
        return table
    if hasattr(batch, "assign"):  # pandas.DataFrame
        return batch.assign(
            response=response,
            error=error,
            status_code=status,
            request_id=request_ids,
            attempts=attempts,
        )
    import numpy as np

    out = dict(batch)
    out["response"] = np.array(response, dtype=object)
    out["error"] = np.array(error, dtype=object)
    out["status_code"] = np.array(status, dtype=object)
    out["request_id"] = np.array(request_ids, dtype=object)
    out["attempts"] = np.array(attempts, dtype=np.int32)
    return out
