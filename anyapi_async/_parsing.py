"""Structured outputs: replies decoded into the requested type.

``client.chat.completions.parse(..., response_format=Person)`` sends
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` with the schema
of ``Person`` (made and rewritten for providers in `anyapi_async._schema`), then decodes
the reply's content into a ``Person`` with msgspec, or pydantic for a pydantic model (either
validates it), and puts it in ``message.parsed``. ``stream_parse()`` does the same at the
end of a stream, with partial objects on the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from ._cache import stored_if_valid
from ._chat_stream import ChatCompletionStream, ChatCompletionStreamManager
from ._exceptions import ContentValidationError
from ._partial import NOTHING, PartialJSON
from ._schema import ResponseSchema, response_schema
from ._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    Choice,
    CommonCreateParams,
    ToolParam,
    copy_response,
)

if TYPE_CHECKING:
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
    "parse",
    "parse_completion",
    "stream_parse",
]

T = TypeVar("T")

#: Sends one request and returns its completion: ``client.chat.completions.create``.
Create = Callable[..., Awaitable[ChatCompletion]]
#: Starts one streamed request: ``client.chat.completions.stream``.
OpenStream = Callable[..., ChatCompletionStreamManager]


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
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                # msgspec decodes nested arrays and objects by recursion: a reply nested
                # thousands deep is bad output like any other, not a crash of the caller.
                why = "is nested too deeply to decode"
            elif choice.finish_reason == "length":
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
    copy_response(completion, parsed)  # ``http``, and the body to_dict() gives
    return parsed


# --- the calls ----------------------------------------------------------------------------


CommonParams = CommonCreateParams


class ParseParams(CommonParams, total=False):
    """`CompletionCreateParams` without ``response_format`` (``parse()`` sets it)."""

    tools: list[ToolParam]


async def parse(
    create: Create,
    model: str,
    messages: Sequence[ChatCompletionMessageParam],
    response_format: type[T],
    params: ParseParams,
) -> ParsedChatCompletion[T]:
    """What ``client.chat.completions.parse()`` does, sending through ``create``."""
    schema = response_schema(response_format)
    # With a response cache, a reply whose content does not validate is not stored.
    with stored_if_valid(lambda completion: parse_completion(completion, schema)):
        completion = await create(
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

        Each snapshot is JSON-like data (dicts, lists, strings, numbers...), also for a
        pydantic model (a half-written object would not validate), that only grows:
        a string being streamed appears partly filled, a key appears as soon as its string,
        object or array value starts, and a number, ``true``, ``false`` or ``null`` once it
        is complete. After the stream ends the reply is validated like `get_final_parsed`
        does (raising `ContentValidationError` if it does not decode), and the last
        snapshot is the whole reply's data. Snapshots are taken at most every
        1/32 of growth or every 50 ms, so a long reply is not re-parsed on every chunk.
        A reply nested deeper than the partial parser reads (200 levels) gives no
        snapshots past that depth, only the final data.

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
        try:
            whole = parser.complete()
        except ValueError:  # pragma: no cover - parse() read it; only the stack could differ
            return
        try:
            changed = whole != last
        except RecursionError:  # deeper than Python compares: then it is the new one
            changed = True
        if changed:
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
    stream: OpenStream,
    model: str,
    messages: Sequence[ChatCompletionMessageParam],
    response_format: type[T],
    params: ParseParams,
) -> ParsedChatCompletionStreamManager[T]:
    """What ``client.chat.completions.stream_parse()`` does, streaming through ``stream``."""
    schema = response_schema(response_format)
    manager = stream(
        model=model, messages=messages, response_format=schema.response_format(), **params
    )
    return ParsedChatCompletionStreamManager(manager, schema)
