"""The ``anyapi`` argument parser: every subcommand's options and help texts."""

from __future__ import annotations

import argparse
from typing import Final

from .._argtypes import int_in, positive_float
from .._settings import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL

__all__ = [
    "DEFAULT_BATCH_CONCURRENCY",
    "DEFAULT_MODEL",
    "DEFAULT_RAY_WORKERS",
    "ENV_MODEL",
    "build_parser",
]

#: Model of ``anyapi chat`` when neither ``--model`` nor ``ANYAPI_MODEL`` is given (on
#: another endpoint than the default one, only when that endpoint lists it, see `.chat`).
DEFAULT_MODEL: Final = "gpt-4o-mini"
ENV_MODEL: Final = "ANYAPI_MODEL"
#: ``anyapi batch --concurrency`` default (the job's own, anyapi_async._jobs).
DEFAULT_BATCH_CONCURRENCY: Final = 64
#: ``anyapi batch --engine ray --workers`` default (anyapi_async._jobs.on_ray).
DEFAULT_RAY_WORKERS: Final = 2

_ENVIRONMENT_HELP: Final = f"""\
environment:
  {ENV_API_KEY}    API key (or the variable named by --api-key-env); not needed
                    for a server on 127.0.0.1/localhost
  {ENV_BASE_URL}   endpoint, default {DEFAULT_BASE_URL}
  {ENV_MODEL}      default model of `anyapi chat` (else {DEFAULT_MODEL}; on another
                    endpoint that does not list {DEFAULT_MODEL}, the first model it lists)

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



def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"endpoint base URL (default: ${ENV_BASE_URL}, else {DEFAULT_BASE_URL})",
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


#: ``--cache`` given without a value: the SQLite file every run on this machine shares.
DEFAULT_CACHE_PATH: Final = "~/.cache/anyapi/responses.sqlite"


def _add_cache_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--cache",
        nargs="?",
        const=DEFAULT_CACHE_PATH,
        metavar="PATH|redis://HOST:PORT/DB",
        help=f"answer {what} from a response cache, storing new answers in it: a SQLite "
        f"file (default {DEFAULT_CACHE_PATH}) or a Redis URL",
    )


def _add_routes_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--routes",
        metavar="FILE",
        help="fail over across the endpoints of a TOML routes file (a Router; see the CLI "
        "docs); instead of --base-url",
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
    _add_cache_argument(parser, "requests already answered (a rerun into a new OUTPUT sends "
                        "nothing)")
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
    _add_routes_argument(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``anyapi`` argument parser."""
    from .._version import __version__

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
        help=f"model id (default: ${ENV_MODEL}, else {DEFAULT_MODEL}; on another endpoint "
        f"that does not list {DEFAULT_MODEL}, the first model it lists, named on stderr)",
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
        help="print the chat.completion object as received (every field, unknown ones "
        "included) as JSON instead of streaming text",
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
    _add_cache_argument(chat, "a prompt asked before")
    _add_connection_arguments(chat)
    _add_routes_argument(chat)

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
