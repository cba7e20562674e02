"""Decoding response bytes into Structs: a strict fast path, a tolerant slow path."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ._types import ChatCompletion, ChatCompletionChunk

__all__ = ["CHUNK_DECODER", "COMPLETION_DECODER", "JSON_DECODER", "decode_lenient"]

T = TypeVar("T")

# One decoder per type, built once: msgspec caches the type's layout inside it.
COMPLETION_DECODER = msgspec.json.Decoder(ChatCompletion)
CHUNK_DECODER = msgspec.json.Decoder(ChatCompletionChunk)
JSON_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def _drop_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_nulls(v) for v in obj]
    return obj


def decode_lenient(data: bytes, type_: type[T]) -> T:
    """Decode ``data`` when the strict decoder refused it.

    Providers send ``null`` for fields that should be absent (``"index": null``), floats
    for integers (``"created": 1.7e9``) and numbers as strings; dropping nulls and letting
    msgspec coerce types recovers those. Raises `msgspec.ValidationError` or
    `msgspec.DecodeError` when the body is not a chat-completions object at all.
    """
    return msgspec.convert(_drop_nulls(JSON_DECODER.decode(data)), type_, strict=False)
