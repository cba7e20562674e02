"""``client.chat.completions`` and ``client.models``: checking arguments and building bodies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import msgspec

from ._chat_stream import ChatCompletionStreamManager
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    CompletionCreateParams,
    ModelList,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._client import AsyncClient
    from ._streaming import AsyncStream

__all__ = ["Chat", "Completions", "Models"]

#: Keyword arguments that configure the call instead of going into the JSON body.
CLIENT_OPTIONS: Final = frozenset(
    ("extra_headers", "extra_query", "extra_body", "timeout", "max_retries", "idempotency_key")
)
WIRE_PARAMS: Final = frozenset(CompletionCreateParams.__annotations__) - CLIENT_OPTIONS
MAX_TOP_LOGPROBS: Final = 20

#: A message dict, or a response message sent back as part of the history.
MessageInput = ChatCompletionMessageParam | ChatCompletionMessage

_encoder = msgspec.json.Encoder()
_completion_decoder = msgspec.json.Decoder(ChatCompletion)
_models_decoder = msgspec.json.Decoder(ModelList)


def _message_from_struct(message: msgspec.Struct) -> dict[str, Any]:
    # A response message sent back in the history: keep what a request message may carry.
    out: dict[str, Any] = {}
    for name in ("role", "content", "name", "tool_calls", "function_call", "tool_call_id"):
        value = getattr(message, name, None)
        if value is not None:
            out[name] = msgspec.to_builtins(value)
    if "tool_calls" in out or "function_call" in out:
        out.setdefault("content", None)
    return out


def check_messages(messages: object) -> list[Any]:
    """Validate ``messages`` before any I/O; Structs become dicts."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages must not be empty")
    out = messages if isinstance(messages, list) else list(messages)
    for i, message in enumerate(out):
        if isinstance(message, Mapping):
            role = message.get("role")
        elif isinstance(message, msgspec.Struct):
            if out is messages:
                out = list(out)
            message = out[i] = _message_from_struct(message)
            role = message.get("role")
        else:
            raise TypeError(f"messages[{i}] must be a dict, not {type(message).__name__}")
        if not isinstance(role, str) or not role:
            raise ValueError(
                f"messages[{i}] has no 'role' (one of developer, system, user, assistant, tool)"
            )
    return out


def build_body(
    model: object, messages: object, stream: bool, params: dict[str, Any]
) -> tuple[bytes, dict[str, Any] | None]:
    """The JSON body of a chat-completions request and the call's client options."""
    if not isinstance(model, str) or not model:
        raise ValueError("model is required: pass model='<model id>'")
    payload: dict[str, Any] = {"model": model, "messages": check_messages(messages)}
    options = None
    if params:
        unknown = params.keys() - WIRE_PARAMS - CLIENT_OPTIONS
        if unknown:
            raise TypeError(
                f"Unknown parameter(s) {', '.join(sorted(unknown))}; pass gateway-specific "
                "fields in extra_body={...}"
            )
        options = {k: params.pop(k) for k in CLIENT_OPTIONS & params.keys()}
        top = params.get("top_logprobs")
        if top is not None and (
            isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS
        ):
            raise ValueError(
                f"top_logprobs must be an int from 0 to {MAX_TOP_LOGPROBS}, got {top!r}"
            )
        n = params.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        payload.update(params)
        extra_body = options.get("extra_body")
        if extra_body:
            if not isinstance(extra_body, Mapping):
                raise TypeError("extra_body must be a dict")
            payload.update(extra_body)
    if stream:
        payload["stream"] = True
    try:
        return _encoder.encode(payload), options
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"The request cannot be encoded as JSON: {exc}") from exc


class Completions:
    """``client.chat.completions``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[False] = False,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: Literal[True],
        **params: Unpack[CompletionCreateParams],
    ) -> AsyncStream[ChatCompletionChunk]: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: bool,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        stream: bool = False,
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """Create a chat completion.

        Every chat-completions parameter is accepted by name (``max_tokens``, ``tools``,
        ``logprobs``…) and sent only when given. ``extra_body``, ``extra_headers`` and
        ``extra_query`` pass through; ``timeout`` and ``max_retries`` override the
        client's for this call. With ``stream=True`` the call returns an `AsyncStream`
        once the first event has arrived.

        Example::

            c = await client.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "Hello!"}], max_tokens=300
            )
        """
        body, options = build_body(model, messages, stream, dict(params))
        client = self._client
        request = await client._build_request(
            "POST", "/chat/completions", body, stream=stream, options=options
        )
        if stream:
            return await client._send_stream(request, options)
        return await client._send_json(request, options, _completion_decoder)

    def stream(
        self,
        *,
        model: str,
        messages: Sequence[MessageInput],
        **params: Unpack[CompletionCreateParams],
    ) -> ChatCompletionStreamManager:
        """Stream a completion with helpers; use with ``async with``.

        Example::

            async with client.chat.completions.stream(model=m, messages=msgs) as s:
                async for text in s.text_deltas():
                    print(text, end="", flush=True)
                final = await s.get_final_completion()
        """
        body, options = build_body(model, messages, True, dict(params))

        async def open_stream() -> AsyncStream[ChatCompletionChunk]:
            client = self._client
            request = await client._build_request(
                "POST", "/chat/completions", body, stream=True, options=options
            )
            return await client._send_stream(request, options)

        return ChatCompletionStreamManager(open_stream)


class Chat:
    """``client.chat``."""

    def __init__(self, client: AsyncClient) -> None:
        self.completions = Completions(client)


class Models:
    """``client.models``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> ModelList:
        """The models the endpoint serves (``GET /models``)."""
        client = self._client
        request = await client._build_request("GET", "/models", None)
        return await client._send_json(request, None, _models_decoder)
