"""The batch engine with a controllable send: laziness, bounds, order, errors, cancellation."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest

import anyapi_async as aa
from anyapi_async._batch import BatchResult, BatchRun, BatchStats, TqdmProgress

from .conftest import batch_tasks, wait_until


class Controlled:
    """A send whose answers the test gives, one request at a time."""

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[aa.ChatCompletion]] = {}
        self.cancelled: list[int] = []

    async def __call__(self, client: aa.AsyncClient, params: dict[str, Any]) -> aa.ChatCompletion:
        i: int = params["i"]
        future: asyncio.Future[aa.ChatCompletion] = asyncio.get_running_loop().create_future()
        self.futures[i] = future
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled.append(i)
            raise

    @property
    def sent(self) -> int:
        return len(self.futures)

    def answer(self, *indexes: int) -> None:
        for i in indexes:
            self.futures[i].set_result(aa.ChatCompletion(id=f"c{i}"))

    def fail(self, i: int, exc: Exception) -> None:
        self.futures[i].set_exception(exc)


class Counted:
    """An input that counts how many items were taken from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(self.n):
            self.taken += 1
            yield {"i": i, "custom_id": f"id-{i}"}


@pytest.fixture
async def idle_client() -> AsyncIterator[aa.AsyncClient]:
    """A client the fake send never uses for I/O."""
    async with aa.AsyncClient(api_key="k", base_url="http://127.0.0.1:9/v1") as c:
        yield c


@pytest.fixture
def send() -> Controlled:
    return Controlled()


def bad_request(message: str = "bad") -> aa.BadRequestError:
    return aa.BadRequestError(message, status_code=400, body=None, headers={})


async def test_input_is_read_lazily_and_in_flight_is_bounded(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """Only `concurrency` items are taken from the input until a result is consumed."""
    items = Counted(1000)
    run = BatchRun(idle_client, items, concurrency=4, send=send)
    async with run:
        results = aiter(run)
        first = asyncio.ensure_future(anext(results))
        await wait_until(lambda: send.sent == 4)
        assert items.taken == 4 and run.stats.in_flight == 4
        send.answer(2)
        result = await first
        assert (result.index, result.custom_id, result.ok) == (2, "id-2", True)
        assert items.taken == 4  # nothing new until the consumer asks again
        second = asyncio.ensure_future(anext(results))
        await wait_until(lambda: send.sent == 5)
        assert items.taken == 5
        send.answer(0)
        assert (await second).index == 0
    assert batch_tasks() == []
    assert sorted(send.cancelled) == [1, 3, 4]


async def test_ordered_mode_buffers_within_the_bound(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """Results finished early wait for earlier ones, holding their slots meanwhile."""
    items = Counted(6)
    run = BatchRun(idle_client, items, concurrency=3, ordered=True, send=send)
    got: list[int] = []

    async def consume() -> None:
        async for r in run:
            got.append(r.index)

    consumer = asyncio.create_task(consume())
    await wait_until(lambda: send.sent == 3)
    send.answer(2, 1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got == [] and items.taken == 3  # 1 and 2 buffered: no slot free for item 3
    send.answer(0)
    await wait_until(lambda: send.sent == 6)
    assert got == [0, 1, 2]
    send.answer(5, 3, 4)
    await consumer
    assert got == [0, 1, 2, 3, 4, 5]


async def test_unordered_mode_yields_in_completion_order(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """Without ordered=True a result comes out as soon as it is done."""
    run = BatchRun(idle_client, Counted(5), concurrency=5, send=send)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: send.sent == 5)
    send.answer(4, 2, 0, 3, 1)
    assert [r.index for r in await consumer] == [4, 2, 0, 3, 1]


async def _collect(run: BatchRun) -> list[BatchResult]:
    return [r async for r in run]


async def test_a_failure_does_not_stop_the_others(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """A failed request is a result with `error`; the rest carry on."""
    run = BatchRun(idle_client, Counted(4), concurrency=4, send=send)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: send.sent == 4)
    send.fail(1, bad_request())
    send.answer(0, 2, 3)
    results = {r.index: r for r in await consumer}
    assert isinstance(results[1].error, aa.BadRequestError) and results[1].completion is None
    assert results[1].attempts == 1 and results[1].error.attempts == 1
    assert [results[i].completion.id for i in (0, 2, 3)] == ["c0", "c2", "c3"]  # type: ignore[union-attr]
    assert (run.stats.succeeded, run.stats.failed, run.stats.in_flight) == (3, 1, 0)


async def test_stop_on_error_raises_and_cancels_the_rest(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """stop_on_error=True: the first error raises out of the loop; nothing is left running."""
    run = BatchRun(idle_client, Counted(10), concurrency=3, stop_on_error=True, send=send)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: send.sent == 3)
    send.fail(1, bad_request("item 1 is wrong"))
    with pytest.raises(aa.BadRequestError, match="item 1 is wrong"):
        await consumer
    assert sorted(send.cancelled) == [0, 2]
    assert batch_tasks() == []


async def test_leaving_the_loop_inside_async_with_cancels_in_flight(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """Leaving the loop early cancels and awaits the requests still in flight."""

    async def first_index() -> int:
        async with BatchRun(idle_client, Counted(100), concurrency=8, send=send) as run:
            async for result in run:
                return result.index
        raise AssertionError("no result")  # pragma: no cover

    consumer = asyncio.create_task(first_index())
    await wait_until(lambda: send.sent == 8)
    send.answer(5)
    assert await consumer == 5
    assert sorted(send.cancelled) == [0, 1, 2, 3, 4, 6, 7]
    assert batch_tasks() == []


async def test_cancelling_the_consumer_cancels_in_flight(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """A cancelled consumer leaves no request task behind."""
    run = BatchRun(idle_client, Counted(100), concurrency=6, send=send)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: send.sent == 6)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert sorted(send.cancelled) == list(range(6))
    assert batch_tasks() == [] and run.stats.finished


async def test_async_input_keeps_results_flowing_while_it_waits(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """A slow async input does not hold back results of requests already sent."""
    more = asyncio.Event()

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {"i": 0}
        yield {"i": 1}
        await more.wait()
        yield {"i": 2}

    run = BatchRun(idle_client, requests(), concurrency=8, send=send)
    results = aiter(run)
    first = asyncio.ensure_future(anext(results))
    await wait_until(lambda: send.sent == 2)
    send.answer(1)
    assert (await first).index == 1  # delivered although the input is still waiting
    more.set()
    second = asyncio.ensure_future(anext(results))  # the consumer asks: item 2 is started
    await wait_until(lambda: send.sent == 3)
    send.answer(0, 2)
    assert sorted([(await second).index, (await anext(results)).index]) == [0, 2]
    with pytest.raises(StopAsyncIteration):
        await anext(results)


async def test_an_input_error_propagates_after_cancelling(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """An exception raised by the input itself ends the run, in-flight work cancelled."""

    def requests() -> Iterator[dict[str, Any]]:
        yield {"i": 0}
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        async for _ in BatchRun(idle_client, requests(), send=send):
            pass  # pragma: no cover - nothing finishes before the error
    # Item 0's task was cancelled before its first step, so it never reached send.
    assert send.sent == 0 and batch_tasks() == []


async def test_items_refused_before_any_io(idle_client: aa.AsyncClient) -> None:
    """Not a dict, stream=True, a bad custom_id or body: error results with 0 attempts."""
    items: list[Any] = [
        "not a dict",
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
        {"custom_id": 7, "body": {}},
        {"custom_id": "x", "body": "text"},
        {"model": "", "messages": []},  # create() itself refuses it
    ]
    async with BatchRun(idle_client, items, ordered=True) as run:
        results = [r async for r in run]
    errors = [type(r.error) for r in results]
    assert errors == [TypeError, ValueError, TypeError, TypeError, ValueError]
    assert all(r.attempts == 0 and r.completion is None for r in results)
    assert "stream" in str(results[1].error)


async def test_progress_callback_sees_the_whole_run(
    idle_client: aa.AsyncClient, send: Controlled
) -> None:
    """Called at the start, after each result, and once more with finished=True."""
    seen: list[tuple[int, int, bool, int | None]] = []

    def progress(stats: BatchStats) -> None:
        seen.append((stats.done, stats.failed, stats.finished, stats.total))

    items = [{"i": i} for i in range(3)]
    run = BatchRun(idle_client, items, send=send, progress=progress)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: send.sent == 3)
    send.answer(0, 2)
    send.fail(1, bad_request())
    await consumer
    assert seen[0] == (0, 0, False, 3)
    assert seen[-1] == (3, 1, True, 3)
    assert [done for done, *_ in seen] == [0, 1, 2, 3, 3]
    assert run.stats.rate > 0 and run.stats.eta == 0


class FakeBar:
    instances: ClassVar[list[FakeBar]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.total = kwargs.get("total")
        self.n = 0
        self.postfix = ""
        self.closed = 0
        FakeBar.instances.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        self.closed += 1


async def test_tqdm_display_counts_and_closes(
    idle_client: aa.AsyncClient, send: Controlled, monkeypatch: pytest.MonkeyPatch
) -> None:
    """progress=True draws a tqdm bar: total, done, ok/failed/in-flight; closed at the end."""
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    FakeBar.instances.clear()
    run = BatchRun(idle_client, [{"i": 0}, {"i": 1}], send=send, progress=True)
    consumer = asyncio.create_task(_collect(run))
    await wait_until(lambda: send.sent == 2)
    send.answer(0)
    send.fail(1, bad_request())
    await consumer
    [bar] = FakeBar.instances
    assert (bar.total, bar.n, bar.closed) == (2, 2, 1)
    assert bar.postfix == "ok=1 failed=1 in_flight=0"
    assert bar.kwargs["unit"] == "req"


def test_tqdm_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm the display says which extra to install."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'anyapi-async\[progress\]'"):
        TqdmProgress()


async def test_bad_arguments(idle_client: aa.AsyncClient) -> None:
    """Bad concurrency, limiter with rpm, a str as input, a second iteration: refused."""
    with pytest.raises(ValueError, match="concurrency"):
        idle_client.chat.completions.batch([], concurrency=0)
    with pytest.raises(ValueError, match="either limiter"):
        idle_client.chat.completions.batch([], rpm=10, limiter=aa._ratelimit.RateLimiter())
    with pytest.raises(TypeError, match="iterable"):
        idle_client.chat.completions.batch("abc")  # type: ignore[arg-type]
    run = idle_client.chat.completions.batch([])
    assert [r async for r in run] == []
    with pytest.raises(RuntimeError, match="once"):
        aiter(run)
