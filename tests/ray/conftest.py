"""Ray fixtures: one local Ray for the session, and the local server on its own thread.

Ray's driver calls block (``take_all``, ``ray.get``), so the server runs its own event
loop on a thread; the workers reach it over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from anyapi_async.testing import LocalServer, Scripted

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if importlib.util.find_spec("ray") is None:
    # Without the ray extra these modules cannot be imported; the default run deselects
    # the `ray` marker anyway, and `pytest -m ray` then finds no tests and fails loudly.
    collect_ignore_glob = ["test_*.py"]

T = TypeVar("T")
#: Marks of every Ray test: the marker, and Ray's own deprecation notices kept out of the
#: warnings-are-errors rule (they are about Ray's settings, not ours).
RAY_MARKS = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]
#: What the tests may take from the machine (2 shared cores): more CPUs are declared than
#: exist, or an actor-pool pipeline can wait forever for a free CPU.
RAY_CPUS = 8
OBJECT_STORE_BYTES = 200 * 1024 * 1024
SAMPLE_SECONDS = 0.05


class ThreadedServer:
    """A `LocalServer` on a loop of its own thread, with a sampler counting arrivals."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: LocalServer = self.call(self._start())
        #: (loop time, requests received so far), every `SAMPLE_SECONDS` while sampling.
        self.samples: list[tuple[float, int]] = []
        self._sampler: asyncio.Future[None] | None = None

    async def _start(self) -> LocalServer:
        return await LocalServer().start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Callable[[], T]) -> T:
        """Run a plain call on the server's loop (its state belongs to that thread)."""

        async def call() -> T:
            return fn()

        return self.call(call())

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def queue(self, *responses: Scripted) -> None:
        self.run(lambda: self.server.queue(*responses))

    def reset(self) -> None:
        self.run(self.server.reset)
        self.server.set_default(None)

    def chat_requests(self) -> list[Any]:
        return self.run(lambda: list(self.server.requests_for("/chat/completions")))

    def start_sampling(self) -> None:
        async def sample() -> None:
            loop = asyncio.get_running_loop()
            while True:
                self.samples.append((loop.time(), len(self.server.requests)))
                await asyncio.sleep(SAMPLE_SECONDS)

        self.samples = []
        self._sampler = asyncio.run_coroutine_threadsafe(sample(), self.loop)  # type: ignore[assignment]

    def stop_sampling(self) -> list[tuple[float, int]]:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        return list(self.samples)

    def close(self) -> None:
        self.stop_sampling()
        self.call(self.server.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the whole session, shut down at the end."""
    import ray

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own, about its settings
        ray.init(
            num_cpus=RAY_CPUS,
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            log_to_driver=False,
            configure_logging=False,
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def threaded_server() -> Iterator[ThreadedServer]:
    """The local server on its own thread, for the session."""
    server = ThreadedServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def ray_server(ray_cluster: None, threaded_server: ThreadedServer) -> ThreadedServer:
    """The session's server, emptied of queued responses and recorded requests."""
    threaded_server.reset()
    return threaded_server
