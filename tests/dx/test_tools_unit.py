"""Describing functions as tools and invoking them on model arguments (no sockets)."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, Literal

import msgspec
import pytest

from anyapi_async._tools import (
    FunctionTool,
    _execute,
    function_tool,
    parse_docstring,
    run_tools,
)
from anyapi_async._types import ChatCompletion, ChatCompletionMessageToolCall, FunctionCall


@function_tool
async def get_weather(city: str, unit: Literal["C", "F"] = "C", days: int = 1) -> dict[str, Any]:
    """Current weather in a city.

    Looks it up in the stand-in table.

    Args:
        city: the city name, e.g. "Paris".
            Case does not matter.
        unit: temperature unit.

    Returns:
        A dict.
    """
    return {"city": city, "unit": unit, "days": days}


def add(a: int, b: int) -> int:
    """Add two integers.

    :param a: first term
    :param int b: second term
    :returns: the sum
    """
    return a + b


def call(name: str, arguments: str, id: str = "call_1") -> ChatCompletionMessageToolCall:
    return ChatCompletionMessageToolCall(
        id=id, function=FunctionCall(name=name, arguments=arguments)
    )


def test_google_docstring() -> None:
    """Description without sections; Args entries (with continuation lines) per parameter."""
    description, params = parse_docstring(get_weather.fn.__doc__)
    assert description == "Current weather in a city.\n\nLooks it up in the stand-in table."
    assert params == {
        "city": 'the city name, e.g. "Paris". Case does not matter.',
        "unit": "temperature unit.",
    }


def test_sphinx_docstring() -> None:
    """:param lines become parameter descriptions; :returns: is left out."""
    assert parse_docstring(add.__doc__) == (
        "Add two integers.",
        {"a": "first term", "b": "second term"},
    )


def test_param_definition() -> None:
    """Name, description, typed parameters, required list and defaults are described."""
    param = get_weather.param
    assert param["type"] == "function"
    function = param["function"]
    assert function["name"] == "get_weather"
    assert function["description"].startswith("Current weather in a city.")
    schema = function["parameters"]
    assert schema["type"] == "object"
    assert schema["required"] == ["city"]
    assert schema["properties"]["city"]["description"].startswith("the city name")
    assert schema["properties"]["unit"] == {
        "enum": ["C", "F"],
        "type": "string",
        "default": "C",
        "description": "temperature unit.",
    }
    assert schema["additionalProperties"] is False
    assert "title" not in schema
    assert "strict" not in function  # defaults: not strict


def test_all_required_is_strict() -> None:
    """A function with only required, describable parameters is strict."""
    tool = FunctionTool(add)
    assert tool.strict is True
    assert tool.param["function"]["strict"] is True
    assert tool.param["function"]["parameters"]["required"] == ["a", "b"]


def test_annotated_description_wins_over_docstring() -> None:
    """An explicit msgspec.Meta description is kept."""

    def f(x: Annotated[int, msgspec.Meta(description="from Meta", ge=0)]) -> int:
        """F.

        Args:
            x: from docstring
        """
        return x

    prop = FunctionTool(f).parameters["properties"]["x"]
    assert prop["description"] == "from Meta"
    assert prop["minimum"] == 0


def test_refusals_at_definition() -> None:
    """Bad names, *args and impossible strictness fail when the tool is built."""

    def star(*values: int) -> int:
        return sum(values)

    with pytest.raises(TypeError, match=r"\*values cannot be described"):
        FunctionTool(star)
    with pytest.raises(ValueError, match="must be 1-64"):
        FunctionTool(add, name="add numbers")
    with pytest.raises(ValueError, match="cannot be strict"):
        function_tool(strict=True)(get_weather.fn)

    def g(x: UndefinedName) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(TypeError, match="Cannot describe tool"):
        FunctionTool(g)


def test_decorator_with_options_and_still_callable() -> None:
    """Options rename the tool; calling it calls the function."""
    tool = function_tool(name="sum2", description="Sum.")(add)
    assert tool.name == "sum2" and tool.param["function"]["description"] == "Sum."
    assert tool(2, 3) == 5
    assert tool.__doc__ == add.__doc__


async def test_invoke_validates_and_runs() -> None:
    """JSON arguments are decoded, defaults applied, and the function awaited."""
    assert await get_weather.invoke('{"city": "Oslo", "days": 3}') == {
        "city": "Oslo",
        "unit": "C",
        "days": 3,
    }


async def test_sync_tools_run_in_a_thread() -> None:
    """A sync tool runs off the event loop's thread."""
    seen: list[threading.Thread] = []

    def where(n: int) -> int:
        seen.append(threading.current_thread())
        return n

    assert await FunctionTool(where).invoke('{"n": 4}') == 4
    assert seen and seen[0] is not threading.current_thread()


async def test_positional_only_parameters() -> None:
    """Positional-only parameters are passed positionally."""

    def pos(a: int, /, b: int) -> int:
        return a * 10 + b

    assert await FunctionTool(pos).invoke('{"a": 1, "b": 2}') == 12


async def test_empty_arguments_for_no_parameter_tool() -> None:
    """Some providers send "" for a call without arguments."""

    async def now() -> str:
        return "noon"

    tool = FunctionTool(now)
    assert tool.strict is True
    assert await tool.invoke("") == "noon"


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ('{"city": 3}', r"Expected `str`, got `int` - at `\$.city`"),
        ("{}", "missing required field `city`"),
        ('{"city": "Oslo", "dayz": 2}', "unknown field `dayz`"),
        ('{"city": "Oslo", "unit": "K"}', r"Invalid enum value 'K' - at `\$.unit`"),
        ("{not json", "malformed|invalid|truncated"),
    ],
)
async def test_bad_arguments_raise_before_running(arguments: str, match: str) -> None:
    """Arguments that do not validate never reach the function."""
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError), match=match):
        await get_weather.invoke(arguments)


async def test_execute_reports_errors_to_the_model() -> None:
    """Bad arguments, exceptions, timeouts and unknown names become error outputs."""

    async def boom(x: int) -> int:
        raise KeyError("missing")

    never = asyncio.Event()

    async def slow() -> None:
        await never.wait()

    boom_tool, slow_tool = FunctionTool(boom), FunctionTool(slow)
    bad = await _execute(get_weather, call("get_weather", '{"city": 1}'), "c1", 1, None, [])
    assert bad.error is not None and bad.output.startswith("Error: invalid arguments")
    assert "$.city" in bad.output
    raised = await _execute(boom_tool, call("boom", '{"x": 1}'), "c2", 1, None, [])
    assert raised.output == "Error: boom raised KeyError: 'missing'"
    timed = await _execute(slow_tool, call("slow", "{}"), "c3", 2, 0.01, [])
    assert timed.output == "Error: slow timed out after 0.01 s" and timed.round == 2
    unknown = await _execute(None, call("nope", "{}"), "c4", 1, None, ["a", "b"])
    assert unknown.output == "Error: unknown tool 'nope'; available tools: a, b"
    assert not unknown.ok


async def test_execute_encodes_results() -> None:
    """Strings pass through; other values are sent as JSON."""
    ok = await _execute(get_weather, call("get_weather", '{"city": "Rome"}'), "c1", 1, None, [])
    assert ok.ok and ok.value == {"city": "Rome", "unit": "C", "days": 1}
    assert msgspec.json.decode(ok.output) == ok.value
    assert ok.id == "c1" and ok.duration >= 0


@pytest.mark.parametrize("timeout", [None, 10.0])
async def test_a_tools_own_timeout_error_is_not_the_run_timeout(timeout: float | None) -> None:
    """A TimeoutError the tool raises is reported as such, not as ``timed out after None s``."""

    async def fetch() -> str:
        raise TimeoutError("upstream did not answer in 5 s")

    result = await _execute(FunctionTool(fetch), call("fetch", "{}"), "c1", 1, timeout, [])
    assert result.output == "Error: fetch raised TimeoutError: upstream did not answer in 5 s"
    assert not result.ok


async def test_a_return_value_that_does_not_encode_is_named() -> None:
    """The model hears that the return value could not be encoded, and why."""

    class Opaque:
        pass

    def make() -> object:
        return Opaque()

    result = await _execute(FunctionTool(make), call("make", "{}"), "c1", 1, None, [])
    assert result.output.startswith(
        "Error: the return value of make could not be encoded as JSON: "
    )
    assert "Opaque" in result.output  # msgspec's reason names the type
    assert "raised" not in result.output and isinstance(result.value, Opaque)
    assert not result.ok


async def test_arguments_nested_too_deeply_are_invalid_arguments() -> None:
    """A RecursionError from decoding the model's arguments is the model's mistake."""

    def take(x: Any) -> str:
        return "took it"

    deep = '{"x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    result = await _execute(FunctionTool(take), call("take", deep), "c1", 1, None, [])
    assert result.output == "Error: invalid arguments for take: JSON is nested too deeply to decode"


async def test_run_tools_sends_through_the_create_it_is_given() -> None:
    """The runner needs no client: each round goes to the ``create`` callable."""
    asked = {"id": "c1", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    replies: list[dict[str, Any]] = [{"tool_calls": [asked]}, {"content": "3"}]
    sent: list[dict[str, Any]] = []

    async def create(**request: Any) -> ChatCompletion:
        sent.append({**request, "messages": list(request["messages"])})  # as sent then
        message = {"role": "assistant", **replies[len(sent) - 1]}
        return msgspec.convert({"choices": [{"index": 0, "message": message}]}, ChatCompletion)

    result = await run_tools(
        create, model="m", messages=[{"role": "user", "content": "1+2?"}], tools=[add], params={}
    )
    assert result.content == "3" and result.rounds == 2
    assert [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "tool"]
    assert sent[1]["messages"][2]["content"] == "3"
