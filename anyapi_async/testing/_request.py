"""Checking a chat-completions request body, with OpenAI-worded 400 errors.

Only the fields that shape the default reply are checked; anything else passes through, as
a provider ignores parameters it does not use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["JSON_OBJECT_SCHEMA", "ChatRequest", "RequestError", "parse_request"]

ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_N: Final = 128
MAX_TOP_LOGPROBS: Final = 20
MAX_STOP: Final = 4
#: Above this, ``max_tokens`` is refused (no model writes that much in one reply).
MAX_COMPLETION_TOKENS: Final = 1_000_000
#: Inclusive ranges of the sampling parameters, as the OpenAI API checks them.
NUMBER_RANGES: Final = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
LOGIT_BIAS_RANGE: Final = (-100.0, 100.0)
#: What a ``{"type": "json_object"}`` reply looks like.
JSON_OBJECT_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["answer", "confidence", "tags"],
}


class RequestError(Exception):
    """A request the API would refuse with 400; ``param`` names the offending field."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The fields of a request that the default generator uses."""

    model: str
    messages: list[Mapping[str, Any]]
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] = "auto"
    parallel_tool_calls: bool = True
    response_schema: Mapping[str, Any] | None = None
    #: The request used the legacy ``functions``/``function_call`` fields.
    legacy_functions: bool = False


def parse_request(body: Any) -> ChatRequest:
    """Check ``body`` (decoded JSON) and keep what the generator needs."""
    if not isinstance(body, Mapping):
        raise RequestError("Invalid type for body: expected an object.", code="invalid_type")
    model = _required(body, "model", str, "a string")
    messages = _required(body, "messages", list, "an array")
    if not messages:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise RequestError(
                f"Invalid value for 'messages[{i}].role': expected one of {sorted(ROLES)}.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
    n = _int(body, "n", None, 1, MAX_N) or 1
    max_tokens = _int(body, "max_completion_tokens", None, 1, MAX_COMPLETION_TOKENS)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", None, 1, MAX_COMPLETION_TOKENS)
    for name, (low, high) in NUMBER_RANGES.items():
        _number(body, name, low, high)
    _logit_bias(body.get("logit_bias"))
    logprobs = body.get("logprobs") is True
    top = _int(body, "top_logprobs", None, 0, MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        raise RequestError(
            "Invalid value for 'top_logprobs': 'logprobs' must be true when it is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    options = body.get("stream_options")
    tools = _tools(body.get("tools"))
    tool_choice = body.get("tool_choice")
    legacy = not tools and body.get("functions") is not None
    if legacy:
        # The deprecated form: one function call, reported in message.function_call.
        tools = _tools([{"type": "function", "function": f} for f in _list(body, "functions")])
        tool_choice = _legacy_choice(body.get("function_call"))
    return ChatRequest(
        model=model,
        messages=messages,
        n=n,
        stream=body.get("stream") is True,
        include_usage=isinstance(options, Mapping) and options.get("include_usage") is True,
        max_tokens=max_tokens,
        stop=_stop(body.get("stop")),
        logprobs=logprobs,
        top_logprobs=top or 0,
        seed=_int(body, "seed", None, None, None),
        tools=tools,
        tool_choice=_tool_choice(tool_choice, tools),
        parallel_tool_calls=not legacy and body.get("parallel_tool_calls") is not False,
        response_schema=_response_schema(body.get("response_format")),
        legacy_functions=legacy,
    )


def _required(body: Mapping[str, Any], name: str, kind: type, label: str) -> Any:
    if body.get(name) is None:
        raise RequestError(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    value = body[name]
    if not isinstance(value, kind):
        raise RequestError(
            f"Invalid type for '{name}': expected {label}, but got {type(value).__name__}.",
            param=name,
            code="invalid_type",
        )
    return value


def _int(
    body: Mapping[str, Any], name: str, default: int | None, low: int | None, high: int | None
) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(
            f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(
            f"Invalid '{name}': {value} is outside [{low}, {high}].",
            param=name,
            code="integer_out_of_range",
        )
    return value


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RequestError(
            f"Invalid type for '{name}': expected a number, but got {type(value).__name__}.",
            param=name,
            code="invalid_type",
        )
    if not low <= value <= high:
        raise RequestError(
            f"Invalid '{name}': {value} is outside [{low:g}, {high:g}].",
            param=name,
            code="decimal_out_of_range",
        )


def _logit_bias(value: Any) -> None:
    if value is None:
        return
    low, high = LOGIT_BIAS_RANGE
    if not isinstance(value, Mapping):
        raise RequestError(
            "Invalid type for 'logit_bias': expected an object.",
            param="logit_bias",
            code="invalid_type",
        )
    for token, bias in value.items():
        if not isinstance(bias, (int, float)) or isinstance(bias, bool) or not low <= bias <= high:
            raise RequestError(
                f"Invalid 'logit_bias[{token}]': expected a number in [{low:g}, {high:g}].",
                param="logit_bias",
                code="invalid_value",
            )


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if (
        isinstance(value, list)
        and len(value) <= MAX_STOP
        and all(isinstance(s, str) for s in value)
    ):
        return tuple(s for s in value if s)
    raise RequestError(
        f"Invalid 'stop': expected a string or an array of at most {MAX_STOP} strings.",
        param="stop",
        code="invalid_value",
    )


def _tools(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("Invalid type for 'tools': expected an array.", param="tools")
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise RequestError(
                f"Missing required parameter: 'tools[{i}].function.name'.",
                param=f"tools[{i}].function.name",
                code="missing_required_parameter",
            )
        if function.get("parameters") is not None and not isinstance(
            function["parameters"], Mapping
        ):
            raise RequestError(
                f"Invalid type for 'tools[{i}].function.parameters': expected an object.",
                param=f"tools[{i}].function.parameters",
                code="invalid_type",
            )
    return tuple(value)


def _list(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise RequestError(
            f"Invalid type for '{name}': expected an array.", param=name, code="invalid_type"
        )
    return value


def _legacy_choice(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {"type": "function", "function": {"name": value.get("name")}}
    return value


def _tool_choice(value: Any, tools: tuple[Mapping[str, Any], ...]) -> str | Mapping[str, Any]:
    if value is None:
        return "auto"
    if not tools:
        raise RequestError(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if value in ("none", "auto", "required"):
        return str(value)
    function = value.get("function") if isinstance(value, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(value, Mapping) or name is None:
        raise RequestError(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            param="tool_choice",
            code="invalid_value",
        )
    if all(t["function"]["name"] != name for t in tools):
        raise RequestError(
            f"Invalid value for 'tool_choice': no function named '{name}' in 'tools'.",
            param="tool_choice",
            code="invalid_value",
        )
    return value


def _response_schema(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_SCHEMA
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise RequestError(
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
                code="missing_required_parameter",
            )
        schema = spec.get("schema")
        return schema if isinstance(schema, Mapping) else {"type": "object"}
    raise RequestError(
        "Invalid value for 'response_format.type': expected 'text', 'json_object' or "
        "'json_schema'.",
        param="response_format.type",
        code="invalid_value",
    )
