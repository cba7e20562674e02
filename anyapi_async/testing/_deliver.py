"""Sending a response event by event while applying ``Faults``.

Every wait here (delays, pacing, stalls) is a plain ``asyncio.sleep`` or future: the server
cancels its handlers when it closes, and aiohttp cancels one when its client disconnects
(``handler_cancellation=True``), so nothing here has to poll for either.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterable
from functools import partial
from typing import Final

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from ._script import DEFAULT_STREAM_ERROR, Faults

__all__ = ["deliver"]

#: Write sizes drawn for ``split_seed``: small, so boundaries land inside UTF-8
#: sequences, inside ``data:`` and between the two newlines that end an event.
SPLIT_SIZES: Final = (1, 16)


async def deliver(
    request: web.Request,
    *,
    status: int,
    headers: CIMultiDict[str],
    events: Iterable[bytes],
    sse: bool,
    faults: Faults,
) -> web.StreamResponse:
    """Send ``events`` as the body, misbehaving as ``faults`` say.

    ``events`` is taken one at a time as the client reads (a generated stream is made as
    it goes), except for a plain body, whose length is sent first.
    """
    if faults.first_byte_delay:
        await asyncio.sleep(faults.first_byte_delay)
    resp = web.StreamResponse(status=status, headers=headers)
    if sse or faults.error_after is not None:
        resp.enable_chunked_encoding()
    else:
        events = list(events)
        resp.content_length = sum(map(len, events))
    writer = _Writer(resp, faults)
    pending = iter(events)
    try:
        await resp.prepare(request)
        for i in itertools.count():
            if i == faults.cut_after:
                _abort(request)
                return resp
            if i == faults.error_after:
                error = faults.error if faults.error is not None else DEFAULT_STREAM_ERROR
                await writer.write(b"data: " + msgspec.json.encode({"error": error}) + b"\n\n")
                break
            if i == faults.stall_after:
                await writer.stall()
            event = next(pending, None)
            if event is None:
                break
            if faults.pace and i:
                await asyncio.sleep(faults.pace)
            if not await writer.write(event):
                _abort(request)  # cut_after_bytes reached
                return resp
        await resp.write_eof()
    except ConnectionError:
        pass  # the client left; aiohttp closes the connection
    return resp


def _abort(request: web.Request) -> None:
    # abort() drops the socket at once: no terminating zero-length chunk is sent, so the
    # client sees an incomplete transfer (aiohttp raises ClientPayloadError).
    if request.transport is not None:
        request.transport.abort()


class _Writer:
    __slots__ = ("_budget", "_faults", "_next_size", "_resp")

    def __init__(self, resp: web.StreamResponse, faults: Faults) -> None:
        self._resp = resp
        self._faults = faults
        self._budget = faults.cut_after_bytes
        self._next_size: Callable[[], int] | None = None
        if faults.trickle is not None:
            self._next_size = itertools.repeat(1).__next__
        elif faults.chunk_size is not None:
            self._next_size = itertools.repeat(faults.chunk_size).__next__
        elif faults.split_seed is not None:
            self._next_size = partial(random.Random(faults.split_seed).randint, *SPLIT_SIZES)

    async def write(self, data: bytes) -> bool:
        """Send ``data``; ``False`` if ``cut_after_bytes`` stopped it part-way."""
        cut = False
        if self._budget is not None:
            cut = len(data) >= self._budget
            data = data[: self._budget]
            self._budget -= len(data)
        next_size = self._next_size
        if next_size is None:
            await self._resp.write(data)
            return not cut
        start = 0
        while start < len(data):
            step = next_size()
            await self._resp.write(data[start : start + step])
            start += step
            # Yield so each piece can leave (and be read) on its own.
            await asyncio.sleep(self._faults.trickle or 0)
        return not cut

    async def stall(self) -> None:
        """Send nothing (or only keep-alive comments) until cancelled."""
        comment = self._faults.keepalive
        if comment is None:
            await asyncio.get_running_loop().create_future()
            return
        data = comment.encode()
        if not data.endswith(b"\n"):
            data += b"\n\n"
        while True:
            await asyncio.sleep(self._faults.keepalive_interval)
            await self._resp.write(data)
