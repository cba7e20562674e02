"""Chat-completions requests without I/O: message checks, parameter checks, the JSON body.

A leaf module: ``chat.completions`` (`anyapi_async._resources`), the tool runner, the stream
helpers and the job runner all import it, and it imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from ._types import ChatCompletionMessage, ChatCompletionMessageParam, CompletionCreateParams

__all__ = [
    "CHAT_PATH",
    "CLIENT_OPTIONS",
    "MAX_TOP_LOGPROBS",
    "TOOL_CHOICES",
    "WIRE_PARAMS",
    "MessageInput",
    "build_body",
    "check_messages",
    "check_params",
]

#: Keyword arguments that configure the call instead of going into the JSON body.
CLIENT_OPTIONS: Final = frozenset(
    ("extra_headers", "extra_query", "extra_body", "timeout", "max_retries", "idempotency_key",
     "cache")
)
WIRE_PARAMS: Final = frozenset(CompletionCreateParams.__annotations__) - CLIENT_OPTIONS
MAX_TOP_LOGPROBS: Final = 20
TOOL_CHOICES: Final = ("none", "auto", "required")
CHAT_PATH: Final = "/chat/completions"

#: A message dict, or a response message sent back as part of the history.
MessageInput = ChatCompletionMessageParam | ChatCompletionMessage

_encoder = msgspec.json.Encoder()


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
    if type(messages) is list:
        # The usual call, a list of dicts, checked without the ABCs' isinstance (a Python
        # call each, and slow when the caches are cold, as they are between requests).
        for message in messages:
            if type(message) is not dict:
                break
            role = message.get("role")
            if type(role) is not str or not role:
                break
        else:
            if messages:
                return messages
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


_COUNTS: Final = ("max_tokens", "max_completion_tokens", "n")
_NUMBERS: Final = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
#: The parameters `check_params` looks at: a call with none of them skips it.
_CHECKED: Final = frozenset((*_COUNTS, *_NUMBERS, "logprobs", "top_logprobs", "tool_choice"))
_ACCEPTED: Final = WIRE_PARAMS | CLIENT_OPTIONS


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse values of the common parameters that no server accepts, before any I/O."""
    for name in _COUNTS:
        value = params.get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name in _NUMBERS:
        value = params.get(name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            # NaN and infinities would go out as JSON null: say so instead.
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    logprobs = params.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise TypeError(f"logprobs must be True or False, not {type(logprobs).__name__}")
    top = params.get("top_logprobs")
    if top is not None:
        if not _is_int(top) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise ValueError(
                f"top_logprobs must be an int from 0 to {MAX_TOP_LOGPROBS}, got {top!r}"
            )
        if logprobs is not True:
            raise ValueError("top_logprobs needs logprobs=True")
    if "tool_choice" in params:
        _check_tool_choice(params["tool_choice"])


def _check_tool_choice(choice: object) -> None:
    if isinstance(choice, str):
        if choice in TOOL_CHOICES:
            return
    elif isinstance(choice, Mapping) and isinstance(choice.get("type"), str):
        function = choice.get("function")
        if choice["type"] != "function" or (
            isinstance(function, Mapping)
            and isinstance(function.get("name"), str)
            and function["name"]
        ):
            return
    raise ValueError(
        "tool_choice must be 'none', 'auto', 'required' or a named tool "
        f"({{'type': 'function', 'function': {{'name': ...}}}}), got {choice!r}"
    )


def build_body(
    model: object,
    messages: object,
    stream: bool,
    params: dict[str, Any],
    *,
    stream_usage: bool = False,
) -> tuple[bytes, dict[str, Any] | None]:
    """The JSON body of a chat-completions request and the call's client options.

    ``stream_usage`` (asked by an observer, never on by default) adds
    ``"stream_options": {"include_usage": true}`` to a streamed request that has no
    ``stream_options`` of its own, so the stream ends with a usage chunk.
    """
    if not isinstance(model, str):
        if model is None:
            raise TypeError("model is required: pass model='<model id>'")
        raise TypeError(f"model must be a str (a model id), not {type(model).__name__}")
    if not model:
        raise ValueError("model is required (it is empty): pass model='<model id>'")
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be True or False, not {type(stream).__name__}")
    payload: dict[str, Any] = {"model": model, "messages": check_messages(messages)}
    options = None
    if params:
        # Set tests without building sets: the usual call has a few known keys.
        if not _ACCEPTED.issuperset(params):
            unknown = params.keys() - _ACCEPTED
            raise TypeError(
                f"Unknown parameter(s) {', '.join(sorted(unknown))}; pass gateway-specific "
                "fields in extra_body={...}"
            )
        if not CLIENT_OPTIONS.isdisjoint(params):
            options = {k: params.pop(k) for k in CLIENT_OPTIONS & params.keys()}
            cache = options.get("cache", True)
            if cache is not True and cache is not False and cache != "refresh":
                raise ValueError(f"cache must be True, False or 'refresh', not {cache!r}")
        if not _CHECKED.isdisjoint(params):
            check_params(params)
        payload.update(params)
        extra_body = options.get("extra_body") if options else None
        if extra_body:
            if not isinstance(extra_body, Mapping):
                raise TypeError("extra_body must be a dict")
            payload.update(extra_body)
    if stream:
        payload["stream"] = True
        if stream_usage and "stream_options" not in payload:
            payload["stream_options"] = {"include_usage": True}
    try:
        return _encoder.encode(payload), options
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"The request cannot be encoded as JSON: {exc}") from exc

