"""Chat-completions messages in the shapes of the GenAI conventions' content attributes.

``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions`` and
``gen_ai.tool.definitions`` follow the JSON schemas of the OpenTelemetry GenAI semantic
conventions (``gen-ai-input-messages.json`` and friends): a message is ``{"role", "parts"}``,
a part ``{"type": "text" | "tool_call" | "tool_call_response" | "reasoning" | "uri" |
"blob" | ..., ...}``. Pure functions over plain request dicts and response Structs; only
called when content capture is on. Nothing here sees headers, so no key can leak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from .._types import ChatCompletion

__all__ = [
    "input_messages",
    "output_messages",
    "system_instructions",
    "to_json",
    "tool_definitions",
]

Part = dict[str, Any]

_encoder = msgspec.json.Encoder()


def to_json(value: object) -> str:
    """Compact JSON text (span attributes take strings, not structures)."""
    return _encoder.encode(value).decode()


def _arguments(raw: object) -> object:
    # Tool-call arguments are JSON text on the wire; the conventions record the object.
    if isinstance(raw, str):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return raw
    return raw


def _data_url(url: str) -> tuple[str | None, str] | None:
    # data:[<mime>][;base64],<data> -> (mime, data); the conventions want a blob part.
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    mime = head.split(";", 1)[0] or None
    return mime, data


def _content_parts(content: object) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, Sequence):
        return [{"type": "text", "content": str(content)}]
    parts: list[Part] = []
    for item in content:
        if isinstance(item, str):
            parts.append({"type": "text", "content": item})
            continue
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": item.get("text", "")})
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if isinstance(url, str):
                data = _data_url(url)
                if data is not None:
                    mime, blob = data
                    parts.append(
                        {"type": "blob", "modality": "image", "mime_type": mime, "content": blob}
                    )
                else:
                    parts.append({"type": "uri", "modality": "image", "uri": url})
        elif kind == "input_audio":
            audio = item.get("input_audio")
            if isinstance(audio, Mapping):
                fmt = audio.get("format")
                parts.append(
                    {
                        "type": "blob",
                        "modality": "audio",
                        "mime_type": f"audio/{fmt}" if fmt else None,
                        "content": audio.get("data", ""),
                    }
                )
        elif kind == "file":
            file = item.get("file")
            if isinstance(file, Mapping) and file.get("file_id"):
                parts.append({"type": "file", "modality": "document", "file_id": file["file_id"]})
            elif isinstance(file, Mapping) and isinstance(file.get("file_data"), str):
                data = _data_url(file["file_data"])
                mime, blob = data if data is not None else (None, file["file_data"])
                parts.append(
                    {"type": "blob", "modality": "document", "mime_type": mime, "content": blob}
                )
        elif isinstance(kind, str):
            parts.append({**item})  # a generic part: the schema allows any typed object
    return parts


def _tool_call_parts(calls: object) -> list[Part]:
    parts: list[Part] = []
    if not isinstance(calls, Sequence):
        return parts
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name", ""),
                "arguments": _arguments(function.get("arguments")),
            }
        )
    return parts


def input_messages(messages: object) -> list[dict[str, Any]]:
    """``messages`` of a request as the conventions' input messages, in order.

    System and developer messages stay here: Chat Completions carries them in the history.
    """
    out: list[dict[str, Any]] = []
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        return out
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role == "tool":
            parts: list[Part] = [
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": message.get("content"),
                }
            ]
        else:
            parts = _content_parts(message.get("content"))
            parts += _tool_call_parts(message.get("tool_calls"))
            legacy = message.get("function_call")
            if isinstance(legacy, Mapping):
                parts.append(
                    {
                        "type": "tool_call",
                        "name": legacy.get("name", ""),
                        "arguments": _arguments(legacy.get("arguments")),
                    }
                )
        entry: dict[str, Any] = {"role": role, "parts": parts}
        name = message.get("name")
        if name is not None:
            entry["name"] = name
        out.append(entry)
    return out


def system_instructions(body: Mapping[str, Any]) -> list[Part] | None:
    """Instructions sent beside the history (``instructions`` or ``system``), if any."""
    for key in ("instructions", "system"):
        value = body.get(key)
        if value:
            return _content_parts(value)
    return None


def tool_definitions(tools: object) -> list[dict[str, Any]] | None:
    """The request's ``tools`` in the conventions' flat shape."""
    if not isinstance(tools, Sequence) or isinstance(tools, str) or not tools:
        return None
    out: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        kind = tool.get("type", "function")
        function = tool.get(kind) if isinstance(tool.get(kind), Mapping) else None
        if function is None:
            out.append({"type": kind, "name": tool.get("name", kind)})
            continue
        entry: dict[str, Any] = {"type": kind, "name": function.get("name", "")}
        for key in ("description", "parameters"):
            if function.get(key) is not None:
                entry[key] = function[key]
        out.append(entry)
    return out


def output_messages(
    completion: ChatCompletion, *, finish_reason: bool = True
) -> list[dict[str, Any]]:
    """One output message per choice, with its finish reason unless ``finish_reason=False``
    (the latest conventions deprecate it there for ``gen_ai.response.finish_reasons``)."""
    out: list[dict[str, Any]] = []
    for choice in completion.choices:
        message = choice.message
        parts: list[Part] = []
        reasoning = message.reasoning_content or message.reasoning
        if reasoning:
            parts.append({"type": "reasoning", "content": reasoning})
        if message.content is not None:
            parts.append({"type": "text", "content": message.content})
        if message.refusal:
            parts.append({"type": "refusal", "content": message.refusal})
        for call in message.tool_calls or ():
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": call.function.name,
                    "arguments": _arguments(call.function.arguments),
                }
            )
        if message.function_call is not None:
            parts.append(
                {
                    "type": "tool_call",
                    "name": message.function_call.name,
                    "arguments": _arguments(message.function_call.arguments),
                }
            )
        entry: dict[str, Any] = {"role": message.role or "assistant", "parts": parts}
        if finish_reason:
            entry["finish_reason"] = choice.finish_reason or "error"
        out.append(entry)
    return out
