"""Structured outputs: JSON schemas from msgspec types, replies decoded into them.

``client.chat.completions.parse(..., response_format=Person)`` sends
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` with the schema
`msgspec.json.schema` gives for ``Person``, then decodes the reply's content into a
``Person`` with msgspec (which validates it) and puts it in ``message.parsed``.

Schemas are rewritten for what providers accept: the root ``$ref`` msgspec emits is
resolved, non-recursive ``$defs`` are inlined (several providers reject ``$ref``), enums
get a ``type``, and OpenAPI's ``discriminator`` is dropped. ``strict`` is sent as true only
when OpenAI's strict mode can take the schema as it is: an object at the root, every object
listing all its properties as required, and only keywords strict mode supports
(https://platform.openai.com/docs/guides/structured-outputs#supported-schemas). Those
objects then get ``additionalProperties: false``, which costs nothing: msgspec ignores
unknown fields when it decodes.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import msgspec

from ._chat_stream import ChatCompletionStream, ChatCompletionStreamManager
from ._exceptions import ContentValidationError
from ._partial import NOTHING, PartialJSON
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    Choice,
    CommonCreateParams,
    ResponseFormatJSONSchema,
    ToolParam,
)

if TYPE_CHECKING:
    from ._resources import Completions
    from ._streaming import AsyncStream

__all__ = [
    "CommonParams",
    "ContentValidationError",
    "ParseParams",
    "ParsedChatCompletion",
    "ParsedChatCompletionMessage",
    "ParsedChatCompletionStream",
    "ParsedChatCompletionStreamManager",
    "ParsedChoice",
    "ResponseSchema",
    "json_schema",
    "parse_completion",
    "response_schema",
]

T = TypeVar("T")

#: Schema name used when the type has no usable ``__name__`` (``list[int]``…).
DEFAULT_SCHEMA_NAME: Final = "response"
#: Keywords OpenAI's strict mode accepts; any other makes the schema non-strict.
STRICT_KEYWORDS: Final = frozenset(
    (
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "$ref", "$defs", "title", "description", "pattern", "format", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    )
)  # fmt: skip
#: ``format`` values strict mode accepts (msgspec also emits ``decimal``, for example).
STRICT_FORMATS: Final = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
)
_NAME_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_-]+")
_DEF_PREFIX: Final = "#/$defs/"
_FENCE: Final = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


# --- schemas ------------------------------------------------------------------------------


def _refs_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEF_PREFIX):
            found.add(ref[len(_DEF_PREFIX) :])
        for value in node.values():
            found |= _refs_in(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs_in, node)) if node else set()
    return set()


def _recursive_defs(defs: dict[str, Any]) -> set[str]:
    """Names of the definitions that can reach themselves through ``$ref``."""
    edges = {name: _refs_in(schema) for name, schema in defs.items()}
    recursive = set()
    for start in defs:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            name = todo.pop()
            if name == start:
                recursive.add(start)
                break
            if name not in seen and name in edges:
                seen.add(name)
                todo.extend(edges[name])
    return recursive


def _rewrite(node: Any, defs: dict[str, Any], keep: set[str]) -> Any:
    """Inline ``$ref`` to non-recursive defs; tidy enums; drop ``discriminator``."""
    if isinstance(node, list):
        return [_rewrite(item, defs, keep) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEF_PREFIX):
        name = ref[len(_DEF_PREFIX) :]
        if name not in keep and name in defs:
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _rewrite({**defs[name], **extra}, defs, keep)
    out = {k: _rewrite(v, defs, keep) for k, v in node.items() if k != "discriminator"}
    enum = out.get("enum")
    if isinstance(enum, list) and enum and "type" not in out:
        # Gemini-backed models, among others, want a type beside every enum.
        if all(isinstance(v, str) for v in enum):
            out["type"] = "string"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in enum):
            out["type"] = "integer"
    return out


def _strict_ok(node: Any, root: bool = False) -> bool:
    """Whether ``node`` (and all below it) fits OpenAI's strict mode."""
    if not isinstance(node, dict) or not node:
        return False  # ``items: false``, or ``{}`` (Any): strict mode needs a type
    if root and node.get("type") != "object":
        return False
    if not node.keys() <= STRICT_KEYWORDS:
        return False
    if "format" in node and node["format"] not in STRICT_FORMATS:
        return False
    if node.get("type") == "object" or "properties" in node:
        props = node.get("properties")
        if not isinstance(props, dict):
            return False  # a free-form dict: strict mode cannot describe it
        if set(node.get("required", ())) != props.keys():
            return False
        if node.get("additionalProperties", False) is not False:
            return False
        if not all(_strict_ok(p) for p in props.values()):
            return False
    if "items" in node and not _strict_ok(node["items"]):
        return False
    if "anyOf" in node and not all(_strict_ok(s) for s in node["anyOf"]):
        return False
    defs = node.get("$defs", {})
    return all(_strict_ok(s) for s in defs.values())


def _close_objects(node: Any) -> None:
    """Add ``additionalProperties: false`` to every object schema, in place."""
    if isinstance(node, dict):
        if node.get("type") == "object":
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


def json_schema(tp: Any) -> tuple[dict[str, Any], bool]:
    """The JSON schema of ``tp`` ready to send, and whether strict mode can take it.

    Raises `TypeError` when msgspec cannot describe ``tp``.
    """
    try:
        raw = msgspec.json.schema(tp)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Cannot build a JSON schema for {tp!r}: {exc}") from exc
    defs: dict[str, Any] = raw.pop("$defs", {})
    keep = _recursive_defs(defs)
    root = raw.get("$ref")
    if isinstance(root, str) and root.startswith(_DEF_PREFIX) and len(raw) == 1:
        # Strict mode wants an object at the root, even for a recursive type.
        raw = defs[root[len(_DEF_PREFIX) :]]
    schema = _rewrite(raw, defs, keep)
    if keep:
        schema["$defs"] = {name: _rewrite(defs[name], defs, keep) for name in sorted(keep)}
    strict = _strict_ok(schema, root=True)
    if strict:
        _close_objects(schema)
    return schema, strict


def _schema_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    if not isinstance(name, str) or getattr(tp, "__args__", None):
        return DEFAULT_SCHEMA_NAME  # ``list[int]`` has a __name__ of "list": not telling
    return _NAME_UNSAFE.sub("_", name)[:64] or DEFAULT_SCHEMA_NAME


class ResponseSchema(Generic[T]):
    """A type prepared for structured output: its name, JSON schema, strictness, decoder."""

    __slots__ = ("decoder", "name", "schema", "strict", "type")

    def __init__(self, tp: type[T]) -> None:
        self.type = tp
        self.name = _schema_name(tp)
        self.schema, self.strict = json_schema(tp)
        self.decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(tp)

    def response_format(self) -> ResponseFormatJSONSchema:
        """The ``response_format`` request value."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": self.strict},
        }

    def decode(self, content: str) -> T:
        """Decode and validate ``content``; a Markdown code fence around it is tolerated.

        Raises `msgspec.DecodeError` or `msgspec.ValidationError`.
        """
        try:
            return self.decoder.decode(content)
        except msgspec.DecodeError:
            # Models without native structured output often wrap JSON in ```json fences.
            fenced = _FENCE.match(content.strip())
            if fenced is None:
                raise
            return self.decoder.decode(fenced.group(1))

    def __repr__(self) -> str:
        return f"ResponseSchema({self.name!r}, strict={self.strict})"


@functools.lru_cache(maxsize=256)
def _cached_schema(tp: Any) -> ResponseSchema[Any]:
    return ResponseSchema(tp)


def response_schema(tp: type[T]) -> ResponseSchema[T]:
    """The (cached) `ResponseSchema` of ``tp``; raises `TypeError` for unusable types."""
    if isinstance(tp, (dict, str)):
        raise TypeError(
            "parse() needs a type for response_format (a msgspec Struct, dataclass, "
            "TypedDict...); pass a response_format dict to create() instead"
        )
    key: Any = tp  # types are hashable; ``Annotated[...]`` with an unhashable Meta is not
    try:
        return _cached_schema(key)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        return ResponseSchema(tp)


# --- results ------------------------------------------------------------------------------


class ParsedChatCompletionMessage(ChatCompletionMessage, Generic[T]):
    """An assistant message with ``parsed``: its content decoded into the requested type.

    ``parsed`` is ``None`` when there is no content to decode (a ``refusal``, tool calls).
    """

    parsed: T | None = None


class ParsedChoice(Choice, Generic[T]):
    """A choice whose message carries ``parsed``."""

    message: ParsedChatCompletionMessage[T] = msgspec.field(
        default_factory=ParsedChatCompletionMessage
    )


class ParsedChatCompletion(ChatCompletion, Generic[T]):
    """A `ChatCompletion` from ``parse()``; ``choices[i].message.parsed`` holds the object."""

    # A list of a subclass: mypy cannot know nobody appends a plain Choice to it.
    choices: list[ParsedChoice[T]] = msgspec.field(default_factory=list)  # type: ignore[assignment]


def _struct_fields(obj: msgspec.Struct) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__struct_fields__}


def _parse_choice(
    choice: Choice, schema: ResponseSchema[T], completion: ChatCompletion
) -> ParsedChoice[T]:
    message = choice.message
    content = message.content
    parsed: T | None = None
    if content is not None and message.refusal is None:
        try:
            parsed = schema.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if choice.finish_reason == "length":
                why = (
                    "was cut at the token limit (finish_reason 'length') before its JSON "
                    "was complete; raise max_tokens"
                )
            elif isinstance(exc, msgspec.ValidationError):
                why = f"does not match {schema.name}: {exc}"
            else:
                why = f"is not valid JSON: {exc}"
            raise ContentValidationError(
                f"Choice {choice.index}'s reply {why}",
                content=content,
                choice_index=choice.index,
                finish_reason=choice.finish_reason,
                completion=completion,
            ) from exc
    return ParsedChoice(
        **{
            **_struct_fields(choice),
            "message": ParsedChatCompletionMessage(**_struct_fields(message), parsed=parsed),
        }
    )


def parse_completion(
    completion: ChatCompletion, schema: ResponseSchema[T]
) -> ParsedChatCompletion[T]:
    """``completion`` with every choice's content decoded into ``schema.type``.

    Raises `ContentValidationError` for content that does not decode.
    """
    choices = [_parse_choice(c, schema, completion) for c in completion.choices]
    parsed = ParsedChatCompletion(**{**_struct_fields(completion), "choices": choices})
    parsed.__dict__.update(completion.__dict__)  # the ``http`` facts
    with contextlib.suppress(AttributeError):  # a completion built by hand keeps no body
        parsed._raw = completion._raw  # KeepsBody: to_dict() is the body as received
    return parsed


# --- the calls ----------------------------------------------------------------------------


CommonParams = CommonCreateParams


class ParseParams(CommonParams, total=False):
    """`CompletionCreateParams` without ``response_format`` (``parse()`` sets it)."""

    tools: list[ToolParam]


async def parse(
    completions: Completions,
    model: str,
    messages: Sequence[ChatCompletionMessageParam],
    response_format: type[T],
    params: ParseParams,
) -> ParsedChatCompletion[T]:
    """What ``client.chat.completions.parse()`` does."""
    schema = response_schema(response_format)
    completion = await completions.create(
        model=model, messages=messages, response_format=schema.response_format(), **params
    )
    return parse_completion(completion, schema)


class ParsedChatCompletionStream(ChatCompletionStream, Generic[T]):
    """A `ChatCompletionStream` whose final completion carries ``parsed``.

    Text arrives as usual (`text_deltas`, `events`); `get_final_completion` decodes it.
    """

    def __init__(self, stream: AsyncStream[ChatCompletionChunk], schema: ResponseSchema[T]):
        super().__init__(stream)
        self._schema = schema
        self._parsed: ParsedChatCompletion[T] | None = None

    async def get_final_completion(self) -> ParsedChatCompletion[T]:
        """Read what is left; return the completion with ``message.parsed`` set.

        Raises `ContentValidationError` when the text does not decode.
        """
        if self._parsed is None:
            self._parsed = parse_completion(await super().get_final_completion(), self._schema)
        return self._parsed

    async def get_final_parsed(self) -> T | None:
        """Read what is left; return choice 0's parsed object (``None`` on a refusal)."""
        final = await self.get_final_completion()
        return final.choices[0].message.parsed if final.choices else None

    def partial_objects(self) -> AsyncIterator[Any]:
        """Snapshots of choice 0's object while its JSON streams in (needs jiter).

        Each snapshot is JSON-like data (dicts, lists, strings, numbers...) that only grows:
        a string being streamed appears partly filled, a key appears as soon as its string,
        object or array value starts, and a number, ``true``, ``false`` or ``null`` once it
        is complete. After the stream ends the reply is validated like `get_final_parsed`
        does (raising `ContentValidationError` if it does not decode), and the last
        snapshot is the whole reply's data. Snapshots are taken at most every
        1/32 of growth or every 50 ms, so a long reply is not re-parsed on every chunk.

        Raises `ImportError` at once when jiter is missing
        (``pip install 'anyapi-async[partial]'``).

        Example:

        ```python
        async with client.chat.completions.stream_parse(
            model=m, messages=msgs, response_format=Person
        ) as s:
            async for person_so_far in s.partial_objects():
                print(person_so_far)           # {'name': 'Ad'}, {'name': 'Ada', ...}
            person = await s.get_final_parsed()  # a validated Person
        ```
        """
        return self._partial_objects(PartialJSON())

    async def _partial_objects(self, parser: PartialJSON) -> AsyncIterator[Any]:
        last: Any = NOTHING
        feed = parser.feed
        async for chunk in self:
            for choice in chunk.choices:
                if choice.index == 0 and choice.delta.content:
                    feed(choice.delta.content)
            if not parser.due():
                continue
            try:
                snapshot = parser.snapshot()
            except ValueError:
                continue  # not JSON (yet): prose, a refusal; the end says which
            if snapshot is not NOTHING and snapshot != last:
                last = snapshot
                yield snapshot
                parser.restart_clock()
        final = await self.get_final_completion()  # raises if the reply does not validate
        message = final.choices[0].message if final.choices else None
        if message is None or message.parsed is None:
            return  # a refusal or no content: nothing more to show
        whole = parser.complete()
        if whole != last:
            yield whole


class ParsedChatCompletionStreamManager(Generic[T]):
    """What ``client.chat.completions.stream_parse(...)`` returns: use it with ``async with``."""

    def __init__(self, manager: ChatCompletionStreamManager, schema: ResponseSchema[T]) -> None:
        self._manager = manager
        self._schema = schema

    async def __aenter__(self) -> ParsedChatCompletionStream[T]:
        inner = await self._manager.__aenter__()
        return ParsedChatCompletionStream(inner.stream, self._schema)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._manager.__aexit__(*exc_info)


def stream_parse(
    completions: Completions,
    model: str,
    messages: Sequence[ChatCompletionMessageParam],
    response_format: type[T],
    params: ParseParams,
) -> ParsedChatCompletionStreamManager[T]:
    """What ``client.chat.completions.stream_parse()`` does."""
    schema = response_schema(response_format)
    manager = completions.stream(
        model=model, messages=messages, response_format=schema.response_format(), **params
    )
    return ParsedChatCompletionStreamManager(manager, schema)
