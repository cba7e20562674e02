"""Pydantic models wherever msgspec types go: parse, stream_parse, tools (local server)."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from collections.abc import Callable
from itertools import pairwise
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
import pydantic
import pytest
from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypedDict

from anyapi_async import (
    AsyncClient,
    ChatCompletionMessageParam,
    ContentValidationError,
    ParsedChatCompletion,
    ToolCallResultEvent,
    ToolRunDoneEvent,
    function_tool,
    response_schema,
)
from anyapi_async.testing import Generated, JSONResponse, LocalServer

from ._grow import grows

MODEL = "gpt-test"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Extract the people."}]
T = TypeVar("T")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    """A postal address."""

    city: str
    country: str = Field(description="ISO 3166 code")
    zip: str | None = None


class Pet(BaseModel):
    name: str
    kind: Literal["cat", "dog"]


class Node(BaseModel):
    label: str
    children: list[Node]


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    favourite: Color
    role: Literal["engineer", "manager", "artist"]
    address: Address
    pets: list[Pet]
    nickname: str | None = None
    tree: Node


class Box(BaseModel, Generic[T]):
    item: T


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Owner(BaseModel):
    pet: Cat | Dog = Field(discriminator="kind")


class Loose(BaseModel):
    name: str
    scores: dict[str, int]
    level: int = 3


class Shouting(BaseModel):
    word: str

    @field_validator("word")
    @classmethod
    def upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError("the word must be upper case")
        return value


def _objects(node: Any) -> list[dict[str, Any]]:
    """Every object schema in ``node``."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for item in node:
            found += _objects(item)
    return found


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*map(_keys, node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*map(_keys, node)) if node else set()
    return set()


def _sent_format(server: LocalServer) -> dict[str, Any]:
    fmt: dict[str, Any] = server.requests_for("/chat/completions")[-1].json["response_format"]
    return fmt


def _completion(content: str | None, *, refusal: str | None = None) -> JSONResponse:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return JSONResponse(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    )


# --- parse() ------------------------------------------------------------------------------


async def test_parse_a_model_sends_a_strict_schema_and_validates(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Nested models, optional fields, lists, enums and Literals: strict schema, model back."""
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Person, n=2
    )
    assert isinstance(c, ParsedChatCompletion)
    for choice in c.choices:
        person = choice.message.parsed
        assert isinstance(person, Person)
        assert isinstance(person.address, Address) and isinstance(person.favourite, Color)
        assert all(isinstance(p, Pet) for p in person.pets)
        assert isinstance(person.tree, Node)
        assert Person.model_validate_json(choice.message.content or "") == person
    fmt = _sent_format(anyapi_server)
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Person"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["type"] == "object"
    # Every object is closed and lists all its properties as required; nothing has a default.
    objects = _objects(schema)
    assert len(objects) >= 4  # Person, Address, Pet, Node
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    assert "default" not in _keys(schema) and "oneOf" not in _keys(schema)
    props = schema["properties"]
    # An optional field is a required, nullable one.
    assert props["nickname"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert props["address"]["properties"]["zip"]["anyOf"][1] == {"type": "null"}
    assert props["address"]["properties"]["country"]["description"] == "ISO 3166 code"
    assert props["favourite"]["enum"] == ["red", "green"] and props["favourite"]["type"] == "string"
    assert props["role"]["enum"] == ["engineer", "manager", "artist"]
    assert props["age"]["minimum"] == 0 and props["age"]["maximum"] == 150
    # Nested models are inlined as for msgspec types; the recursive one stays in $defs.
    assert list(schema["$defs"]) == ["Node"]
    assert props["tree"] == {"$ref": "#/$defs/Node"}
    assert props["pets"]["items"]["properties"]["kind"]["enum"] == ["cat", "dog"]


async def test_parse_a_type_holding_models(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """``list[Model]`` goes to pydantic too (not strict: the root is not an object)."""
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=list[Pet]
    )
    parsed = c.choices[0].message.parsed
    assert isinstance(parsed, list) and all(isinstance(p, Pet) for p in parsed)
    fmt = _sent_format(anyapi_server)
    assert fmt["json_schema"]["name"] == "response" and fmt["json_schema"]["strict"] is False


async def test_generic_model_name_is_cleaned(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """``Box[int]``'s name is made a valid schema name, as for msgspec types."""
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Box[int]
    )
    parsed = c.choices[0].message.parsed
    assert isinstance(parsed, Box) and isinstance(parsed.item, int)
    assert _sent_format(anyapi_server)["json_schema"]["name"] == "Box_int_"


async def test_discriminated_union_is_strict(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """pydantic's oneOf with a discriminator becomes anyOf, which strict mode takes."""
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Owner
    )
    parsed = c.choices[0].message.parsed
    assert isinstance(parsed, Owner) and isinstance(parsed.pet, (Cat, Dog))
    fmt = _sent_format(anyapi_server)["json_schema"]
    assert fmt["strict"] is True
    pet = fmt["schema"]["properties"]["pet"]
    assert [b["properties"]["kind"]["const"] for b in pet["anyOf"]] == ["cat", "dog"]
    assert "discriminator" not in _keys(fmt["schema"])


def test_a_model_strict_mode_cannot_take_keeps_pydantics_schema() -> None:
    """A free-form dict field: not strict, and defaults and optional properties stay."""
    schema = response_schema(Loose)
    assert schema.strict is False
    assert schema.schema["required"] == ["name", "scores"]
    assert schema.schema["properties"]["level"]["default"] == 3
    assert "additionalProperties" not in schema.schema


class Team(TypedDict):
    lead: Pet
    size: int


@dataclasses.dataclass
class Roster:
    teams: list[Team]


def test_models_inside_dataclasses_and_typeddicts_go_to_pydantic() -> None:
    """A dataclass holding a TypedDict holding a model is described and decoded by pydantic."""
    schema = response_schema(Roster)
    assert schema.strict is True
    lead = schema.schema["properties"]["teams"]["items"]["properties"]["lead"]
    assert lead["properties"]["kind"]["enum"] == ["cat", "dog"]
    roster = schema.decode('{"teams": [{"lead": {"name": "Rex", "kind": "dog"}, "size": 3}]}')
    assert roster == Roster(teams=[{"lead": Pet(name="Rex", kind="dog"), "size": 3}])


async def test_reply_that_does_not_validate_names_the_field(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A reply of the wrong shape: ContentValidationError with pydantic's error text."""
    reply = '{"city": "Oslo", "country": 47, "zip": null}'
    anyapi_server.queue(Generated(text=reply))
    with pytest.raises(
        ContentValidationError,
        match=r"does not match Address: 1 validation error for Address: "
        r"Input should be a valid string - at '\$\.country'",
    ) as e:
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Address
        )
    assert e.value.content == reply and e.value.status_code == 200
    assert isinstance(e.value.__cause__, msgspec.ValidationError)
    assert isinstance(e.value.__cause__.__cause__, pydantic.ValidationError)


async def test_a_validator_failing_is_a_content_error(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """The model's own validators run; their message reaches ContentValidationError."""
    anyapi_server.queue(Generated(text='{"word": "quiet"}'))
    with pytest.raises(ContentValidationError, match=r"must be upper case - at '\$\.word'"):
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Shouting
        )
    anyapi_server.queue(Generated(text='{"word": "LOUD"}'))
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Shouting
    )
    assert c.choices[0].message.parsed == Shouting(word="LOUD")


async def test_prose_fences_refusals_and_cut_replies(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Not JSON raises; a fenced reply decodes; a refusal gives None; a cut reply says so."""
    anyapi_server.queue(Generated(text="Sorry, prose."))
    with pytest.raises(ContentValidationError, match="is not valid JSON"):
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Pet
        )
    anyapi_server.queue(_completion('```json\n{"name": "Rex", "kind": "dog"}\n```'))
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Pet
    )
    assert c.choices[0].message.parsed == Pet(name="Rex", kind="dog")
    anyapi_server.queue(_completion(None, refusal="I can't."))
    c = await anyapi_client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Pet
    )
    assert c.choices[0].message.refusal == "I can't." and c.choices[0].message.parsed is None
    with pytest.raises(ContentValidationError, match="cut at the token limit"):
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Person, max_tokens=5
        )


async def test_an_unusable_model_fails_before_io(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A model pydantic cannot describe raises TypeError and sends nothing."""

    class Opaque(BaseModel):
        handler: Callable[[int], int]  # no JSON schema for a function

    with pytest.raises(TypeError, match="Cannot build a JSON schema"):
        await anyapi_client.chat.completions.parse(
            model=MODEL, messages=MESSAGES, response_format=Opaque
        )
    assert anyapi_server.requests_for("/chat/completions") == []


# --- stream_parse() -----------------------------------------------------------------------


async def test_stream_parse_gives_snapshots_then_the_model(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """partial_objects() yields growing dicts; the last is the validated model's data."""
    anyapi_server.queue(Generated(split_seed=3))
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Person
    ) as stream:
        snapshots = [s async for s in stream.partial_objects()]
        person = await stream.get_final_parsed()
        final = await stream.get_final_completion()
    assert isinstance(person, Person) and isinstance(person.address, Address)
    assert final.choices[0].message.parsed is person
    assert len(snapshots) > 3 and all(isinstance(s, dict) for s in snapshots)
    assert all(grows(a, b) for a, b in pairwise(snapshots))
    assert snapshots[-1] == person.model_dump(mode="json")
    assert _sent_format(anyapi_server)["json_schema"]["strict"] is True


async def test_stream_parse_invalid_reply_raises_at_the_end(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """A streamed reply that fails validation raises ContentValidationError from the loop."""
    anyapi_server.queue(Generated(text='{"name": "Rex", "kind": "hamster"}'))
    snapshots: list[Any] = []
    async with anyapi_client.chat.completions.stream_parse(
        model=MODEL, messages=MESSAGES, response_format=Pet
    ) as stream:
        with pytest.raises(ContentValidationError, match=r"'cat' or 'dog' - at '\$\.kind'"):
            async for snapshot in stream.partial_objects():
                snapshots.append(snapshot)
    assert snapshots and snapshots[-1]["name"] == "Rex"


# --- tools --------------------------------------------------------------------------------


class Item(BaseModel):
    sku: str
    quantity: int = Field(ge=1, le=10)


class Order(BaseModel):
    items: list[Item]
    address: Address
    gift: bool


ORDERS: list[Order] = []


class Tag(msgspec.Struct):
    name: str


@function_tool
async def place_order(order: Order, note: str | None = None) -> Order:
    """Place an order.

    Args:
        order: what to send, and where.
        note: a note for the courier.
    """
    ORDERS.append(order)
    return order


def test_tool_with_a_model_parameter_has_a_strict_schema() -> None:
    """A model parameter: pydantic builds the arguments' schema, strict, docstring kept."""
    function = place_order.param["function"]
    assert function["strict"] is True
    parameters: dict[str, Any] = function["parameters"]
    assert parameters["type"] == "object" and "title" not in parameters
    assert parameters["required"] == ["order", "note"]
    for obj in _objects(parameters):
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    order = parameters["properties"]["order"]
    assert order["description"] == "what to send, and where."
    assert order["properties"]["items"]["items"]["properties"]["quantity"]["maximum"] == 10
    assert parameters["properties"]["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert parameters["properties"]["note"]["description"] == "a note for the courier."


async def test_tool_arguments_are_validated_models() -> None:
    """invoke() hands the function a model; bad arguments raise msgspec's error first."""
    ORDERS.clear()
    arguments = {
        "order": {
            "items": [{"sku": "A1", "quantity": 2}],
            "address": {"city": "Oslo", "country": "NO", "zip": None},
            "gift": False,
        },
        "note": None,
    }
    result = await place_order.invoke(json.dumps(arguments))
    assert isinstance(result, Order) and result.items == [Item(sku="A1", quantity=2)]
    assert [result] == ORDERS
    arguments["order"]["items"][0]["quantity"] = 11  # type: ignore[index]
    with pytest.raises(msgspec.ValidationError, match=r"less than or equal to 10 - at "):
        await place_order.invoke(json.dumps(arguments))
    with pytest.raises(
        msgspec.ValidationError, match=r"Extra inputs are not permitted - at '\$\.x'"
    ):
        await place_order.invoke(json.dumps({**arguments, "x": 1}))
    with pytest.raises(msgspec.DecodeError):
        await place_order.invoke("{not json")
    assert len(ORDERS) == 1  # the function never ran on bad arguments


async def test_field_metadata_and_reserved_names() -> None:
    """``Annotated[int, Field(...)]`` selects pydantic; names pydantic keeps for itself work."""

    @function_tool
    def pick(json: Annotated[int, Field(ge=1, description="how many")], copy: str = "x") -> str:
        """Pick."""
        return f"{json}{copy}"

    parameters = pick.param["function"]["parameters"]
    properties = parameters["properties"]
    # A default does not keep it from being strict: the model gives every parameter.
    assert pick.strict is True and pick.param["function"]["strict"] is True
    assert parameters["required"] == ["json", "copy"] and "default" not in properties["copy"]
    assert properties["json"]["minimum"] == 1
    assert properties["json"]["description"] == "how many"
    assert await pick.invoke('{"json": 3, "copy": "y"}') == "3y"
    with pytest.raises(msgspec.ValidationError, match="greater than or equal to 1"):
        await pick.invoke('{"json": 0, "copy": "y"}')


def test_mixing_msgspec_and_pydantic_parameters_is_refused() -> None:
    """One library validates a tool's arguments: a Struct beside a model is a TypeError."""

    def tag(order: Order, label: Tag) -> None:
        """Tag an order."""

    with pytest.raises(TypeError, match=r"mixes pydantic models with msgspec types.*label"):
        function_tool(tag)

    def limit(order: Order, n: Annotated[int, msgspec.Meta(ge=1)]) -> None:
        """Limit."""

    with pytest.raises(TypeError, match=r"parameter n\b"):
        function_tool(limit)


async def test_tool_results_that_are_models_are_encoded() -> None:
    """A tool returning a model gives the model its JSON; other unknown types still fail."""
    from anyapi_async._records import ToolCallResult
    from anyapi_async._tools import ToolRun

    def describe(pet: Pet) -> Pet:
        """Describe a pet."""
        return pet

    def opaque(pet: Pet) -> object:
        """Nothing JSON can hold."""
        return object()

    run = ToolRun(
        messages=[{"role": "user", "content": "hi"}],
        tools=[describe, opaque],
        max_rounds=2,
        tool_timeout=None,
        params={},
    )
    from anyapi_async._types import ChatCompletionMessageToolCall, FunctionCall

    rex = '{"pet": {"name": "Rex", "kind": "dog"}}'
    calls = [
        ChatCompletionMessageToolCall(id=f"c{i}", function=FunctionCall(name=name, arguments=rex))
        for i, name in enumerate(("describe", "opaque"))
    ]
    try:
        good, bad = [await run.execute(c.id, c, 1) for c in calls]
    finally:
        run.close()
    assert isinstance(good, ToolCallResult) and good.error is None
    assert json.loads(good.output) == {"name": "Rex", "kind": "dog"}
    assert bad.error is not None and "Encoding objects of type object is unsupported" in bad.error


async def test_run_tools_with_a_model_parameter(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """run_tools: the server's schema-valid arguments reach the function as an Order."""
    ORDERS.clear()
    result = await anyapi_client.chat.completions.run_tools(
        model=MODEL,
        messages=[{"role": "user", "content": "Order two A1 to Oslo."}],
        tools=[place_order],
        tool_choice="required",
    )
    assert result.rounds == 2
    assert [c.error for c in result.tool_calls] == [None]
    assert len(ORDERS) == 1 and isinstance(ORDERS[0], Order)
    assert result.tool_calls[0].value is ORDERS[0]
    assert json.loads(result.tool_calls[0].output) == ORDERS[0].model_dump(mode="json")
    first = anyapi_server.requests_for("/chat/completions")[0].json
    assert first["tools"] == [place_order.param]


async def test_bad_model_arguments_go_back_to_the_model(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """Arguments that fail the model's validation become an error message, not a crash."""
    ORDERS.clear()
    bad = {"order": {"items": [], "address": {"city": "Oslo"}, "gift": "maybe"}, "note": None}
    anyapi_server.queue(
        JSONResponse(
            {
                "id": "chatcmpl-t",
                "object": "chat.completion",
                "created": 1,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_0",
                                    "type": "function",
                                    "function": {
                                        "name": "place_order",
                                        "arguments": json.dumps(bad),
                                    },
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
            }
        )
    )
    result = await anyapi_client.chat.completions.run_tools(
        model=MODEL, messages=MESSAGES, tools=[place_order]
    )
    error = result.tool_calls[0].error or ""
    assert error.startswith("invalid arguments for place_order: 2 validation errors")
    assert "- at '$.order.address.country'" in error and "- at '$.order.gift'" in error
    assert ORDERS == []
    tool_message = anyapi_server.requests_for("/chat/completions")[1].json["messages"][-1]
    assert tool_message["content"] == f"Error: {error}"


async def test_stream_tools_with_a_model_parameter(
    anyapi_client: AsyncClient, anyapi_server: LocalServer
) -> None:
    """stream_tools: the call's result event carries the Order the function received."""
    ORDERS.clear()
    async with anyapi_client.chat.completions.stream_tools(
        model=MODEL,
        messages=[{"role": "user", "content": "Order two A1 to Oslo."}],
        tools=[place_order],
        tool_choice="required",
    ) as run:
        events = [event async for event in run]
    results = [e.result for e in events if isinstance(e, ToolCallResultEvent)]
    assert len(results) == 1 and isinstance(results[0].value, Order)
    assert [results[0].value] == ORDERS
    assert isinstance(events[-1], ToolRunDoneEvent) and events[-1].result.rounds == 2


# --- pydantic stays unimported ------------------------------------------------------------


def test_plain_use_never_imports_pydantic() -> None:
    """import, parse/stream_parse with a Struct and a tool run leave pydantic unloaded."""
    code = """
import asyncio, sys
import msgspec
import anyapi_async
from anyapi_async import AsyncClient, function_tool, response_schema
from anyapi_async.testing import LocalServer

class Pet(msgspec.Struct):
    name: str
    age: int | None = None

@function_tool
def add(a: int, b: int) -> int:
    "Add."
    return a + b

async def main() -> None:
    async with LocalServer() as server, AsyncClient(api_key="k", base_url=server.base_url) as c:
        msgs = [{"role": "user", "content": "Describe a pet."}]
        await c.chat.completions.create(model=server.model, messages=msgs)
        p = await c.chat.completions.parse(model=server.model, messages=msgs, response_format=Pet)
        assert isinstance(p.choices[0].message.parsed, Pet)
        async with c.chat.completions.stream_parse(
            model=server.model, messages=msgs, response_format=list[Pet]
        ) as s:
            assert [x async for x in s.partial_objects()]
        r = await c.chat.completions.run_tools(
            model=server.model, messages=[{"role": "user", "content": "2+3"}], tools=[add],
            tool_choice="required",
        )
        assert r.tool_calls[0].error is None, r.tool_calls
    names = ("pydantic", "pydantic_core", "anyapi_async._pydantic")
    assert "anyapi_async._schema" in sys.modules and "anyapi_async._tools" in sys.modules
    print("loaded:", sorted(m for m in sys.modules if m.startswith(names)))

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"
