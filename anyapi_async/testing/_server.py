"""``LocalServer``: a real chat-completions server on 127.0.0.1 for demos and tests."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import random
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from ssl import SSLContext
from types import TracebackType
from typing import Any, Final

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from ._deliver import deliver
from ._record import RecordedRequest, json_or_none, masked
from ._reply import GenerationTooLarge, completion_body, plan_answer, stream_chunks
from ._request import RequestError, parse_request
from ._schema import SchemaTooLarge
from ._script import DONE_EVENT, Faults, Generated, Hang, Scripted, sse_event

__all__ = [
    "ANY_MODEL",
    "DEFAULT_MAX_GENERATION",
    "DEFAULT_MAX_RECORDS",
    "DEFAULT_MAX_RECORD_BODY",
    "DEFAULT_MODEL",
    "RESET_PATH",
    "LocalServer",
]

DEFAULT_MODEL: Final = "anyapi-local"
#: ``LocalServer(models=ANY_MODEL)`` answers every model id, as before model checks existed.
ANY_MODEL: Final = "*"
#: Seconds aiohttp may wait for handlers at shutdown; ours are cancelled first, so this
#: only bounds a stuck one.
SHUTDOWN_TIMEOUT: Final = 1.0
#: A bigger body is refused with 413 (a 16 MB body of tiny JSON values decodes to a few
#: hundred MB of Python objects, the most one request may cost).
MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
#: Requests kept in ``LocalServer.requests``: the newest ones, so a long-lived server used by
#: other processes stays small (a record is about 1 KB plus its body).
DEFAULT_MAX_RECORDS: Final = 1_000
#: Bytes of a body kept in its record; the rest is dropped (``RecordedRequest.truncated``).
DEFAULT_MAX_RECORD_BODY: Final = 64 * 1024
#: Generated tokens one reply may carry, each ``top_logprobs`` alternative counted as one
#: (``n`` x tokens x (1 + ``top_logprobs``)); a bigger request is refused with 400. The
#: biggest default replies (about 100 tokens) fit with ``n=128`` without logprobs, or
#: ``n=32`` with ``top_logprobs=20``.
DEFAULT_MAX_GENERATION: Final = 100_000
#: ``POST`` here forgets queued responses, records and counters, like ``reset()``.
RESET_PATH: Final = "/_anyapi/reset"
RATE_LIMIT_REQUESTS: Final = 10_000
RATE_LIMIT_TOKENS: Final = 2_000_000
_NO_FAULTS: Final = Faults()
_MISSING_KEY: Final = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
# OpenAI's words without the key itself: the key never appears in a response or a log.
_WRONG_KEY: Final = "Incorrect API key provided."
_NOT_JSON: Final = (
    "We could not parse the JSON body of your request. The API expects a JSON payload, "
    "but what was sent was not valid JSON."
)
_encode = msgspec.json.encode


class LocalServer:
    """An OpenAI-compatible chat-completions server on a free local port.

    It answers ``POST /v1/chat/completions`` (streaming or not) and ``GET /v1/models`` with
    deterministic replies derived from the request, can be scripted with exact responses
    and faults, and records the last ``max_records`` requests:

    ```python
    async with LocalServer() as server:
        client = AsyncClient(base_url=server.base_url)  # a loopback URL needs no key
        server.queue(ErrorResponse(429, headers={"Retry-After": "1"}))
        ...
        assert server.requests[-1].json["model"] == "gpt-4o"
    ```

    Like a real gateway it answers ``404 model_not_found`` to a model it does not serve:
    ``model`` (default ``"anyapi-local"``) and the ids in ``models``. ``models=ANY_MODEL``
    (``"*"``) serves every model id, which is what most tests of client code want.

    No key is needed: requests with or without ``Authorization`` are answered. With
    ``require_key=True`` a request without a Bearer key gets ``401``, as from a real API;
    with ``require_key="sk-..."`` only that key is accepted.

    What a long-lived server holds is bounded: ``max_records`` requests are kept (the oldest
    are dropped), each body cut to ``max_record_body`` bytes in its record, and one reply
    may carry at most ``max_generation`` generated tokens (``n`` x tokens x (1 +
    ``top_logprobs``); more is refused with 400). None lifts a bound. ``POST
    /_anyapi/reset`` (``RESET_PATH``) does what ``reset()`` does, for another process.

    With ``ssl`` (a server-side ``SSLContext``) it serves HTTPS, for certificate tests.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        model: str = DEFAULT_MODEL,
        models: Iterable[str] | str = (),
        ssl: SSLContext | None = None,
        require_key: bool | str = False,
        max_records: int | None = DEFAULT_MAX_RECORDS,
        max_record_body: int | None = DEFAULT_MAX_RECORD_BODY,
        max_generation: int | None = DEFAULT_MAX_GENERATION,
    ) -> None:
        if isinstance(require_key, str):
            if not require_key.strip():
                raise ValueError("require_key must be True, False or a non-empty key")
        elif not isinstance(require_key, bool):
            raise TypeError(
                f"require_key must be a bool or a key string, got {type(require_key).__name__}"
            )
        _check_limit("max_records", max_records, 0)
        _check_limit("max_record_body", max_record_body, 0)
        _check_limit("max_generation", max_generation, 1)
        self.host = host
        self.ssl = ssl
        self.seed = seed
        self.model = model
        listed = [models] if isinstance(models, str) else list(models)
        for name in listed:
            if not isinstance(name, str) or not name:
                raise TypeError(f"models must hold non-empty strings, got {name!r}")
        #: Every model id is served (``models`` held ``ANY_MODEL``).
        self.any_model = ANY_MODEL in listed
        #: The model ids served and listed by ``GET /v1/models``, ``model`` first.
        self.models: tuple[str, ...] = tuple(
            dict.fromkeys([model, *(m for m in listed if m != ANY_MODEL)])
        )
        #: Whether requests need a Bearer key (any, or the one given as ``require_key``).
        self.require_key = require_key is not False
        # The key itself has no public attribute, so nothing prints it by accident.
        self._key = require_key if isinstance(require_key, str) else None
        self.max_records = max_records
        self.max_record_body = max_record_body
        self.max_generation = max_generation
        #: The last ``max_records`` requests received, oldest first.
        self.requests: list[RecordedRequest] = []
        #: Records dropped from ``requests`` to keep ``max_records``, since start or reset.
        self.dropped_requests = 0
        self._port = port
        self._runner: web.AppRunner | None = None
        self._queue: deque[Scripted] = deque()
        self._default: Scripted | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Transports seen (weakly, so closed connections cost nothing) and how many.
        self._transports: weakref.WeakSet[Any] = weakref.WeakSet()
        self._connections = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._count = 0
        ids = random.Random(seed)
        self._tag = f"{ids.getrandbits(64):016x}"
        self._ids = ids

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> LocalServer:
        """Bind and start serving; returns the server."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_post(RESET_PATH, self._reset)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port, ssl_context=self.ssl).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner
        return self

    async def aclose(self) -> None:
        """Stop serving, ending stalled and hung responses at once. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Abort every connection rather than close it: close() keeps a socket open until a
        # client that stopped reading drains it, which may be never in a test.
        server = runner.server
        for handler in server.connections if server is not None else ():
            if handler.transport is not None:
                handler.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> LocalServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        self._require_started()
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``https`` with ``ssl``), without the ``/v1`` prefix."""
        self._require_started()
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The base URL to give a client: ``http://HOST:PORT/v1``."""
        return self.url + "/v1"

    def _require_started(self) -> None:
        if self._runner is None:
            raise RuntimeError("LocalServer is not running: use 'async with' or await start()")

    # --- scripting and recording -------------------------------------------------------

    def queue(self, *responses: Scripted) -> None:
        """Answer the next chat-completions requests with ``responses``, in order."""
        for response in responses:
            if not isinstance(response, Scripted):
                raise TypeError(f"expected a scripted response, got {type(response).__name__}")
        self._queue.extend(responses)

    def set_default(self, response: Scripted | None) -> None:
        """Answer with ``response`` when the queue is empty (None: the generator)."""
        self._default = response

    @property
    def queued(self) -> int:
        """How many scripted responses wait in the queue."""
        return len(self._queue)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """Recorded requests for ``path`` (``"/chat/completions"`` or with ``/v1``)."""
        return [r for r in self.requests if r.path in (path, "/v1" + path)]

    @property
    def in_flight(self) -> int:
        """Chat-completions requests being answered now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most chat-completions requests answered at once since start or reset."""
        return self._max_in_flight

    @property
    def connections(self) -> int:
        """Distinct TCP connections that carried requests since start or reset."""
        return self._connections

    def reset(self) -> None:
        """Forget queued responses, recorded requests and counters."""
        self._queue.clear()
        self.requests.clear()
        self.dropped_requests = 0
        self._transports.clear()
        self._connections = 0
        self._max_in_flight = self._in_flight

    # --- handlers ----------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        record, body = await self._record(request)
        denied = self._check_auth(request, record)
        if denied is not None:
            return denied
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            scripted = self._queue.popleft() if self._queue else self._default
            return await self._answer(request, record, body, scripted)
        finally:
            self._in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    async def _answer(
        self,
        request: web.Request,
        record: RecordedRequest,
        body: bytes,
        scripted: Scripted | None,
    ) -> web.StreamResponse:
        if isinstance(scripted, Hang):
            await asyncio.get_running_loop().create_future()  # until cancelled
        if scripted is None or isinstance(scripted, Generated):
            return await self._generate(request, record, body, scripted)
        content_type, events, sse = scripted.render()
        headers = self._headers(record, content_type, scripted.headers)
        return await deliver(
            request,
            status=scripted.status,
            headers=headers,
            events=events,
            sse=sse,
            faults=scripted.faults,
        )

    async def _generate(
        self,
        request: web.Request,
        record: RecordedRequest,
        body: bytes,
        scripted: Generated | None,
    ) -> web.StreamResponse:
        decoded = json_or_none(body)  # the whole body: the record may hold only its start
        if decoded is None:
            return self._error(record, 400, _NOT_JSON)
        try:
            req = parse_request(decoded)
        except RequestError as exc:
            return self._error(record, 400, exc.message, param=exc.param, code=exc.code)
        if not self.serves(req.model):
            return self._model_not_found(record, req.model)
        try:
            answer = plan_answer(
                req,
                server_seed=self.seed,
                text=scripted.text if scripted is not None else None,
                max_generation=self.max_generation,
            )
        except SchemaTooLarge as exc:
            return self._error(
                record, 400, f"Invalid schema: {exc}.", param=None, code="schema_too_large"
            )
        except GenerationTooLarge as exc:
            return self._error(record, 400, f"{exc}.", code="generation_too_large")
        cid = f"chatcmpl-{self._ids.getrandbits(120):030x}"
        created = int(time.time())
        extra = scripted.headers if scripted is not None else {}
        faults = scripted.faults if scripted is not None else _NO_FAULTS
        status = scripted.status if scripted is not None else 200
        events: Iterable[bytes]
        if not req.stream:
            reply = _encode(completion_body(answer, id=cid, created=created))
            headers = self._headers(record, "application/json", extra, answer.prompt_tokens)
            if faults is _NO_FAULTS:
                return web.Response(status=status, body=reply, headers=headers)
            events, sse = [reply], False
        else:
            # Encoded as sent, so a slow reader holds one chunk, not the whole reply.
            chunks = stream_chunks(answer, id=cid, created=created)
            events = itertools.chain(map(sse_event, chunks), [DONE_EVENT])
            headers = self._headers(
                record, "text/event-stream; charset=utf-8", extra, answer.prompt_tokens
            )
            sse = True
        return await deliver(
            request, status=status, headers=headers, events=events, sse=sse, faults=faults
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        record, _ = await self._record(request)
        denied = self._check_auth(request, record)
        if denied is not None:
            return denied
        body = {"object": "list", "data": [self._model_object(m) for m in self.models]}
        return self._json(record, body)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        record, _ = await self._record(request)
        denied = self._check_auth(request, record)
        if denied is not None:
            return denied
        model = request.match_info["model"]
        if not self.serves(model):
            return self._model_not_found(record, model)
        return self._json(record, self._model_object(model))

    def serves(self, model: str) -> bool:
        """Whether requests for ``model`` are answered (else ``404 model_not_found``)."""
        return self.any_model or model in self.models

    def _model_not_found(self, record: RecordedRequest, model: str) -> web.Response:
        # OpenAI's wording and shape; param is null there too.
        message = f"The model `{model}` does not exist or you do not have access to it."
        return self._error(record, 404, message, code="model_not_found")

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "anyapi"}

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        record, _ = await self._record(request)
        denied = self._check_auth(request, record)
        if denied is not None:
            return denied
        self.reset()  # the reset request's own record goes too
        return self._json(record, {"object": "anyapi.reset", "reset": True})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        record, _ = await self._record(request)
        message = f"Unknown request URL: {request.method} {request.path}."
        return self._error(record, 404, message, code="unknown_url")

    # --- helpers -----------------------------------------------------------------------

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, bytes]:
        """Record ``request`` (its body cut to ``max_record_body``); the record and whole body."""
        self._count += 1
        request_id = f"req_{self._tag}{self._count:016x}"
        transport = request.transport
        if transport is not None and transport not in self._transports:
            self._transports.add(transport)
            self._connections += 1
        body = await request.read()
        cap = self.max_record_body
        record = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            masked(request.headers.items()),
            body if cap is None or len(body) <= cap else body[:cap],
            request_id,
            size=len(body),
        )
        records = self.requests
        records.append(record)
        if self.max_records is not None and len(records) > self.max_records:
            # A list, not a deque, so that it slices and compares like one; deleting from
            # the front of a 1,000-item list costs well under a microsecond.
            excess = len(records) - self.max_records
            del records[:excess]
            self.dropped_requests += excess
        return record, body

    def _check_auth(self, request: web.Request, record: RecordedRequest) -> web.Response | None:
        if not self.require_key:
            return None
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return self._error(record, 401, _MISSING_KEY)
        if self._key is not None and not hmac.compare_digest(key.encode(), self._key.encode()):
            return self._error(record, 401, _WRONG_KEY, code="invalid_api_key")
        return None

    def _headers(
        self,
        record: RecordedRequest,
        content_type: str,
        extra: Mapping[str, str] | None = None,
        tokens: int = 0,
    ) -> CIMultiDict[str]:
        n = self._count
        headers = CIMultiDict(
            {
                "Content-Type": content_type,
                "x-request-id": record.request_id,
                "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
                "x-ratelimit-remaining-requests": str(
                    RATE_LIMIT_REQUESTS - 1 - n % RATE_LIMIT_REQUESTS
                ),
                "x-ratelimit-reset-requests": "6ms",
                "x-ratelimit-limit-tokens": str(RATE_LIMIT_TOKENS),
                "x-ratelimit-remaining-tokens": str(max(0, RATE_LIMIT_TOKENS - tokens)),
                "x-ratelimit-reset-tokens": "0s",
            }
        )
        for name, value in (extra or {}).items():  # scripted headers win, whatever their case
            headers[name] = value
        if content_type.startswith("text/event-stream"):
            headers.setdefault("Cache-Control", "no-cache")
        return headers

    def _json(self, record: RecordedRequest, body: Any, status: int = 200) -> web.Response:
        headers = self._headers(record, "application/json")
        return web.Response(status=status, body=_encode(body), headers=headers)

    def _error(
        self,
        record: RecordedRequest,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> web.Response:
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        return self._json(record, {"error": error}, status)


def _check_limit(name: str, value: int | None, low: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low} or None, got {value}")
