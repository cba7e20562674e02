"""Structured extraction: turn free text into msgspec Structs with ``parse()``.

    python examples/extract.py --local                # offline, against the local server
    ANYAPI_API_KEY=sk-... python examples/extract.py  # against AnyAPI
    python examples/extract.py --local notes.txt      # your own texts, one per line

Every text is sent concurrently; each result is printed as one JSON line, and problems
(a refusal, a reply that does not match the schema) are reported per text without
stopping the others.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Literal

import msgspec
from _common import add_target_arguments, open_client

from anyapi_async import APIResponseValidationError, AsyncClient

TEXTS = [
    "Hi, I'm Ada Lovelace from Analytical Engines Ltd (ada@engines.example). Call me Monday "
    "about the Bernoulli numbers program.",
    "Grace Hopper here, grace@navy.example, Rear Admiral. The compiler demo is on Friday.",
    "Met Alan at the conference; no company card, said to reach him via alan@bletchley.example.",
]

SYSTEM = (
    "Extract every person mentioned in the text, with their email and company when given, "
    "the overall sentiment and a one-sentence summary."
)


class Person(msgspec.Struct):
    """A person mentioned in the text."""

    name: str
    email: str | None
    company: str | None


class Extraction(msgspec.Struct):
    """What the text says, in fields."""

    people: list[Person]
    sentiment: Literal["positive", "neutral", "negative"]
    summary: str


async def extract(client: AsyncClient, model: str, text: str) -> Extraction | None:
    """One text in, one `Extraction` out (``None`` if the model refused)."""
    completion = await client.chat.completions.parse(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        response_format=Extraction,
        max_tokens=600,
    )
    message = completion.choices[0].message
    if message.refusal:
        print(f"refused: {message.refusal}", file=sys.stderr)
    return message.parsed


def load_texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="a file with one text per line")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    try:
        texts = await asyncio.to_thread(load_texts, args.file) if args.file else TEXTS
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"extract.py: cannot read {args.file}: {reason}", file=sys.stderr)
        return 2
    failures = 0
    async with open_client(args) as client:
        results = await asyncio.gather(
            *(extract(client, args.model, text) for text in texts), return_exceptions=True
        )
    for text, result in zip(texts, results, strict=True):
        # ContentValidationError (a reply that does not fit the schema) is one of these.
        if isinstance(result, APIResponseValidationError):
            failures += 1
            print(f"could not extract from {text[:40]!r}: {result}", file=sys.stderr)
        elif isinstance(result, BaseException):
            raise result
        elif result is not None:
            print(msgspec.json.encode(result).decode())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
