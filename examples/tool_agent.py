"""A tool-calling agent: the model calls Python functions until it can answer.

    python examples/tool_agent.py --local
    ANYAPI_API_KEY=sk-... python examples/tool_agent.py "Is it warmer in Oslo or Rome, in °F?"

The tools are plain functions (one async, one sync) described with ``function_tool``;
``run_tools`` executes the calls of each round concurrently, feeds the results back and
stops at the model's answer or after ``--max-rounds`` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Literal

from _common import add_target_arguments, open_client

from anyapi_async import APIError, ToolCallResult, ToolRoundsExceededError, function_tool

# A stand-in for a weather service.
WEATHER = {
    "oslo": (4.0, "cloudy"),
    "rome": (19.5, "sunny"),
    "paris": (12.0, "rain"),
    "lisbon": (21.0, "sunny"),
}


@function_tool
async def get_weather(city: str) -> dict[str, float | str]:
    """The current weather in a city, temperature in °C.

    Args:
        city: the city's name, e.g. "Oslo".
    """
    await asyncio.sleep(0)  # a real tool would await an HTTP call here
    celsius, sky = WEATHER.get(city.strip().lower(), (15.0, "unknown"))
    return {"city": city, "celsius": celsius, "sky": sky}


@function_tool
def convert_temperature(value: float, to: Literal["F", "K"]) -> float:
    """Convert a temperature from °C.

    Args:
        value: degrees Celsius.
        to: the unit to convert to.
    """
    return round(value * 9 / 5 + 32 if to == "F" else value + 273.15, 2)


def show(result: ToolCallResult) -> None:
    status = "->" if result.ok else "!!"
    print(f"  [round {result.round}] {result.name}({result.arguments}) {status} {result.output}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "question", nargs="?", default="What's the weather in Oslo and in Rome, in Fahrenheit?"
    )
    parser.add_argument("--max-rounds", type=int, default=6, help="bound on model requests")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    async with open_client(args) as client:
        print(f"question: {args.question}")
        try:
            result = await client.chat.completions.run_tools(
                model=args.model,
                messages=[
                    {"role": "system", "content": "Use the tools; answer briefly."},
                    {"role": "user", "content": args.question},
                ],
                tools=[get_weather, convert_temperature],
                # Make the first request use a tool; later ones may answer.
                tool_choice="required",
                max_rounds=args.max_rounds,
                tool_timeout=10,
                on_tool_result=show,
            )
        except ToolRoundsExceededError as exc:
            print(f"gave up: {exc}", file=sys.stderr)
            return 1
        except APIError as exc:
            print(f"API error: {exc}", file=sys.stderr)
            return 1
    print(f"answer: {result.content}")
    print(
        f"({result.rounds} requests, {len(result.tool_calls)} tool calls, "
        f"{result.usage.total_tokens} tokens)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
