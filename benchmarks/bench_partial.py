"""Live partial objects: the CPU cost per chunk, and why snapshots are throttled.

    python -m benchmarks.bench_partial              # every case, best of 5
    python -m benchmarks.bench_partial --reps 3 --no-stream

A JSON reply is cut into token-sized pieces (words with their leading space, punctuation
apart, as models stream them) and fed to the parser three ways:

- ``text``: the pieces only joined, as `text_deltas()` consumers do: the floor;
- ``partial``: `PartialJSON` as ``partial_objects()`` uses it (feed every piece, a
  snapshot when one is due, compared with the last one, the whole document at the end);
- ``every-chunk``: jiter's partial mode re-parsing the whole text after every piece, the
  obvious way, which is quadratic in the reply's length.

Documents: ``records`` (an object holding a list of records with strings, numbers,
booleans and a nested list: the costly kind to build) and ``essay`` (one long string), at
5, 10, 20 and 40 KB, so the growth with size shows. The ``stream`` cases run the 20 KB
records reply through the client against the in-process local server, with
``text_deltas()`` and with ``partial_objects()``: their difference is what live objects
add to a real stream. One JSON line per case on stdout; the best of ``--reps`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from anyapi_async._partial import NOTHING, PartialJSON

__all__ = ["main"]

SIZES_KB = (5, 10, 20, 40)
_TOKEN = re.compile(r"\s?\w+|\W")
_WORDS = ("alpha", "beta", "gamma", "delta", "río", "naïve", 'say "hi"', "über", "tab\t")


def records(size: int, rng: random.Random) -> str:
    items: list[dict[str, Any]] = []
    doc = {"title": "Catalogue", "items": items}
    while len(json.dumps(doc, ensure_ascii=False).encode()) < size:
        items.append(
            {
                "name": f"Item {len(items)} é",
                "description": " ".join(rng.choice(_WORDS) for _ in range(10)),
                "price": round(rng.random() * 100, 2),
                "tags": ["a", "b", "c"],
                "ok": rng.random() < 0.5,
            }
        )
    return json.dumps(doc, ensure_ascii=False)


def essay(size: int, rng: random.Random) -> str:
    words: list[str] = []
    while len(" ".join(words).encode()) < size:
        words.append(rng.choice(_WORDS))
    return json.dumps({"essay": " ".join(words)}, ensure_ascii=False)


def run_text(pieces: list[str]) -> int:
    parts: list[str] = []
    for piece in pieces:
        parts.append(piece)
    json.loads("".join(parts))
    return 0


def run_partial(pieces: list[str]) -> int:
    parser = PartialJSON()
    last: Any = NOTHING
    taken = 0
    for piece in pieces:
        parser.feed(piece)
        if parser.due():
            snapshot = parser.snapshot()
            if snapshot is not NOTHING and snapshot != last:
                last = snapshot
                taken += 1
    whole = parser.complete()
    return taken + (whole != last)


def run_every_chunk(pieces: list[str]) -> int:
    import jiter

    text = ""
    taken = 0
    for piece in pieces:
        text += piece
        try:
            jiter.from_json(text.encode(), partial_mode="trailing-strings")
        except ValueError:
            continue
        taken += 1
    return taken


MODES: dict[str, Callable[[list[str]], int]] = {
    "text": run_text,
    "partial": run_partial,
    "every-chunk": run_every_chunk,
}


def best(fn: Callable[[list[str]], int], pieces: list[str], reps: int) -> tuple[float, int]:
    times = []
    result = 0
    for _ in range(reps):
        started = time.process_time()
        result = fn(pieces)
        times.append(time.process_time() - started)
    return min(times), result


async def stream_case(pieces: list[str], how: str, reps: int) -> tuple[float, int]:
    from anyapi_async import AsyncClient
    from anyapi_async.testing import LocalServer, SSEResponse

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, "stop"))
    times = []
    count = 0
    async with (
        LocalServer() as server,
        AsyncClient(api_key="k", base_url=server.base_url) as client,
    ):
        for _ in range(reps + 1):  # the first run warms up
            server.queue(SSEResponse(events))
            started = time.process_time()
            async with client.chat.completions.stream_parse(
                model="m",
                messages=[{"role": "user", "content": "x"}],
                response_format=dict[str, Any],
            ) as stream:
                if how == "text_deltas":
                    count = sum([1 async for _ in stream.text_deltas()])
                else:
                    count = sum([1 async for _ in stream.partial_objects()])
                await stream.get_final_parsed()
            times.append(time.process_time() - started)
    return min(times[1:]), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-stream", action="store_true", help="skip the client cases")
    args = parser.parse_args(argv)
    rng = random.Random(7)
    for kind, make in (("records", records), ("essay", essay)):
        for kb in SIZES_KB:
            text = make(kb * 1000, rng)
            pieces = _TOKEN.findall(text)
            assert "".join(pieces) == text
            for mode, fn in MODES.items():
                seconds, snapshots = best(fn, pieces, args.reps)
                line = {
                    "case": f"{kind}-{kb}kb-{mode}",
                    "bytes": len(text.encode()),
                    "chunks": len(pieces),
                    "snapshots": snapshots,
                    "total_ms": round(seconds * 1e3, 2),
                    "us_per_chunk": round(seconds * 1e6 / len(pieces), 2),
                }
                print(json.dumps(line), flush=True)
    if not args.no_stream:
        text = records(20_000, random.Random(7))
        pieces = _TOKEN.findall(text)
        for how in ("text_deltas", "partial_objects"):
            seconds, count = asyncio.run(stream_case(pieces, how, args.reps))
            line = {
                "case": f"stream-records-20kb-{how}",
                "bytes": len(text.encode()),
                "chunks": len(pieces),
                "yielded": count,
                "total_ms": round(seconds * 1e3, 2),
                "us_per_chunk": round(seconds * 1e6 / len(pieces), 2),
            }
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
