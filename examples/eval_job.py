"""A concurrent evaluation: ask every question of a small dataset at once and grade them.

    python examples/eval_job.py --local
    ANYAPI_API_KEY=sk-... python examples/eval_job.py --model gpt-5 --concurrency 8

One shared client; ``max_concurrency`` bounds the requests in flight. Each item records
its latency and the mean log probability of its answer's tokens (a cheap confidence
signal); the summary compares the wall time with the sum of the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import msgspec
from _common import add_target_arguments, open_client, wants_local

from anyapi_async import APIError, AsyncClient


class Item(msgspec.Struct):
    question: str
    answer: str


class Graded(msgspec.Struct):
    question: str
    expected: str
    reply: str
    correct: bool
    latency: float
    mean_logprob: float | None
    tokens: int
    error: str | None = None


DATASET = [
    Item("What is 7 * 6? Answer with the number only.", "42"),
    Item("What is the capital of France? One word.", "Paris"),
    Item("What is the chemical symbol for gold? Symbol only.", "Au"),
    Item("How many days are in a leap year? Number only.", "366"),
    Item("Which planet is known as the Red Planet? One word.", "Mars"),
    Item("What is the square root of 81? Number only.", "9"),
    Item("In which year did the Berlin Wall fall? Year only.", "1989"),
    Item("What gas do plants absorb from the air? Formula only.", "CO2"),
]


async def grade(client: AsyncClient, model: str, item: Item) -> Graded:
    started = time.perf_counter()
    try:
        c = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": item.question}],
            max_tokens=20,
            temperature=0,
            logprobs=True,
        )
    except APIError as exc:  # one failed item must not sink the whole run
        return Graded(
            item.question, item.answer, "", False, time.perf_counter() - started, None, 0, str(exc)
        )
    latency = time.perf_counter() - started
    choice = c.choices[0]
    reply = (choice.message.content or "").strip()
    entries = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
    mean = statistics.fmean(e.logprob for e in entries) if entries else None
    tokens = c.usage.completion_tokens if c.usage else len(entries)
    correct = item.answer.lower() in reply.lower()
    return Graded(item.question, item.answer, reply, correct, latency, mean, tokens)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--json", action="store_true", help="one JSON line per item")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    async with open_client(args, max_concurrency=args.concurrency) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(grade(client, args.model, item) for item in DATASET))
        wall = time.perf_counter() - started
    for r in results:
        if args.json:
            print(msgspec.json.encode(r).decode())
        else:
            mark = "ok " if r.correct else ("ERR" if r.error else "no ")
            conf = f"{r.mean_logprob:6.2f}" if r.mean_logprob is not None else "   n/a"
            print(
                f"{mark} {r.latency * 1000:6.0f} ms  logprob {conf}  {r.question[:44]:<44} "
                f"-> {(r.error or r.reply)[:40]!r}"
            )
    correct = sum(r.correct for r in results)
    errors = sum(r.error is not None for r in results)
    busy = sum(r.latency for r in results)
    print(
        f"accuracy {correct}/{len(results)} ({100 * correct / len(results):.0f}%) · "
        f"{errors} errors · {len(results)} requests in {wall:.2f} s "
        f"(sum of latencies {busy:.2f} s, {busy / wall:.1f}x overlap)"
    )
    if wants_local(args):
        print("(the local server answers placeholder prose, so it scores 0 here)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
