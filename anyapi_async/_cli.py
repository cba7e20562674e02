"""The ``anyapi`` command: chat, models, demo and batch.

``anyapi ...`` and ``python -m anyapi_async ...`` are the same program. Errors end the
program with one line on stderr and a non-zero status, never a traceback: 1 for API and
connection errors, 2 for usage and configuration mistakes, 130 on Ctrl-C; ``anyapi batch``
adds 1 when items failed and 3 when the job stopped early. Every subcommand's options are
here; the commands call the library (``anyapi batch`` calls `anyapi_async._jobs`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from ._argtypes import int_in, positive_float

if TYPE_CHECKING:
    from ._batch import ProgressCallback
    from ._client import AsyncClient
    from ._jobs import JobSummary
    from ._types import ChatCompletion, ChatCompletionTokenLogprob

__all__ = ["DEFAULT_MODEL", "build_parser", "main"]

#: Model of ``anyapi chat`` when neither ``--model`` nor ``ANYAPI_MODEL`` is given.
DEFAULT_MODEL: Final = "gpt-4o-mini"
ENV_MODEL: Final = "ANYAPI_MODEL"
ENV_API_KEY: Final = "ANYAPI_API_KEY"
ENV_BASE_URL: Final = "ANYAPI_BASE_URL"
#: Key sent to a loopback server when none is set: local servers accept any key.
LOCAL_API_KEY: Final = "anyapi-local"
#: The endpoint when neither --base-url nor ANYAPI_BASE_URL is given (the client's default).
DEFAULT_BASE_URL: Final = "https://api.anyapi.ai/v1"
#: ``anyapi batch --concurrency`` default (the job's own, anyapi_async._jobs).
DEFAULT_BATCH_CONCURRENCY: Final = 64
#: ``anyapi batch --engine ray --workers`` default (anyapi_async._jobs.on_ray).
DEFAULT_RAY_WORKERS: Final = 2
#: Invalid input lines ``anyapi batch`` lists one by one on stderr before only counting them.
MAX_LISTED_INVALID: Final = 20
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
#: ``anyapi batch`` stopped early (endpoint down, key refused, output not writable).
EXIT_STOPPED: Final = 3
EXIT_INTERRUPTED: Final = 130

_ENVIRONMENT_HELP: Final = f"""\
environment:
  {ENV_API_KEY}    API key (or the variable named by --api-key-env); not needed
                    for a server on 127.0.0.1/localhost
  {ENV_BASE_URL}   endpoint, default https://api.anyapi.ai/v1
  {ENV_MODEL}      default model of `anyapi chat` (else {DEFAULT_MODEL})

exit status: 0 success, 1 API or connection error, 2 usage or configuration error,
130 interrupted"""

_BATCH_HELP: Final = f"""\
input lines (JSONL):
  {{"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions", "body": {{...}}}}
  {{"custom_id": "q2", "model": "gpt-4o-mini", "messages": [...], ...}}   (custom_id optional)

examples:
  anyapi batch requests.jsonl -o results.jsonl --rpm 500
  anyapi batch requests.jsonl -o results.jsonl              run again to resume
  anyapi batch requests.jsonl -o results.jsonl --retry-failed
  anyapi batch requests.jsonl -o results.jsonl --engine ray --workers 4   on Ray actors

environment:
  {ENV_API_KEY}    API key (or the variable named by --api-key-env); not needed
                    for a server on 127.0.0.1/localhost
  {ENV_BASE_URL}   endpoint, default {DEFAULT_BASE_URL}

exit status:
  0    every request succeeded (in this run or an earlier one)
  1    some requests failed: their error lines are in OUTPUT; --retry-failed runs them again
  2    the job could not start: usage, a missing file, no key, an OUTPUT that cannot be
       opened (read-only), is not a job's output, belongs to another job or is in use
  3    the job stopped early (endpoint unreachable, key or account refused or out of
       credit, a write failing mid-run, Ray failing): nothing is lost, run the same
       command again to resume
  130  interrupted (Ctrl-C): run the same command again to resume"""


class CLIError(Exception):
    """A mistake of the user's to report on one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


# --- the parser ---------------------------------------------------------------------------


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


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


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``anyapi batch`` option (an engine's options belong here too)."""
    parser.add_argument("input", metavar="INPUT", help="JSONL file of requests")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="JSONL file of results, appended to (default: INPUT's name + .output.jsonl)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the requests whose result in OUTPUT is an error, keeping one line "
        "per request (the newest)",
    )
    parser.add_argument(
        "-m", "--model", type=_non_empty, metavar="MODEL", help="use this model for every request"
    )
    parser.add_argument(
        "--concurrency",
        type=int_in(1),
        default=DEFAULT_BATCH_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at most (default {DEFAULT_BATCH_CONCURRENCY})",
    )
    parser.add_argument("--rpm", type=positive_float, metavar="N", help="requests per minute")
    parser.add_argument("--tpm", type=positive_float, metavar="N", help="tokens per minute")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: on when stderr is a terminal and tqdm is installed)",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="who sends the requests: this process (default), or Ray actors (the ray extra); "
        "the output and resuming are the same",
    )
    engine.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --engine ray: the Ray cluster, HOST:PORT or ray://HOST:10001 (default: "
        "$RAY_ADDRESS, else a local Ray started for the job)",
    )
    engine.add_argument(
        "--ray-connect-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="with --engine ray: give up connecting to the cluster after this long, exit "
        "status 3 (default: $ANYAPI_RAY_CONNECT_TIMEOUT, else 30)",
    )
    engine.add_argument(
        "--rate-budget",
        type=_non_empty,
        metavar="NAME",
        help="with --engine ray: draw --rpm/--tpm from the cluster's budget NAME, shared by "
        "every job naming it (default: a budget of this job's own)",
    )
    engine.add_argument(
        "--workers",
        type=int_in(1),
        default=DEFAULT_RAY_WORKERS,
        metavar="N",
        help=f"with --engine ray: actors sending requests (default {DEFAULT_RAY_WORKERS}); "
        "--concurrency is the total, split exactly between them (fewer workers if it is smaller)",
    )
    _add_connection_arguments(parser)


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
        type=_non_empty,
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

    batch = commands.add_parser(
        "batch",
        help="run a resumable batch of requests from a JSONL file",
        description="Run every request of a JSONL file (OpenAI Batch API lines or plain\n"
        "request bodies) and append one result line per request to OUTPUT. Run the same\n"
        "command again after an interruption to resume.",
        epilog=_BATCH_HELP,
        formatter_class=formatter,
    )
    _add_batch_arguments(batch)
    return parser


# --- commands -----------------------------------------------------------------------------


def _base_url(args: argparse.Namespace) -> str | None:
    if args.base_url is not None and not args.base_url.strip():
        raise CLIError("--base-url is empty: give the endpoint, e.g. " + DEFAULT_BASE_URL)
    return args.base_url or os.environ.get(ENV_BASE_URL) or None


def _api_key(name: str, base_url: str | None) -> str:
    from ._settings import resolve_api_key

    try:
        key = resolve_api_key(None, base_url, env=name)
    except ValueError as exc:
        if "No API key" in str(exc):
            raise CLIError(
                f"no API key: set {name} (or name another variable with --api-key-env)"
            ) from None
        raise CLIError(str(exc)) from None
    return LOCAL_API_KEY if key is None else key


def _endpoint(args: argparse.Namespace) -> tuple[str | None, str]:
    """The base URL (None: the default) and key the options and environment give, checked."""
    from ._settings import check_base_url

    base_url = _base_url(args)
    key = _api_key(args.api_key_env, base_url)
    if base_url is not None:
        try:
            check_base_url(base_url)
        except ValueError as exc:
            raise CLIError(_redacted(str(exc), base_url)) from None
    return base_url, key


def _client(args: argparse.Namespace) -> AsyncClient:
    from ._client import AsyncClient

    base_url, key = _endpoint(args)
    try:
        return AsyncClient(
            api_key=key, base_url=base_url, timeout=args.timeout, max_retries=args.max_retries
        )
    except ValueError as exc:  # a bad timeout...
        raise CLIError(_redacted(str(exc), base_url)) from None


def _redacted(text: str, base_url: str | None) -> str:
    """``text`` with the base URL's key-like query values hidden (`--base-url '...?key=...'`)."""
    from ._logging import redact_url

    if not base_url:
        return text
    return text.replace(base_url, redact_url(base_url))


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


def _default_output(source: Path) -> Path:
    name = source.name[: -len(".jsonl")] if source.name.endswith(".jsonl") else source.name
    return source.with_name(name + ".output.jsonl")


def _progress_display(wanted: bool | None) -> ProgressCallback | None:
    from ._batch import TqdmProgress

    if wanted is False or (wanted is None and not sys.stderr.isatty()):
        return None
    try:
        return TqdmProgress(desc="anyapi batch", file=sys.stderr)
    except ImportError as exc:
        if wanted:
            raise CLIError(str(exc)) from None
        return None


def _say(message: str) -> None:
    print(f"anyapi batch: {_one_line(message)}", file=sys.stderr)


async def _batch_on_ray(
    args: argparse.Namespace,
    source: Path,
    target: Path,
    progress: ProgressCallback | None,
    on_invalid_line: Callable[[int, str], object],
) -> JobSummary:
    try:
        from ._jobs.on_ray import run_jsonl_job_on_ray
    except ImportError as exc:  # no ray: the extra is not installed
        raise CLIError(f"--engine ray needs Ray ({exc}): pip install 'anyapi-async[ray]'") from None
    base_url, key = _endpoint(args)  # timeout and retries: checked by the engine (no I/O)
    try:
        return await run_jsonl_job_on_ray(
            source,
            target,
            api_key=key,
            base_url=base_url,
            model=args.model,
            max_retries=args.max_retries,
            timeout=args.timeout,
            concurrency=args.concurrency,
            rpm=args.rpm,
            tpm=args.tpm,
            workers=args.workers,
            address=args.ray_address,
            connect_timeout=args.ray_connect_timeout,
            rate_budget=args.rate_budget,
            retry_failed=args.retry_failed,
            progress=progress,
            on_invalid_line=on_invalid_line,
            on_notice=_say,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None


async def _batch(args: argparse.Namespace, out: _Output) -> int:
    # Imported here: `anyapi chat` should not pay for loading the batch engine.
    from . import _jobs

    source = Path(args.input)
    target = Path(args.output) if args.output else _default_output(source)
    listed = 0

    def on_invalid_line(number: int, message: str) -> None:
        nonlocal listed
        listed += 1
        if listed <= MAX_LISTED_INVALID:
            _say(f"{source}: {message}")

    progress = _progress_display(args.progress)
    try:
        if args.engine == "ray":
            summary = await _batch_on_ray(args, source, target, progress, on_invalid_line)
        else:
            async with _client(args) as client:
                summary = await _jobs.run_jsonl_job(
                    source,
                    target,
                    client=client,
                    model=args.model,
                    concurrency=args.concurrency,
                    rpm=args.rpm,
                    tpm=args.tpm,
                    progress=progress,
                    retry_failed=args.retry_failed,
                    on_invalid_line=on_invalid_line,
                    on_notice=_say,
                )
    except _jobs.JobStopped as exc:
        hint = _url_hint(exc.error, args) if exc.error is not None else ""
        _say(str(exc) + (f" ({hint})" if hint else ""))
        return EXIT_STOPPED
    except _jobs.JobError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        name = exc.filename if exc.filename is not None else source
        raise CLIError(f"cannot open {name}: {exc.strerror or exc}") from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        _say(f"interrupted; results so far are in {target}; run the same command again to resume")
        raise
    if listed > MAX_LISTED_INVALID:
        _say(f"{listed - MAX_LISTED_INVALID} more invalid lines (see {target})")
    out.write(f"anyapi batch: {summary} -> {target}\n")
    if summary.ok:
        return 0
    _say(
        f"{summary.failed + summary.skipped_failed} requests failed (error lines in {target}); "
        "fix what they name, then add --retry-failed to run them again"
    )
    return EXIT_ERROR


_COMMANDS: Final = {"chat": _chat, "models": _models, "demo": _demo, "batch": _batch}


# --- the entry point ----------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _url_hint(exc: BaseException, args: argparse.Namespace) -> str:
    """What to try when a 404 comes from a base URL that looks wrong, else ""."""
    from urllib.parse import urlsplit, urlunsplit

    from ._exceptions import NotFoundError

    if not isinstance(exc, NotFoundError) or exc.code == "model_not_found":
        return ""
    from ._logging import redact_url

    base_url = getattr(args, "base_url", None) or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")

    def with_path(new: str) -> tuple[str, str, str, str, str]:
        return (parts.scheme, parts.netloc, new, parts.query, parts.fragment)

    if path.endswith("/chat/completions"):
        fixed = redact_url(urlunsplit(with_path(path[: -len("/chat/completions")])))
        return f"the base URL must stop before /chat/completions: try --base-url {fixed}"
    if not path.endswith("/v1"):
        fixed = redact_url(urlunsplit(with_path(f"{path}/v1")))
        return f"the base URL usually ends in /v1: try --base-url {fixed}"
    return ""


def _describe(exc: BaseException, args: argparse.Namespace) -> str:
    from ._exceptions import APIConnectionError, APIStatusError, error_line
    from ._logging import redact_url

    message = error_line(exc)
    if isinstance(exc, APIStatusError) and exc.request_id:
        message += f" (request id {exc.request_id})"
    elif isinstance(exc, APIConnectionError):
        base_url = getattr(args, "base_url", None) or os.environ.get(ENV_BASE_URL)
        if base_url:
            message += f" ({redact_url(base_url)})"
    hint = _url_hint(exc, args)
    return message + (f"; {hint}" if hint else "")


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
        prog = "anyapi batch" if args.command == "batch" else "anyapi"
        print(f"{prog}: error: {_one_line(str(exc))}", file=sys.stderr)
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
