"""`AsyncClient`: the public face over one request pipeline (settings in, pipeline out)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import msgspec

from ._config import DEFAULT_TIMEOUT, NOT_GIVEN, Limits, NotGiven, Timeout, TimeoutTypes
from ._logging import redact_url, setup_logging, with_log_hook
from ._pipeline import Pipeline, item_decoder
from ._resources import Chat, Models
from ._retry import DEFAULT_MAX_RETRIES, RetryPolicy
from ._settings import (
    DEFAULT_BASE_URL,
    ENV_BASE_URL,
    build_headers,
    check_base_url,
    check_bounds,
    check_header,
    check_query,
    pool_limits,
    resolve_api_key,
    split_query,
)
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._transports.aiohttp import AiohttpTransport
from ._transports.base import DEFAULT_MAX_RESPONSE_SIZE
from ._version import __version__

if TYPE_CHECKING:
    import aiohttp

    from ._observe import Hooks
    from ._streaming import AsyncStream
    from ._transports.base import Transport
    from .cache import Cache

__all__ = ["AsyncClient", "call_options", "check_path", "encode_body"]

T = TypeVar("T")

setup_logging()  # ANYAPI_LOG=debug|info

ApiKey = str | Callable[[], Awaitable[str]] | None
#: What `AsyncClient.post` sends: a dict or Struct as JSON, bytes as they are.
Body = Mapping[str, Any] | msgspec.Struct | bytes | None


class AsyncClient:
    """An asyncio client for AnyAPI and any OpenAI-compatible chat-completions endpoint.

    One client holds one pooled aiohttp session for its whole life; create it once and
    share it:

    ```python
    async with AsyncClient() as client:          # key from ANYAPI_API_KEY
        c = await client.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "Hello!"}]
        )
        print(c.choices[0].message.content)
    ```

    Args:
        api_key: the key, or an async callable returning it (awaited per request, for
            rotating credentials). Default: `ANYAPI_API_KEY`. Not needed for a loopback
            `base_url` (127.0.0.0/8, `::1`, localhost): without one, requests carry no
            `Authorization` header.
        base_url: default `ANYAPI_BASE_URL`, else `https://api.anyapi.ai/v1`. It may carry
            a query string (Azure's `?api-version=...`), sent with every request.
        timeout: seconds (60 by default) for each phase, or a `Timeout` with separate
            limits.
        max_retries: retries after the first attempt (default 2, or `retry_policy`'s).
        default_headers: headers sent with every request (after the client's own).
        default_query: query parameters sent with every request, after those of
            `base_url`; a call's `extra_query` adds to them (a `None` value removes one).
        http_referer: AnyAPI attribution: your app's URL (`HTTP-Referer`).
        x_title: AnyAPI attribution: your app's name (`X-Title`).
        session: a caller-owned `aiohttp.ClientSession`; the client never closes it (the
            pool, TLS and proxy arguments below then do not apply).
        transport: a custom transport (`send`, `aclose`) instead of aiohttp's.
        limits: the pool's limits as one `Limits` value; or give them one by one:
        max_connections: the pool's size (100).
        max_connections_per_host: a per-host cap within the pool (0: none).
        keepalive_timeout: seconds an idle pooled connection is kept (30).
        verify: `False` to skip TLS verification, or an `ssl.SSLContext` of your own.
        trust_env: read proxies and `.netrc` from the environment, as aiohttp does.
        retry_policy: which failures are retried and how long to wait; see `RetryPolicy`.
        hooks: `Hooks` (or `Observer` objects) called on every attempt (metrics, logging).
        max_concurrency: bound on requests in flight through this client (a stream holds
            its slot until closed). Waiting for a slot counts against `Timeout.total`.
        max_response_size: the largest body read, in bytes (64 MiB), before
            `ResponseTooLargeError`.
        max_event_size: the largest stream event, in bytes (16 MiB).
        idempotency_keys: send an `Idempotency-Key`, the same on every retry of a call.
        cache: a response cache (`anyapi_async.cache`: `SQLiteCache`, `MemoryCache`,
            `RedisCache` or your own `Cache`): identical POST requests are answered from
            it; a call's ``cache=False`` bypasses it, ``cache="refresh"`` rewrites the entry.
            Closing the client closes it. See docs/cache.md.
    """

    def __init__(
        self,
        api_key: ApiKey = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int | NotGiven = NOT_GIVEN,
        *,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        http_referer: str | None = None,
        x_title: str | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        limits: Limits | None = None,
        max_connections: int | NotGiven = NOT_GIVEN,
        max_connections_per_host: int | NotGiven = NOT_GIVEN,
        keepalive_timeout: float | NotGiven = NOT_GIVEN,
        verify: bool | ssl.SSLContext = True,
        trust_env: bool = False,
        retry_policy: RetryPolicy | None = None,
        hooks: Sequence[Hooks] = (),
        max_concurrency: int | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        idempotency_keys: bool = False,
        cache: Cache | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        key_provider, key = _key(api_key, self.base_url)
        url, query = split_query(self.base_url)
        if default_query is not None:
            query.update(check_query(default_query))
        timeout = Timeout.coerce(timeout)
        # max_retries defaults to 2, or to the retry_policy's own value when one is given.
        policy = retry_policy if retry_policy is not None else RetryPolicy(DEFAULT_MAX_RETRIES)
        if not isinstance(max_retries, NotGiven):
            policy = policy.with_max_retries(max_retries)
        check_bounds(max_concurrency, max_response_size, max_event_size)
        self.max_concurrency = max_concurrency
        self.max_response_size = max_response_size
        self.max_event_size = max_event_size
        self.idempotency_keys = idempotency_keys
        headers = build_headers(
            key, f"anyapi-async/{__version__}", http_referer, x_title, default_headers
        )
        pool = pool_limits(limits, max_connections, max_connections_per_host, keepalive_timeout)
        self.limits = pool
        self._pipeline = Pipeline(
            transport
            or AiohttpTransport(
                session=session,
                max_connections=pool.max_connections,
                max_connections_per_host=pool.max_connections_per_host,
                keepalive_timeout=pool.keepalive_timeout,
                verify=verify,
                trust_env=trust_env,
            ),
            base_url=self.base_url,
            url=url,
            query=query,
            headers=headers,
            key_provider=key_provider,
            timeout=timeout,
            retry_policy=policy,
            max_concurrency=max_concurrency,
            max_response_size=max_response_size,
            max_event_size=max_event_size,
            idempotency_keys=idempotency_keys,
            hooks=with_log_hook(hooks),
        )
        if cache is not None:
            from ._cache import CacheStep  # loaded with the first cache: no cost without one

            self._pipeline.cache = CacheStep(cache)
        self._owner = True
        self._chat: Chat | None = None
        self._models: Models | None = None

    # --- public surface ------------------------------------------------------------------

    @property
    def pipeline(self) -> Pipeline:
        """The request pipeline every call of this client goes through.

        For extensions (instrumentation, routing, caching): observers plug in with
        ``client.pipeline.add_observer(...)``. See the architecture page of the docs.
        """
        return self._pipeline

    @property
    def chat(self) -> Chat:
        """``client.chat.completions.create(...)`` and friends."""
        if self._chat is None:
            self._chat = Chat(self._pipeline, self)
        return self._chat

    @property
    def models(self) -> Models:
        """``await client.models.list()`` and ``await client.models.retrieve(model_id)``."""
        if self._models is None:
            self._models = Models(self._pipeline)
        return self._models

    @property
    def timeout(self) -> Timeout:
        """The limits of each call (a call's own ``timeout=`` overrides them)."""
        return self._pipeline.timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        """Which failures are retried and how long to wait between attempts."""
        return self._pipeline.retry_policy

    @property
    def default_query(self) -> Mapping[str, str]:
        """Query parameters sent with every request (``base_url``'s, then ``default_query``)."""
        return self._pipeline.query

    @property
    def max_retries(self) -> int:
        return self._pipeline.retry_policy.max_retries

    @property
    def closed(self) -> bool:
        return self._pipeline.closed

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
        default_query: Mapping[str, str] | NotGiven = NOT_GIVEN,
    ) -> AsyncClient:
        """A copy with other settings that shares this client's connection pool.

        ``default_headers`` and ``default_query`` add to (or replace entries of) this
        client's. The copy does not own the pool: closing it leaves the original working.
        """
        pipeline = self._pipeline.copy()
        if not isinstance(timeout, NotGiven):
            pipeline.timeout = Timeout.coerce(timeout)
        if not isinstance(retry_policy, NotGiven):
            pipeline.retry_policy = retry_policy
        if not isinstance(max_retries, NotGiven):
            pipeline.retry_policy = pipeline.retry_policy.with_max_retries(max_retries)
        if not isinstance(default_headers, NotGiven):
            for name, value in default_headers.items():
                check_header(name, value)
            pipeline.set_headers({**pipeline.headers, **default_headers})
        if not isinstance(default_query, NotGiven):
            pipeline.set_query({**pipeline.query, **check_query(default_query)})
        copy = object.__new__(AsyncClient)
        copy.__dict__.update(self.__dict__)
        copy._pipeline = pipeline
        copy._owner = False
        copy._chat = None
        copy._models = None
        return copy

    async def aclose(self) -> None:
        """Close the connection pool (unless the session is the caller's); idempotent."""
        pipeline = self._pipeline
        if pipeline.closed:
            return
        if self._owner:
            await pipeline.aclose()
        pipeline.closed = True

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"AsyncClient(base_url={redact_url(self.base_url)!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries})"
        )

    # --- any endpoint --------------------------------------------------------------------

    @overload
    async def post(
        self,
        path: str,
        *,
        cast_to: type[T],
        body: Body = None,
        stream: Literal[False] = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> T: ...

    @overload
    async def post(
        self,
        path: str,
        *,
        cast_to: type[T],
        body: Body = None,
        stream: Literal[True],
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> AsyncStream[T]: ...

    async def post(
        self,
        path: str,
        *,
        cast_to: type[T],
        body: Body = None,
        stream: bool = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> T | AsyncStream[T]:
        """``POST {base_url}{path}``: any endpoint, with everything `create()` has.

        The same auth, headers, retries, timeouts, observers, error mapping and
        ``max_concurrency`` slot as ``chat.completions.create()``: both (and `get`) hand
        the request to the client's `Pipeline`; ``create()`` does not call ``post()``, so
        wrapping or patching ``post()`` does not reach it. A call to
        ``/chat/completions`` is observed (hooks, OpenTelemetry) as a chat completion.
        ``body`` is a dict or a msgspec Struct (sent as JSON) or ``bytes`` (sent as they
        are). ``cast_to`` says what comes back: ``bytes`` (the body as received, not
        looked into), ``str`` (that body decoded as UTF-8 text, as the openai SDK's
        ``cast_to=str``), ``dict`` (a JSON object) or a msgspec type (`ChatCompletion`,
        your own Struct...). With ``stream=True`` the call returns an `AsyncStream` of
        ``cast_to`` items, one per server-sent event, once the first has arrived (for
        ``ChatCompletionChunk`` it is the chat stream ``create(stream=True)`` returns).

        Example:

        ```python
        reply = await client.post(
            "/embeddings", body={"model": "text-embedding-3-small", "input": "hi"}, cast_to=dict
        )
        ```
        """
        options = call_options(extra_headers, extra_query, timeout, max_retries, idempotency_key)
        content = encode_body(body)
        path = check_path(path)
        item_decoder(cast_to)  # an unusable cast_to fails here, before any I/O
        pipeline = self._pipeline
        observed = pipeline.shared.observers
        context = pipeline.context("POST", path, body, stream) if observed else None
        if stream:
            return await pipeline.stream("POST", path, content, options, cast_to, context)
        if cast_to is str:  # the body as text: received as bytes, not looked into, decoded
            data: bytes = await pipeline.send("POST", path, content, options, bytes, context)
            return data.decode("utf-8", "replace")  # type: ignore[return-value]
        return await pipeline.send("POST", path, content, options, cast_to, context)  # type: ignore[no-any-return]

    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: Literal[False] = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> T: ...

    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: Literal[True],
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> AsyncStream[T]: ...

    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: bool = False,
        extra_headers: Mapping[str, str | None] | None = None,
        extra_query: Mapping[str, str | None] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> T | AsyncStream[T]:
        """``GET {base_url}{path}``, as `post` does it, through the same pipeline as
        ``models.list()`` (which does not call ``get()``).

        Example:

        ```python
        models = await client.get("/models", cast_to=dict)
        ```
        """
        options = call_options(extra_headers, extra_query, timeout, max_retries, None)
        path = check_path(path)
        item_decoder(cast_to)
        pipeline = self._pipeline
        observed = pipeline.shared.observers
        context = pipeline.context("GET", path, None, stream) if observed else None
        if stream:
            return await pipeline.stream("GET", path, None, options, cast_to, context)
        if cast_to is str:
            data: bytes = await pipeline.send("GET", path, None, options, bytes, context)
            return data.decode("utf-8", "replace")  # type: ignore[return-value]
        return await pipeline.send("GET", path, None, options, cast_to, context)  # type: ignore[no-any-return]


def _key(api_key: ApiKey, base_url: str) -> tuple[Callable[[], Awaitable[str]] | None, str | None]:
    """A key provider (awaited per request), or a fixed key checked (`resolve_api_key`)."""
    if callable(api_key):
        return api_key, None
    key = resolve_api_key(api_key, base_url)
    if key is None:
        return None, None  # a local server (127.0.0.0/8, localhost): no Authorization header
    if not isinstance(key, str):
        raise TypeError("api_key must be a str or an async callable returning one")
    return None, check_header("Authorization", key)


# --- post() and get(): their arguments, checked before any I/O ----------------------------

_body_encoder = msgspec.json.Encoder()


def check_path(path: object) -> str:
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    if "://" in path:
        raise ValueError(f"path is relative to base_url (e.g. '/models'), got {path!r}")
    if "?" in path or "#" in path:
        raise ValueError("path must not carry a query string: pass extra_query={...}")
    return path if path.startswith("/") else "/" + path


def encode_body(body: object) -> bytes | None:
    """A request body: ``bytes`` as they are, a dict or Struct as JSON, ``None`` for none."""
    if body is None or isinstance(body, bytes):
        return body
    if not isinstance(body, (Mapping, msgspec.Struct)):
        raise TypeError(
            f"body must be a dict, a msgspec Struct or bytes, not {type(body).__name__}"
        )
    try:
        return _body_encoder.encode(body)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"The request body cannot be encoded as JSON: {exc}") from exc


def call_options(
    extra_headers: Mapping[str, str | None] | None,
    extra_query: Mapping[str, str | None] | None,
    timeout: TimeoutTypes | NotGiven,
    max_retries: int | NotGiven,
    idempotency_key: str | None,
) -> dict[str, Any] | None:
    """The options dict `request` takes (what ``create()``'s keyword options make)."""
    options: dict[str, Any] = {}
    if extra_headers:
        options["extra_headers"] = extra_headers
    if extra_query:
        options["extra_query"] = extra_query
    if not isinstance(timeout, NotGiven):
        options["timeout"] = timeout
    if not isinstance(max_retries, NotGiven):
        options["max_retries"] = max_retries
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    return options or None
