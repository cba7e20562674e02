"""``anyapi demo``: the library against its own local server, in a few seconds, offline.

It starts `anyapi_async.testing.LocalServer` in this process and shows four things: a
streamed reply arriving token by token (the server paces its tokens so the eye can follow),
a non-streaming call with its usage, logprobs with their top alternatives, and a fan-out of
concurrent requests against one with a fixed latency, timed against doing them one by one.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from ._client import AsyncClient
    from .testing import LocalServer

__all__ = ["run_demo"]

MODEL: Final = "anyapi-local"
#: Seconds between streamed tokens: slow enough to watch, fast enough to keep the demo short.
TOKEN_PACE: Final = 0.012
STREAM_TOKENS: Final = 60
#: Latency of each fan-out request, and how many run sequentially and concurrently.
FAN_OUT_LATENCY: Final = 0.1
SEQUENTIAL: Final = 3
CONCURRENT: Final = 24
TOP_LOGPROBS: Final = 3


class _Printer:
    """Writes to the terminal, flushing each piece; colours only on a colour terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        isatty = getattr(out, "isatty", None)
        self.color = bool(isatty and isatty()) and "NO_COLOR" not in os.environ

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def heading(self, number: int, title: str) -> None:
        self.write("\n" + self.style(f"{number}. {title}", "1") + "\n")

    def note(self, text: str) -> None:
        self.write(self.style(text, "2") + "\n")


async def _streamed(client: AsyncClient, server: LocalServer, p: _Printer) -> None:
    from .testing import Generated

    p.heading(1, "A streamed reply, token by token")
    server.set_default(Generated(pace=TOKEN_PACE))
    pieces = 0
    async with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me something about streams."}],
        max_tokens=STREAM_TOKENS,
        stream_options={"include_usage": True},
    ) as stream:
        p.write("   ")
        async for text in stream.text_deltas():
            # On a terminal, alternate shades so each token's boundaries show.
            shade = "48;5;236" if pieces % 2 else "48;5;238"
            p.write(p.style(text.replace("\n", "\n   "), shade))
            pieces += 1
        final = await stream.get_final_completion()
    server.set_default(None)
    timings = final.http.timings if final.http is not None else None
    ttft = timings.time_to_first_token if timings is not None else None
    total = timings.total if timings is not None else None
    p.write("\n")
    p.note(
        f"   {pieces} text deltas · first token after "
        f"{(ttft or 0) * 1000:.0f} ms · {(total or 0):.2f} s in all "
        f"(the server waits {TOKEN_PACE * 1000:.0f} ms between tokens)"
    )


async def _non_streaming(client: AsyncClient, p: _Printer) -> None:
    p.heading(2, "A non-streaming call, with usage")
    c = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello in a few words."},
        ],
        max_tokens=16,
    )
    choice = c.choices[0]
    p.write(f"   reply: {choice.message.content!r}\n")
    p.write(f"   finish_reason: {choice.finish_reason}\n")
    if c.usage is not None:
        u = c.usage
        p.write(
            f"   usage: {u.prompt_tokens} prompt + {u.completion_tokens} completion "
            f"= {u.total_tokens} tokens\n"
        )
    if c.http is not None:
        total = c.http.timings.total or 0.0
        p.note(f"   request id {c.http.request_id} · {total * 1000:.1f} ms")


async def _logprobs(client: AsyncClient, p: _Printer) -> None:
    p.heading(3, f"Logprobs, with the top {TOP_LOGPROBS} alternatives of each token")
    async with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=6,
        logprobs=True,
        top_logprobs=TOP_LOGPROBS,
    ) as stream:
        entries = [entry async for entry in stream.logprobs()]
    width = max(len(repr(e.token)) for e in entries) if entries else 8
    p.write(f"   {'token':<{width}}  {'logprob':>7}  {'p':>5}  top alternatives\n")
    for e in entries:
        alternatives = "  ".join(f"{t.token!r} {t.logprob:.2f}" for t in e.top_logprobs)
        chance = math.exp(e.logprob)
        p.write(f"   {e.token!r:<{width}}  {e.logprob:>7.3f}  {chance:>5.1%}  {alternatives}\n")


async def _fan_out(client: AsyncClient, server: LocalServer, p: _Printer) -> None:
    from .testing import Generated

    p.heading(4, f"A concurrent fan-out ({FAN_OUT_LATENCY * 1000:.0f} ms of latency per request)")
    server.set_default(Generated(first_byte_delay=FAN_OUT_LATENCY))

    async def ask(i: int) -> int:
        c = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Question {i}"}], max_tokens=8
        )
        return c.usage.completion_tokens if c.usage else 0

    started = time.perf_counter()
    for i in range(SEQUENTIAL):
        await ask(i)
    one_by_one = (time.perf_counter() - started) / SEQUENTIAL
    server.reset()
    started = time.perf_counter()
    tokens = await asyncio.gather(*(ask(i) for i in range(CONCURRENT)))
    together = time.perf_counter() - started
    server.set_default(None)
    p.write(f"   one at a time:  {one_by_one:.2f} s per request\n")
    p.write(
        f"   {CONCURRENT} at once:     {together:.2f} s for all of them "
        f"({CONCURRENT * one_by_one / together:.0f}x faster than one by one), "
        f"{sum(tokens)} tokens\n"
    )
    p.note(
        f"   at most {server.max_in_flight} requests in flight, over "
        f"{server.connections} pooled connections"
    )


async def run_demo(out: TextIO) -> None:
    """Run the demo, writing to ``out``."""
    from ._client import AsyncClient
    from .testing import LocalServer

    p = _Printer(out)
    started = time.perf_counter()
    async with (
        LocalServer(model=MODEL) as server,
        AsyncClient(api_key="demo", base_url=server.base_url) as client,
    ):
        p.write(p.style("anyapi demo", "1") + " — anyapi-async against its built-in server\n")
        p.note(f"local server: {server.base_url} (no network, no API key)")
        await _streamed(client, server, p)
        await _non_streaming(client, p)
        await _logprobs(client, p)
        await _fan_out(client, server, p)
    p.write(f"\ndone in {time.perf_counter() - started:.1f} s. ")
    p.write("Next: `anyapi chat --help`, and docs/getting-started.md.\n")
