"""``anyapi chat``: one prompt, the reply streamed to stdout token by token."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from .._settings import DEFAULT_BASE_URL
from .common import Output, make_client
from .errors import EXIT_ERROR, CLIError
from .parser import DEFAULT_MODEL, ENV_MODEL

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._resources import Completions
    from .._types import ChatCompletion, ChatCompletionTokenLogprob

__all__ = ["run"]


def _utf8_error(what: str, data: bytes, exc: UnicodeError) -> CLIError:
    start = getattr(exc, "start", 0)
    bad = data[start : start + 1]
    return CLIError(
        f"{what} is not valid UTF-8 (byte 0x{bad.hex()} at offset {start}); convert it "
        "first, e.g. with iconv -t UTF-8"
    )


def _check_text(what: str, text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # argv bytes that were not UTF-8 (surrogateescape)
        raise _utf8_error(what, os.fsencode(text), exc) from None
    return text


def _read_prompt(prompt: str) -> str:
    if prompt == "-":
        data = sys.stdin.buffer.read()
        try:
            prompt = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise _utf8_error("the prompt read from stdin", data, exc) from None
    else:
        _check_text("the prompt", prompt)
    if not prompt.strip():
        raise CLIError("the prompt is empty")
    return prompt


def _format_logprobs(entries: Sequence[ChatCompletionTokenLogprob]) -> list[str]:
    width = max((len(repr(e.token)) for e in entries), default=5)
    width = max(width, 5)
    lines = [f"{'token':<{width}}  {'logprob':>8}  top alternatives"]
    for entry in entries:
        alternatives = ", ".join(f"{t.token!r} {t.logprob:.3f}" for t in entry.top_logprobs)
        lines.append(f"{entry.token!r:<{width}}  {entry.logprob:>8.3f}  {alternatives}".rstrip())
    return lines


def _usage_line(completion: ChatCompletion) -> str:
    parts = [completion.model or "?"]
    usage = completion.usage
    if usage is not None:
        parts.append(
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion "
            f"= {usage.total_tokens} tokens"
        )
    http = completion.http
    if http is not None:
        timings = http.timings
        if timings.time_to_first_token is not None:
            parts.append(f"first token {timings.time_to_first_token:.2f} s")
        if timings.total is not None:
            parts.append(f"total {timings.total:.2f} s")
    return "[" + " · ".join(parts) + "]"


async def _choose_model(client: AsyncClient, given: str | None) -> tuple[str, bool]:
    """The model to ask for, and whether it was taken from the endpoint's list.

    ``DEFAULT_MODEL`` is the default endpoint's; another endpoint (a local server, a
    gateway) may not serve it, so its ``GET /models`` decides: the default model when it is
    listed, else the first one listed.
    """
    if given:
        return given, False
    if client.base_url == DEFAULT_BASE_URL:
        return DEFAULT_MODEL, False
    from .._exceptions import APIResponseValidationError, APIStatusError

    try:
        listed = await client.models.list()
    except (APIStatusError, APIResponseValidationError):
        return DEFAULT_MODEL, False  # no list to read: the chat request says what is wrong
    ids = [model.id for model in listed.data]
    if not ids or DEFAULT_MODEL in ids:
        return DEFAULT_MODEL, False
    return ids[0], True


def _model_note(final: ChatCompletion, model: str) -> None:
    """Say on stderr which model answered when the CLI chose it from the endpoint's list."""
    print(
        f"anyapi: note: no --model given: {final.model or model} answered, the first model "
        "the endpoint lists (anyapi models lists them all)",
        file=sys.stderr,
    )


async def run(args: argparse.Namespace, out: Output) -> int:
    """Send the prompt, print the reply; the exit status."""
    import msgspec

    prompt = _read_prompt(args.prompt)
    given = args.model or os.environ.get(ENV_MODEL)
    messages: list[Any] = []
    if args.system:
        messages.append({"role": "system", "content": _check_text("--system", args.system)})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.logprobs is not None:
        params["logprobs"] = True
        params["top_logprobs"] = args.logprobs
    if args.json_schema is not None:
        from .._live_json import ReplyNotJSON, load_response_format, show_json

        try:
            params["response_format"] = load_response_format(args.json_schema)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    completions: Completions
    async with AsyncExitStack() as stack:
        if args.routes is not None:
            from .routes import open_router

            router = await stack.enter_async_context(open_router(args))
            # The routes' models, when set, replace this one.
            model, picked = given or DEFAULT_MODEL, False
            completions = router.chat.completions
        else:
            client = await stack.enter_async_context(make_client(args))
            model, picked = await _choose_model(client, given)
            completions = client.chat.completions
        if args.json or args.no_stream:
            final = await completions.create(model=model, messages=messages, **params)
            if args.json:
                # The body as received: the named fields and the ones the Structs leave out.
                document = msgspec.json.encode(final.to_dict())
                out.write(msgspec.json.format(document).decode() + "\n")
                if picked:
                    _model_note(final, model)
                return 0
            if final.choices:
                out.write(final.choices[0].message.content or "")
        else:
            params["stream_options"] = {"include_usage": True}
            async with completions.stream(model=model, messages=messages, **params) as stream:
                if args.json_schema is not None:
                    try:
                        await show_json(stream, out.write, live=out.stream.isatty())
                    except ReplyNotJSON as exc:
                        raise CLIError(str(exc), status=EXIT_ERROR) from None
                async for text in stream.text_deltas():
                    out.write(text)
                final = await stream.get_final_completion()
        out.end_line()
        if picked:
            _model_note(final, model)
        choice = final.choices[0] if final.choices else None
        if choice is not None and choice.message.refusal:
            out.write(f"(refused: {choice.message.refusal})\n")
        if args.logprobs is not None and choice is not None:
            entries = choice.logprobs.content if choice.logprobs is not None else None
            if entries:
                out.write("\n" + "\n".join(_format_logprobs(entries)) + "\n")
            else:
                print("anyapi: warning: the server sent no logprobs", file=sys.stderr)
        if args.usage:
            print(_usage_line(final), file=sys.stderr)
    return 0
