"""The ``anyapi`` command: chat, models, demo and batch.

``anyapi ...`` and ``python -m anyapi_async ...`` are the same program. Errors end the
program with one line on stderr and a non-zero status, never a traceback: 1 for API and
connection errors, 2 for usage and configuration mistakes, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

from ._argtypes import int_in

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._types import ChatCompletion, ChatCompletionTokenLogprob

__all__ = ["DEFAULT_MODEL", "build_parser", "main"]

#: Model of ``anyapi chat`` when neither ``--model`` nor ``ANYAPI_MODEL`` is given.
DEFAULT_MODEL: Final = "gpt-4o-mini"
ENV_MODEL: Final = "ANYAPI_MODEL"
ENV_API_KEY: Final = "ANYAPI_API_KEY"
ENV_BASE_URL: Final = "ANYAPI_BASE_URL"
#: Key sent to a loopback server when none is set: local servers accept any key.
LOCAL_API_KEY: Final = "anyapi-local"
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

_ENVIRONMENT_HELP: Final = f"""\
environment:
  {ENV_API_KEY}    API key (or the variable named by --api-key-env); not needed
                    for a server on 127.0.0.1/localhost
  {ENV_BASE_URL}   endpoint, default https://api.anyapi.ai/v1
  {ENV_MODEL}      default model of `anyapi chat` (else {DEFAULT_MODEL})

exit status: 0 success, 1 API or connection error, 2 usage or configuration error,
130 interrupted"""


class CLIError(Exception):
    """A mistake of the user's to report on one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


# --- the parser ---------------------------------------------------------------------------


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"endpoint base URL (default: ${ENV_BASE_URL}, else https://api.anyapi.ai/v1)",
    )
    group.add_argument(
        "--api-key-env",
        metavar="NAME",
        default=ENV_API_KEY,
        help=f"environment variable holding the API key (default: {ENV_API_KEY})",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=60.0,
        help="connect and read timeout in seconds (default: 60)",
    )
    group.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        default=2,
        help="retries after a failed attempt (default: 2)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``anyapi`` argument parser."""
    from ._version import __version__

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="anyapi",
        description="Chat with AnyAPI or any OpenAI-compatible endpoint from the terminal.",
        epilog="examples:\n"
        "  anyapi demo                      see the library work offline (no key needed)\n"
        '  anyapi chat "Hello!"             stream a reply token by token\n'
        "  echo 'Summarise: ...' | anyapi chat - --model gpt-5\n"
        "  anyapi models\n\n" + _ENVIRONMENT_HELP,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"anyapi-async {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="send a prompt and stream the reply",
        description="Send one prompt and stream the reply to stdout token by token.",
        epilog='examples:\n  anyapi chat "Name three primes" --max-tokens 50\n'
        "  anyapi chat - < question.txt\n"
        '  anyapi chat "Yes or no?" --logprobs 3      tokens with their top-3 alternatives\n'
        '  anyapi chat "Hi" --json | jq .usage\n'
        '  anyapi chat "Describe Ada" --json-schema person.json   the object as it grows\n\n'
        + _ENVIRONMENT_HELP,
        formatter_class=formatter,
    )
    chat.add_argument("prompt", help="the user message; '-' reads it from stdin")
    chat.add_argument(
        "-m",
        "--model",
        help=f"model id (default: ${ENV_MODEL}, else {DEFAULT_MODEL})",
    )
    chat.add_argument("-s", "--system", metavar="TEXT", help="a system message")
    chat.add_argument("--max-tokens", type=int_in(1), metavar="N", help="reply length limit")
    chat.add_argument("--temperature", type=float, metavar="T", help="sampling temperature")
    chat.add_argument(
        "--logprobs",
        type=int_in(0, 20),
        metavar="K",
        help="after the reply, list each token's log probability and its K (0-20) most "
        "likely alternatives",
    )
    chat.add_argument(
        "--json",
        action="store_true",
        help="print the whole chat.completion object as JSON instead of streaming text",
    )
    chat.add_argument(
        "--no-stream", action="store_true", help="wait for the whole reply, then print it"
    )
    chat.add_argument(
        "--json-schema",
        metavar="FILE",
        help="ask for JSON matching the schema in FILE; show the object as it grows in a "
        "terminal, print the final JSON document otherwise",
    )
    chat.add_argument(
        "--usage", action="store_true", help="print token usage and timing to stderr at the end"
    )
    _add_connection_arguments(chat)

    models = commands.add_parser(
        "models",
        help="list the models the endpoint serves",
        description="List the ids of the models the endpoint serves, one per line.",
        epilog=_ENVIRONMENT_HELP,
        formatter_class=formatter,
    )
    models.add_argument("--json", action="store_true", help="print the model list as JSON")
    _add_connection_arguments(models)

    commands.add_parser(
        "demo",
        help="run the offline demo on a built-in local server (no key, no network)",
        description="Start the library's local chat-completions server in this process and "
        "show a streamed reply arriving token by token, a call with its usage, logprobs "
        "with their top alternatives, and a concurrent fan-out with timings. Needs no "
        "network and no API key.",
    )

    # Its options belong to anyapi_async._jobs, imported only when the command runs.
    commands.add_parser(
        "batch",
        help="run a batch of requests from a JSONL file (see `anyapi batch --help`)",
        add_help=False,
        prefix_chars="\0",  # hand every argument, --help included, to the batch parser
    ).add_argument("args", nargs=argparse.REMAINDER)
    return parser


# --- commands -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> AsyncClient:
    from ._client import AsyncClient, _check_base_url, _is_loopback

    base_url = args.base_url or os.environ.get(ENV_BASE_URL) or None
    key = os.environ.get(args.api_key_env) or None
    if key is None:
        from urllib.parse import urlsplit

        host = urlsplit(base_url).hostname if base_url else None
        if host is None or not _is_loopback(host):
            raise CLIError(
                f"no API key: set {args.api_key_env} (or name another variable with --api-key-env)"
            )
        key = LOCAL_API_KEY
    if base_url is not None:
        try:
            _check_base_url(base_url)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    try:
        return AsyncClient(
            api_key=key, base_url=base_url, timeout=args.timeout, max_retries=args.max_retries
        )
    except ValueError as exc:  # a bad timeout, a key with a newline...
        raise CLIError(str(exc)) from None


def _read_prompt(prompt: str) -> str:
    if prompt == "-":
        prompt = sys.stdin.read()
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


class _Output:
    """stdout that remembers whether the cursor is at the start of a line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.line_start = True

    def write(self, text: str) -> None:
        if text:
            self.stream.write(text)
            self.stream.flush()  # token by token, also into a pipe
            self.line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self.line_start:
            self.write("\n")


async def _chat(args: argparse.Namespace, out: _Output) -> int:
    import msgspec

    prompt = _read_prompt(args.prompt)
    model = args.model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL
    messages: list[Any] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
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
        from ._live_json import load_response_format, show_json

        try:
            params["response_format"] = load_response_format(args.json_schema)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    async with _client(args) as client:
        completions = client.chat.completions
        if args.json or args.no_stream:
            final = await completions.create(model=model, messages=messages, **params)
            if args.json:
                out.write(msgspec.json.format(msgspec.json.encode(final)).decode() + "\n")
                return 0
            if final.choices:
                out.write(final.choices[0].message.content or "")
        else:
            params["stream_options"] = {"include_usage": True}
            async with completions.stream(model=model, messages=messages, **params) as stream:
                if args.json_schema is not None:
                    await show_json(stream, out.write, live=out.stream.isatty())
                async for text in stream.text_deltas():
                    out.write(text)
                final = await stream.get_final_completion()
        out.end_line()
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


async def _models(args: argparse.Namespace, out: _Output) -> int:
    import msgspec

    async with _client(args) as client:
        models = await client.models.list()
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(models)).decode() + "\n")
    else:
        for model in models.data:
            out.write(model.id + "\n")
    return 0


async def _demo(args: argparse.Namespace, out: _Output) -> int:
    from ._demo import run_demo

    await run_demo(out.stream)
    return 0


async def _batch(args: argparse.Namespace, out: _Output) -> int:
    # Imported here: `anyapi chat` should not pay for loading the batch engine.
    from . import _jobs

    parser = argparse.ArgumentParser(prog="anyapi batch")
    _jobs.add_batch_arguments(parser)
    return await _jobs.run_batch_command(parser.parse_args(args.args))


_COMMANDS: Final = {"chat": _chat, "models": _models, "demo": _demo, "batch": _batch}


# --- the entry point ----------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(exc: BaseException, args: argparse.Namespace) -> str:
    from ._exceptions import APIConnectionError, APIStatusError

    message = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, APIStatusError) and exc.request_id:
        message += f" (request id {exc.request_id})"
    elif isinstance(exc, APIConnectionError):
        base_url = getattr(args, "base_url", None) or os.environ.get(ENV_BASE_URL)
        if base_url:
            message += f" ({base_url})"
    return message


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"anyapi: warning: {_one_line(str(message))}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``anyapi`` with ``argv`` (default: the command line); return the exit status."""
    from ._exceptions import APIError

    parser = build_parser()
    args = parser.parse_args(argv)
    out = _Output(sys.stdout)
    warnings.formatwarning = _warning_line
    try:
        return asyncio.run(_COMMANDS[args.command](args, out))
    except CLIError as exc:
        out.end_line()
        print(f"anyapi: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.status
    except APIError as exc:
        out.end_line()
        print(f"anyapi: error: {_describe(exc, args)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        out.end_line()
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`anyapi chat ... | head -1`): stop quietly, and keep
        # Python's own flush at exit from failing on the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
