"""Decoding response bytes into Structs: a strict fast path, a tolerant slow path."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ._types import ChatCompletion, ChatCompletionChunk

__all__ = [
    "CHUNK_DECODER",
    "COMPLETION_DECODER",
    "JSON_DECODER",
    "decode_lenient",
    "decoder_for",
]

T = TypeVar("T")

# One decoder per type, built once: msgspec caches the type's layout inside it.
COMPLETION_DECODER = msgspec.json.Decoder(ChatCompletion)
CHUNK_DECODER = msgspec.json.Decoder(ChatCompletionChunk)
JSON_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
#: ``cast_to`` -> its decoder; ``dict`` means a JSON object.
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {
    ChatCompletion: COMPLETION_DECODER,
    ChatCompletionChunk: CHUNK_DECODER,
    dict: msgspec.json.Decoder(dict[str, Any]),
}

#: Content part types that carry reasoning rather than the answer.
_THINKING = ("thinking", "reasoning")


def _drop_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_nulls(v) for v in obj]
    return obj


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    text = part.get("text")
    if isinstance(text, str):
        return text
    inner = part.get("thinking") or part.get("reasoning")
    if isinstance(inner, list):
        return "".join(_part_text(p) for p in inner)
    return inner if isinstance(inner, str) else ""


def _encode_arguments(function: Any) -> None:
    # Some servers send tool arguments as a JSON object instead of a JSON string.
    if isinstance(function, dict) and isinstance(function.get("arguments"), (dict, list)):
        function["arguments"] = msgspec.json.encode(function["arguments"]).decode()


def _normalise_messages(obj: Any) -> None:
    if not isinstance(obj, dict):
        return
    for choice in obj.get("choices") or ():
        for key in ("message", "delta"):
            message = choice.get(key) if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict):
                    _encode_arguments(call.get("function"))
            _encode_arguments(message.get("function_call"))
            if isinstance(message.get("content"), list):
                _flatten_content_parts(message)


def _flatten_content_parts(message: dict[str, Any]) -> None:
    # Some providers (Mistral's reasoning models, for one) answer `content` as a list of
    # typed parts: text parts become the content, thinking parts the reasoning.
    parts = message["content"]
    thinking = [p for p in parts if isinstance(p, dict) and p.get("type") in _THINKING]
    message["content"] = "".join(_part_text(p) for p in parts if p not in thinking)
    if thinking and "reasoning_content" not in message:
        message["reasoning_content"] = "".join(_part_text(p) for p in thinking)


def decoder_for(cast_to: Any) -> msgspec.json.Decoder[Any]:
    """The decoder of a ``cast_to`` type (``dict``, a Struct, any type msgspec handles).

    Built once per type and kept; raises `TypeError` for a type msgspec cannot decode.
    """
    decoder = _DECODERS.get(cast_to)
    if decoder is None:
        try:
            decoder = msgspec.json.Decoder(cast_to)
        except TypeError as exc:
            raise TypeError(
                f"cast_to must be bytes, dict or a type msgspec can decode, not {cast_to!r}"
            ) from exc
        _DECODERS[cast_to] = decoder
    return decoder


def decode_lenient(data: bytes, type_: type[T]) -> T:
    """Decode ``data`` when the strict decoder refused it.

    Providers send ``null`` for fields that should be absent (``"index": null``), floats
    for integers (``"created": 1.7e9``), numbers as strings, and ``content`` as a list of
    parts; dropping nulls, joining parts and letting msgspec coerce types recovers those.
    Raises `msgspec.ValidationError` or `msgspec.DecodeError` when the body is not a
    chat-completions object at all.
    """
    obj = _drop_nulls(JSON_DECODER.decode(data))
    _normalise_messages(obj)
    return msgspec.convert(obj, type_, strict=False)
