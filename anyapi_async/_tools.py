"""Tool calling: tools described from Python functions, and a runner that executes them.

A function's name, docstring and typed parameters become a tool definition: the
parameters become a msgspec Struct (`msgspec.defstruct`), whose JSON schema is the tool's
``parameters`` and whose decoder validates the model's arguments before the function
runs. Descriptions of single parameters come from an ``Args:`` section of the docstring
(Google style) or ``:param name:`` lines, or from ``Annotated[..., msgspec.Meta(...)]``.
A function with a pydantic model among its parameter types (or ``pydantic.Field``
metadata) gets a pydantic model instead (`anyapi_async._pydantic`), with the strict-mode
schema ``parse()`` sends for models; msgspec Structs cannot be mixed into it.

The runner asks the model, runs the tool calls it gets back (concurrently when there are
several), sends the results as ``tool`` messages and asks again, until the model answers
without tools or ``max_rounds`` requests have been made. A tool that raises, times out or
receives arguments that do not validate gives the model an error message to react to; it
never ends the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Final,
    Generic,
    TypeVar,
    get_origin,
    get_type_hints,
    overload,
)

import msgspec

from ._exceptions import ToolRoundsExceededError
from ._messages import check_messages
from ._records import ToolCallResult
from ._schema import json_schema, uses_msgspec, uses_pydantic
from ._types import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCall,
    CommonCreateParams,
    CompletionUsage,
    ResponseFormat,
    ToolChoice,
    ToolParam,
)

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P")
else:
    P = TypeVar("P")  # only a placeholder at run time: Generic needs some TypeVar

__all__ = [
    "DEFAULT_MAX_TOOL_ROUNDS",
    "FunctionTool",
    "ToolCallResult",
    "ToolRoundsExceededError",
    "ToolRun",
    "ToolRunParams",
    "ToolRunResult",
    "function_tool",
    "run_tools",
]

R = TypeVar("R")

#: Sends one request and returns its completion: ``client.chat.completions.create``.
Create = Callable[..., Awaitable[ChatCompletion]]

#: Model requests a run may make before `ToolRoundsExceededError`.
DEFAULT_MAX_TOOL_ROUNDS: Final = 10
#: Threads of a run's own executor for sync tools (a run's tools share them).
TOOL_THREADS: Final = 8
_TOOL_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SECTION: Final = re.compile(r"^(\w[\w ]*):\s*$")
_ARGS_SECTIONS: Final = frozenset(("args", "arguments", "parameters", "params"))
_ARG_LINE: Final = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM: Final = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")

logger = logging.getLogger("anyapi_async.tools")


# --- describing tools ---------------------------------------------------------------------


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and per-parameter descriptions.

    Understands a Google-style ``Args:`` section and Sphinx ``:param x:`` lines; every
    other section (``Returns:``, ``Raises:``...) is left out of the description.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        header = _SECTION.match(line)
        if header and not line.startswith(" "):
            section = header.group(1).lower()
            current = None
            continue
        sphinx = _SPHINX_PARAM.match(stripped)
        if sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2)
            section = "params"
            continue
        if stripped.startswith(":"):  # :returns:, :raises ...: not for the model
            section, current = "other", None
            continue
        if section is None:
            description.append(line)
        elif section in _ARGS_SECTIONS:
            arg = _ARG_LINE.match(stripped)
            if arg and line.startswith(" ") and not line.startswith(" " * 8):
                current = arg.group(1).lstrip("*")
                params[current] = arg.group(2)
            elif current is not None and stripped:
                params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(description).strip(), params


class FunctionTool(Generic[P, R]):
    """A Python function described as a tool; calling the tool calls the function.

    Build one with `function_tool`. ``param`` is the definition to send in ``tools=[...]``;
    `invoke` runs the function on the model's JSON arguments.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        strict: bool | None = None,
    ) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        if not _TOOL_NAME.match(self.name):
            raise ValueError(
                f"Tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'; pass name=..."
            )
        doc_description, doc_params = parse_docstring(inspect.getdoc(fn))
        self.description = description if description is not None else doc_description
        self._positional: list[str] = []
        fields = self._fields(fn, doc_params)
        #: Decodes and validates the arguments into keyword arguments (msgspec or pydantic).
        self._decode: Callable[[str | bytes], dict[str, Any]]
        if any(uses_pydantic(annotation) for _, annotation, _ in fields):
            self.arguments_type = self._arguments_model(fields, doc_params)
        else:
            self.arguments_type = self._arguments_struct(fields, doc_params)
        schema, can_be_strict = json_schema(self.arguments_type)
        schema.pop("title", None)  # the Struct's name repeats the tool's
        if strict and not can_be_strict:
            raise ValueError(
                f"Tool {self.name!r} cannot be strict: strict mode needs every parameter "
                "required (no defaults) and types it can describe"
            )
        self.parameters = schema
        self.strict = can_be_strict if strict is None else strict
        self._is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def _fields(self, fn: Callable[..., Any], docs: dict[str, str]) -> list[tuple[str, Any, Any]]:
        """``(name, annotation, default)`` per parameter (`msgspec.NODEFAULT`: required)."""
        try:
            signature = inspect.signature(fn)
            hints = get_type_hints(fn, include_extras=True)
        except (TypeError, ValueError, NameError) as exc:
            raise TypeError(f"Cannot describe tool {self.name!r}: {exc}") from exc
        fields: list[tuple[str, Any, Any]] = []
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"Tool {self.name!r}: *{param.name} cannot be described to a model; "
                    "use named, typed parameters"
                )
            if param.kind is param.POSITIONAL_ONLY:
                self._positional.append(param.name)
            annotation = hints.get(param.name, Any)
            default = msgspec.NODEFAULT if param.default is param.empty else param.default
            fields.append((param.name, annotation, default))
        return fields

    def _arguments_struct(
        self, fields: list[tuple[str, Any, Any]], docs: dict[str, str]
    ) -> type[Any]:
        described = []
        for name, annotation, default in fields:
            doc = docs.get(name)
            if doc and not _has_description(annotation):
                annotation = Annotated[annotation, msgspec.Meta(description=doc)]
            described.append((name, annotation, default))
        # Unknown fields are refused: a misspelt optional argument must not silently
        # fall back to its default.
        try:
            struct = msgspec.defstruct(
                self.name, described, kw_only=True, forbid_unknown_fields=True
            )
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Cannot describe tool {self.name!r}: {exc}") from exc
        decoder = msgspec.json.Decoder(struct)

        def decode(arguments: str | bytes) -> dict[str, Any]:
            args = decoder.decode(arguments)
            return {name: getattr(args, name) for name in args.__struct_fields__}

        self._decode = decode
        return struct

    def _arguments_model(
        self, fields: list[tuple[str, Any, Any]], docs: dict[str, str]
    ) -> type[Any]:
        # One library validates all the arguments: pydantic knows nothing of Structs or
        # msgspec.Meta (it would drop their constraints silently), msgspec nothing of models.
        mixed = [name for name, annotation, _ in fields if uses_msgspec(annotation)]
        if mixed:
            raise TypeError(
                f"Cannot describe tool {self.name!r}: it mixes pydantic models with msgspec "
                f"types (parameter {', '.join(mixed)}); describe its parameters with one of "
                "the two (plain types such as int, str, list or Literal go with either)"
            )
        from ._pydantic import ArgumentsDecoder, arguments_model

        try:
            model = arguments_model(
                self.name, fields, docs, str(getattr(self.fn, "__module__", None) or __name__)
            )
        except TypeError as exc:
            raise TypeError(f"Cannot describe tool {self.name!r}: {exc}") from exc
        self._decode = ArgumentsDecoder(model).decode
        return model

    @property
    def param(self) -> ToolParam:
        """The tool definition for ``tools=[...]``."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}  # type: ignore[typeddict-item]

    def decode_arguments(self, arguments: str | bytes) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments from the model's JSON; raises msgspec errors."""
        # Some providers send "" for a call without arguments.
        try:
            kwargs = self._decode(arguments or b"{}")
        except RecursionError:  # the model's bad arguments, not a failure of the tool
            raise msgspec.DecodeError("JSON is nested too deeply to decode") from None
        return [kwargs.pop(name) for name in self._positional], kwargs

    async def invoke(self, arguments: str | bytes, *, executor: Executor | None = None) -> Any:
        """Decode ``arguments``, validate them and run the function (sync ones in a thread).

        A sync function runs in ``executor`` when given, else in the loop's default one.
        Raises `msgspec.ValidationError`/`msgspec.DecodeError` for bad arguments, and
        whatever the function raises.
        """
        args, kwargs = self.decode_arguments(arguments)
        if self._is_async:
            return await self.fn(*args, **kwargs)  # type: ignore[misc]
        # A sync tool may block (files, requests): keep the loop and the other tools going.
        if executor is None:
            result = await asyncio.to_thread(self.fn, *args, **kwargs)
        else:
            # What to_thread does (the caller's context variables go along), in ``executor``.
            call = functools.partial(contextvars.copy_context().run, self.fn, *args, **kwargs)
            result = await asyncio.get_running_loop().run_in_executor(executor, call)
        if inspect.isawaitable(result):
            result = await result
        return result

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r}, strict={self.strict})"


def _has_description(annotation: Any) -> bool:
    if get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, msgspec.Meta) and m.description for m in annotation.__metadata__)


@overload
def function_tool(fn: Callable[P, R], /) -> FunctionTool[P, R]: ...


@overload
def function_tool(
    *, name: str | None = None, description: str | None = None, strict: bool | None = None
) -> Callable[[Callable[P, R]], FunctionTool[P, R]]: ...


def function_tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool | None = None,
) -> FunctionTool[P, R] | Callable[[Callable[P, R]], FunctionTool[P, R]]:
    """Describe a function (async or sync) as a tool; use bare or with options.

    The name is the function's, the description its docstring, and the parameters its
    typed arguments. ``strict`` defaults to whatever the schema allows.

    Example:

    ```python
    @function_tool
    async def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, float]:
        \"\"\"Current weather in a city.

        Args:
            city: the city name, e.g. "Paris".
        \"\"\"
    ```
    """
    if fn is not None:
        return FunctionTool(fn, name=name, description=description, strict=strict)

    def decorate(f: Callable[P, R]) -> FunctionTool[P, R]:
        return FunctionTool(f, name=name, description=description, strict=strict)

    return decorate


def as_tool(tool: FunctionTool[Any, Any] | Callable[..., Any]) -> FunctionTool[Any, Any]:
    """``tool`` itself, or a plain function described as one."""
    if isinstance(tool, FunctionTool):
        return tool
    if isinstance(tool, Mapping) or not callable(tool):
        raise TypeError(
            "tools must be functions or FunctionTool objects; pass tool definition dicts "
            "to create() and run them yourself"
        )
    return FunctionTool(tool)


# --- running them -------------------------------------------------------------------------


class ToolRunResult:
    """The end of a tool run: the final completion and everything that led to it."""

    __slots__ = ("completion", "messages", "rounds", "tool_calls", "usage")

    def __init__(
        self,
        completion: ChatCompletion,
        messages: list[dict[str, Any]],
        rounds: int,
        tool_calls: list[ToolCallResult],
        usage: CompletionUsage,
    ) -> None:
        #: The last completion: the model's answer without tool calls.
        self.completion = completion
        #: The conversation: the caller's messages, every assistant turn and tool result,
        #: and the final answer; send it back with a new user message to continue.
        self.messages = messages
        #: How many model requests the run made.
        self.rounds = rounds
        #: Every tool call executed, in order.
        self.tool_calls = tool_calls
        #: Token counts summed over every request.
        self.usage = usage

    @property
    def content(self) -> str | None:
        """The final answer's text."""
        choices = self.completion.choices
        return choices[0].message.content if choices else None

    def __repr__(self) -> str:
        return (
            f"ToolRunResult(rounds={self.rounds}, tool_calls={len(self.tool_calls)}, "
            f"content={self.content!r})"
        )


class ToolRunParams(CommonCreateParams, total=False):
    """`CompletionCreateParams` without ``tools`` (``run_tools()`` takes functions)."""

    response_format: ResponseFormat


def _encode_model(obj: Any) -> Any:
    # Called by msgspec only for types it does not know: a pydantic model, or a real error.
    if uses_pydantic(type(obj)):
        from ._pydantic import to_builtins

        return to_builtins(obj)
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


def _output(value: Any) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value, enc_hook=_encode_model).decode()


class _TimedOut(Exception):
    """The run's ``tool_timeout`` expired (not a TimeoutError the tool raised itself)."""


async def _invoke(
    tool: FunctionTool[Any, Any],
    arguments: str,
    timeout: float | None,
    executor: Executor | None,
) -> Any:
    if timeout is None:
        return await tool.invoke(arguments, executor=executor)
    # Not wait_for: its TimeoutError and one the tool raises look alike, and the model
    # must hear which one happened.
    task = asyncio.ensure_future(tool.invoke(arguments, executor=executor))
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    finally:
        if not task.done():  # the timeout, or this call cancelled: the tool stops too
            task.cancel()
            await asyncio.wait((task,))
    if not done:
        raise _TimedOut
    return task.result()


async def _execute(
    tool: FunctionTool[Any, Any] | None,
    call: ChatCompletionMessageToolCall,
    call_id: str,
    round_: int,
    timeout: float | None,
    available: Sequence[str],
    executor: Executor | None = None,
) -> ToolCallResult:
    name = call.function.name
    arguments = call.function.arguments
    started = time.perf_counter()
    value: Any = None
    output = ""
    error: str | None = None
    if tool is None:
        error = f"unknown tool {name!r}; available tools: {', '.join(available)}"
    else:
        try:
            value = await _invoke(tool, arguments, timeout, executor)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            error = f"invalid arguments for {name}: {exc}"
        except _TimedOut:
            error = f"{name} timed out after {timeout} s"
        except Exception as exc:
            # The whole point: a failing tool is news for the model, not the end of the run.
            logger.debug("Tool %s raised", name, exc_info=True)
            error = f"{name} raised {type(exc).__name__}: {exc}"
        else:
            try:
                output = _output(value)
            except (TypeError, ValueError, OverflowError) as exc:
                error = f"the return value of {name} could not be encoded as JSON: {exc}"
    duration = time.perf_counter() - started
    if error is not None:
        output = f"Error: {error}"
    return ToolCallResult(
        id=call_id,
        name=name,
        arguments=arguments,
        output=output,
        value=value,
        error=error,
        duration=duration,
        round=round_,
    )


def _add_usage(total: CompletionUsage, usage: CompletionUsage | None) -> None:
    if usage is not None:
        total.prompt_tokens += usage.prompt_tokens
        total.completion_tokens += usage.completion_tokens
        total.total_tokens += usage.total_tokens


class ToolRun:
    """What `run_tools` and the streaming runner share: checked arguments, the conversation."""

    def __init__(
        self,
        *,
        messages: Sequence[ChatCompletionMessageParam],
        tools: Sequence[FunctionTool[Any, Any] | Callable[..., Any]],
        max_rounds: int,
        tool_timeout: float | None,
        params: ToolRunParams,
    ) -> None:
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise ValueError(f"max_rounds must be an int >= 1, got {max_rounds!r}")
        if isinstance(tools, Mapping) or not isinstance(tools, Sequence) or not tools:
            raise TypeError("tools must be a non-empty list of functions or FunctionTool objects")
        if (params.get("n") or 1) != 1:
            raise ValueError("run_tools() follows one conversation: n must be 1")
        self.by_name: dict[str, FunctionTool[Any, Any]] = {}
        for item in tools:
            tool = as_tool(item)
            if tool.name in self.by_name:
                raise ValueError(f"Two tools are named {tool.name!r}")
            self.by_name[tool.name] = tool
        self.definitions = [tool.param for tool in self.by_name.values()]
        # A new list (the caller's stays as it was); Struct messages become dicts.
        self.history: list[dict[str, Any]] = list(check_messages(messages))
        self.first_choice: ToolChoice | None = params.pop("tool_choice", None)
        self.params = params
        self.max_rounds = max_rounds
        self.tool_timeout = tool_timeout
        self.executed: list[ToolCallResult] = []
        self.usage = CompletionUsage()
        # Sync tools run in threads of the run's own, started on first use: a tool stuck
        # past its timeout holds one of these, never a thread of the loop's default
        # executor (asyncio.to_thread, and DNS lookups for new connections, wait there).
        self._executor: ThreadPoolExecutor | None = None

    def request(self, round_: int) -> dict[str, Any]:
        """The parameters of round ``round_``'s request, beside model and messages."""
        # A "required" or forced tool_choice holds for the first request only: kept on
        # later ones, the model could never give its final answer.
        choice: ToolChoice = "auto"
        if round_ == 1 and self.first_choice is not None:
            choice = self.first_choice
        elif self.first_choice == "none":
            choice = "none"
        return {**self.params, "tools": self.definitions, "tool_choice": choice}

    def answer(
        self, completion: ChatCompletion, round_: int
    ) -> list[tuple[str, ChatCompletionMessageToolCall]]:
        """Record round ``round_``'s answer; the calls to run (none: the run is over).

        Raises `ToolRoundsExceededError` when the model asks for tools in the last round.
        """
        _add_usage(self.usage, completion.usage)
        if not completion.choices:
            raise ValueError("The response has no choices")  # pragma: no cover - guarded in core
        message = completion.choices[0].message
        calls = message.tool_calls or []
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
        if not calls:
            self.history.append(assistant)
            return []
        if round_ == self.max_rounds:
            names = ", ".join(c.function.name for c in calls)
            raise ToolRoundsExceededError(
                f"The model still asked for tools ({names}) after {self.max_rounds} requests "
                f"(max_rounds={self.max_rounds})",
                completion=completion,
                messages=self.history,
                tool_calls=self.executed,
            )
        # Providers that leave ids out still need each result matched to its call.
        ids = [c.id or f"call_{round_}_{i}" for i, c in enumerate(calls)]
        assistant["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for call_id, c in zip(ids, calls, strict=True)
        ]
        self.history.append(assistant)
        return list(zip(ids, calls, strict=True))

    def execute(
        self, call_id: str, call: ChatCompletionMessageToolCall, round_: int
    ) -> Awaitable[ToolCallResult]:
        """Run one call (never raises but for cancellation)."""
        tool = self.by_name.get(call.function.name)
        executor = None
        if tool is not None and not tool._is_async:
            executor = self._executor
            if executor is None:
                executor = self._executor = ThreadPoolExecutor(
                    TOOL_THREADS, thread_name_prefix="anyapi-tool"
                )
        return _execute(
            tool, call, call_id, round_, self.tool_timeout, list(self.by_name), executor
        )

    def close(self) -> None:
        """Let the run's tool threads go (idempotent); never waits for a stuck tool."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def add_result(self, result: ToolCallResult) -> None:
        """Record a call's result and the ``tool`` message the model will see."""
        self.executed.append(result)
        self.history.append({"role": "tool", "tool_call_id": result.id, "content": result.output})

    def result(self, completion: ChatCompletion, round_: int) -> ToolRunResult:
        return ToolRunResult(completion, self.history, round_, self.executed, self.usage)


async def run_tools(
    create: Create,
    *,
    model: str,
    messages: Sequence[ChatCompletionMessageParam],
    tools: Sequence[FunctionTool[Any, Any] | Callable[..., Any]],
    max_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    tool_timeout: float | None = None,
    on_tool_result: Callable[[ToolCallResult], Awaitable[None] | None] | None = None,
    params: ToolRunParams,
) -> ToolRunResult:
    """What ``client.chat.completions.run_tools()`` does, sending through ``create``."""
    run = ToolRun(
        messages=messages,
        tools=tools,
        max_rounds=max_rounds,
        tool_timeout=tool_timeout,
        params=params,
    )
    try:
        for round_ in range(1, max_rounds + 1):
            completion = await create(
                model=model,
                messages=run.history,
                **run.request(round_),
            )
            calls = run.answer(completion, round_)
            if not calls:
                return run.result(completion, round_)
            results = await asyncio.gather(*(run.execute(i, c, round_) for i, c in calls))
            for result in results:
                run.add_result(result)
                if on_tool_result is not None:
                    pending = on_tool_result(result)
                    if pending is not None:
                        await pending
    finally:
        run.close()
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
