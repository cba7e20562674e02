"""``anyapi batch --engine ray``: the resumable JSONL job, its requests sent by Ray actors.

The driver does with the files exactly what the local engine does, with the same code
(`.plan.open_job`): it locks the output, repairs a torn last line, skips the
requests already answered (or, with ``retry_failed``, those that succeeded), writes the
invalid lines, and appends every result as one whole line. Only the sending moves: the
pending requests go to ``workers`` actors in batches, each actor running them through one
client (`anyapi_async.ray.ChatCompletions`: concurrency, retries, the shared `RateBudget`
for ``rpm``/``tpm``), and the lines come back to the driver to be written.

It stops early as the local engine does (exit status 3 of ``anyapi batch``): at once when
the key or account is refused, after a run of unreachable-endpoint failures otherwise.
So the output gets exactly one line per input line however the run ends: a result is
written by the driver only, after its request is answered. What is not exactly-once is the
API call: the requests in flight when the driver is killed are sent again on the next run,
and a batch whose actor dies is sent again to the restarted actor.

Ray is imported when a job runs; without an address (or ``RAY_ADDRESS``) a local Ray is
started for the job and shut down at the end (a local Ray also dies with a killed driver).
Connecting to a cluster is bounded (``connect_timeout``; Ray itself retries for minutes)
and gives way to SIGTERM and Ctrl-C: that ``ray.init`` runs on a thread of its own while
the event loop waits for it, since a main thread blocked in Ray's connect sees no signal.

With ``rate_budget`` the job draws from a named `RateBudget` that other jobs (or a Ray Data
stage) name too, so they share one rate; it outlives the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from .._batch import BatchStats, ProgressCallback
from .._exceptions import JobStopped
from .._records import JobSummary

# Ray too: this module is loaded only for --engine ray.
from ..ray import ChatCompletions, RateBudget
from .files import InputItem, count_lines
from .plan import DEFAULT_JOB_CONCURRENCY, Breaker, JobFiles, Line, answer_line, open_job

if TYPE_CHECKING:
    from ray.actor import ActorHandle

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_WORKERS",
    "ENV_CONNECT_TIMEOUT",
    "WORKER_NUM_CPUS",
    "connect_timeout_from_env",
    "run_jsonl_job_on_ray",
    "split_concurrency",
]

DEFAULT_WORKERS: Final = 2
#: CPUs each actor reserves: they mostly wait on the network.
WORKER_NUM_CPUS: Final = 0.25
#: Batches queued on each actor, so that it never waits for the driver between two.
BATCHES_PER_WORKER: Final = 2
MIN_BATCH: Final = 16
#: Times a batch is sent again after its actor died before the job gives up.
MAX_RESENDS: Final = 5
#: Object store of a local Ray started for the job (batches are small).
LOCAL_OBJECT_STORE_BYTES: Final = 200 * 1024 * 1024
#: Seconds to wait for a Ray cluster to answer (``anyapi batch --ray-connect-timeout``).
DEFAULT_CONNECT_TIMEOUT: Final = 30.0
#: Environment variable overriding `DEFAULT_CONNECT_TIMEOUT`.
ENV_CONNECT_TIMEOUT: Final = "ANYAPI_RAY_CONNECT_TIMEOUT"
#: Ray's warning when ``ray.init`` runs off the main thread: expected here, not news.
_OFF_MAIN_THREAD_WARNING: Final = "SIGTERM handler is not set"

#: (custom_id, fingerprint, body) of one request; what an actor gets. It returns a `Line`
#: per request (what the driver's `Breaker` needs).
Item = tuple[str, str, dict[str, Any]]


class JobWorker:
    """A Ray actor sending the requests of the batches the driver hands it."""

    def __init__(self, stage: dict[str, Any]) -> None:
        self._stage = ChatCompletions(**stage)

    async def run(self, items: list[Item]) -> list[Line]:
        """Answer every item; a result line for each, in the order given."""
        lines: dict[int, Line] = {}
        async for result in self._stage.answer([body for _, _, body in items]):
            custom_id, fingerprint, _ = items[result.index]
            lines[result.index] = answer_line(
                custom_id, fingerprint, result.completion, result.error
            )
        return [lines[i] for i in range(len(items))]


def _start_ray(address: str | None, workers: int) -> bool:
    """Connect to Ray (starting a local one when there is no address); True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # Enough declared CPUs for the actors whatever the machine has.
        options["num_cpus"] = max(os.cpu_count() or 1, math.ceil(workers * WORKER_NUM_CPUS))
        options["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
    ray.init(address=address, **options)
    return True


def connect_timeout_from_env() -> float:
    """`ENV_CONNECT_TIMEOUT` in seconds if set, else `DEFAULT_CONNECT_TIMEOUT`."""
    text = os.environ.get(ENV_CONNECT_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"{ENV_CONNECT_TIMEOUT} must be a number of seconds > 0, got {text!r}")
    return value


def _target(address: str | None) -> str | None:
    """The cluster ``ray.init(address)`` connects to; None when it starts a local Ray."""
    target = address if address is not None else os.environ.get("RAY_ADDRESS")
    return None if not target or target == "local" else target


def _check_client(address: str | None) -> None:
    """A ``ray://`` address needs Ray Client (``ray[client]``): say so before any I/O."""
    target = _target(address) or ""
    if not target.startswith("ray://"):
        return
    if importlib.util.find_spec("grpc") is None:  # what ray[client] adds
        raise ValueError(
            f"the Ray address {target} needs Ray Client (ray[client]): "
            "pip install 'anyapi-async[ray]'"
        )


class _Terminated(Exception):
    """SIGTERM came while connecting to Ray."""


class _QuietOffMainThread(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_OFF_MAIN_THREAD_WARNING)


async def _connect(
    address: str | None,
    workers: int,
    timeout: float,
    on_notice: Callable[[str], object] | None = None,
) -> bool:
    """`_start_ray`; connecting to a cluster, on a thread of its own, bounded by
    ``timeout``, SIGTERM stopping the wait with `_Terminated` (Ctrl-C cancels it as usual).
    ``on_notice`` hears that it connects once SIGTERM is caught.

    A connect given up on is left to finish on its daemon thread (it cannot be
    interrupted), and disconnected if it ever succeeds.
    """
    import ray

    if ray.is_initialized() or _target(address) is None:
        # The caller's Ray, or a local one started on this thread, blocking the loop while
        # nothing else runs: Ray's processes die with the thread that started them
        # (PR_SET_PDEATHSIG), and starting them has timeouts of its own.
        return _start_ray(address, workers)
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[bool] = loop.create_future()
    terminated: asyncio.Future[None] = loop.create_future()
    abandoned = threading.Event()
    ray_logger = logging.getLogger("ray._private.worker")
    quiet = _QuietOffMainThread()

    def settle(result: bool, error: BaseException | None) -> None:
        if outcome.done():
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)

    def connect() -> None:
        result, error = False, None
        try:
            result = _start_ray(address, workers)
        except BaseException as exc:
            error = exc
        if abandoned.is_set():
            if result:
                ray.shutdown()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    def on_sigterm() -> None:
        if not terminated.done():
            terminated.set_result(None)

    previous = signal.getsignal(signal.SIGTERM)
    sigterm = _catch_sigterm(loop, on_sigterm)
    ray_logger.addFilter(quiet)
    ours = False
    try:
        if on_notice is not None:
            on_notice(f"connecting to Ray at {_target(address)} (at most {timeout:g} s)")
        threading.Thread(target=connect, name="anyapi-ray-connect", daemon=True).start()
        done, _ = await asyncio.wait(
            (outcome, terminated), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if outcome in done:
            ours = outcome.result()
            return ours
        abandoned.set()
        if terminated in done:
            raise _Terminated
        raise ConnectionError(
            f"no answer within {timeout:g} s (--ray-connect-timeout, ${ENV_CONNECT_TIMEOUT})"
        )
    except BaseException:
        abandoned.set()
        raise
    finally:
        ray_logger.removeFilter(quiet)
        if sigterm:
            loop.remove_signal_handler(signal.SIGTERM)
            # Connected: what ray.init does on the main thread, so that SIGTERM exits
            # through the finally blocks that remove the job's actors and budget. Else
            # the handler we found.
            restore = previous if previous is not None else signal.SIG_DFL
            signal.signal(signal.SIGTERM, _exit_on_sigterm if ours else restore)


def _catch_sigterm(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
    """Route SIGTERM to ``callback`` on the loop, if this thread may (the main one, POSIX)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        loop.add_signal_handler(signal.SIGTERM, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main loop
        return False
    return True


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(signum)


def split_concurrency(concurrency: int, workers: int) -> list[int]:
    """Each worker's share of ``concurrency``, adding up to it exactly (at least 1 each:
    with fewer requests in flight than workers, fewer workers)."""
    workers = min(workers, concurrency)
    base, extra = divmod(concurrency, workers)
    return [base + (i < extra) for i in range(workers)]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


class _Batch:
    __slots__ = ("items", "resends", "worker")

    def __init__(self, worker: int, items: list[InputItem]) -> None:
        self.worker = worker
        self.items = items
        self.resends = 0


async def run_jsonl_job_on_ray(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    concurrency: int = DEFAULT_JOB_CONCURRENCY,
    rpm: float | None = None,
    tpm: float | None = None,
    workers: int = DEFAULT_WORKERS,
    address: str | None = None,
    connect_timeout: float | None = None,
    rate_budget: str | None = None,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
    on_invalid_line: Callable[[int, str], object] | None = None,
    on_notice: Callable[[str], object] | None = None,
    cache: str | None = None,
) -> JobSummary:
    """`run_jsonl_job` with the requests sent by ``workers`` Ray actors.

    ``concurrency`` is the total in flight, split exactly between the actors (fewer actors
    when it is below ``workers``); ``rpm``/``tpm`` one budget for all of them: this job's
    own, removed at its end, or with ``rate_budget`` the named `RateBudget` every job
    naming it shares (it stays). ``address`` is a Ray cluster's (default: ``RAY_ADDRESS``,
    else a local Ray started for the job); connecting gives up after ``connect_timeout``
    seconds (default: ``ANYAPI_RAY_CONNECT_TIMEOUT``, else 30) with `JobStopped`. The
    files, the resume and ``retry_failed`` are the local engine's; see the module
    docstring for what is exactly-once. ``cache`` is the actors' response cache (a
    ``redis://`` URL shared by all of them, or a SQLite path: `ChatCompletions`).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if connect_timeout is None:
        connect_timeout = connect_timeout_from_env()
    elif (
        isinstance(connect_timeout, bool)
        or not isinstance(connect_timeout, (int, float))
        or not 0 < connect_timeout < math.inf
    ):
        raise ValueError(f"connect_timeout must be seconds > 0, got {connect_timeout!r}")
    if rate_budget is not None:
        if not isinstance(rate_budget, str) or not rate_budget.strip():
            raise ValueError(f"rate_budget must be a non-empty name, got {rate_budget!r}")
        if rpm is None and tpm is None:
            raise ValueError("a shared rate budget (--rate-budget) needs --rpm or --tpm")
    _check_client(address)
    shares = split_concurrency(concurrency, workers)
    own_budget: str | None = None
    stage: dict[str, Any] = {
        "base_url": base_url,
        "api_key": api_key,
        "concurrency": shares[0],
        "rpm": rpm,
        "tpm": tpm,
        "max_retries": max_retries,
        "timeout": timeout,
        "cache": cache,
    }
    ChatCompletions(**stage)  # the settings' mistakes, before any file or Ray is touched
    if rate_budget is not None:
        stage["budget"] = rate_budget  # shared with every job naming it: it stays
    elif rpm is not None or tpm is not None:
        # This job's own budget, removed at its end: on a long-lived cluster a budget
        # actor left behind would keep the rate it adapted to for the next job.
        stage["budget"] = f"anyapi-job-{uuid.uuid4().hex[:16]}"
        own_budget = stage["budget"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    files = open_job(
        input_path, output_path, model=model, retry_failed=retry_failed, on_notice=on_notice
    )
    summary = files.summary
    try:
        stats = BatchStats(max(0, count_lines(files.source) - files.recorded))

        def skipped(n: int) -> None:
            stats.skipped = n

        files.on_skip = skipped
        import ray

        try:
            try:
                ours = await _connect(address, len(shares), connect_timeout, on_notice)
            except _Terminated:
                where = f" at {address}" if address else ""
                raise JobStopped(
                    f"stopped: terminated (SIGTERM) while connecting to Ray{where}. The "
                    "results written so far are kept: run the same job again to resume",
                    summary,
                ) from None
            try:
                await _drive(
                    files.pending(on_invalid_line), files, stage, shares, stats, progress,
                    own_budget,
                )  # fmt: skip
            finally:
                if ours:
                    ray.shutdown()
        except (ConnectionError, ray.exceptions.RayError) as exc:
            # ray.init's ConnectionError is an OSError: not "cannot open INPUT" for the CLI.
            where = f" at {address}" if address else ""
            raise JobStopped(
                f"stopped: Ray{where} failed: {_one_line(exc)}. The results written so far "
                "are kept: fix Ray (or --ray-address) and run the same job again to resume",
                summary,
                exc,
            ) from exc
    finally:
        files.close()
        stats.finished = True
        if progress is not None:
            progress(stats)
    summary.elapsed = loop.time() - started
    return summary


async def _drive(
    pending: Iterator[InputItem],
    files: JobFiles,
    stage: dict[str, Any],
    shares: list[int],
    stats: BatchStats,
    progress: ProgressCallback | None,
    own_budget: str | None,
) -> None:
    """Hand the pending items to the actors (``shares``: each one's concurrency) and write
    what comes back; remove ``own_budget`` (the job's own budget actor) at the end."""
    import ray

    remote: Any = ray.remote(JobWorker)
    options = remote.options(num_cpus=WORKER_NUM_CPUS, max_restarts=-1, max_task_retries=0)
    actors: list[ActorHandle[JobWorker]] = [
        options.remote(dict(stage, concurrency=share)) for share in shares
    ]
    workers = len(shares)
    sizes = [max(MIN_BATCH, 2 * share) for share in shares]
    load = [0] * workers
    running: dict[asyncio.Future[list[Line]], _Batch] = {}

    def send(batch: _Batch) -> None:
        items = [(i.custom_id, i.fingerprint, i.body) for i in batch.items]
        ref = actors[batch.worker].run.remote(items)
        running[asyncio.wrap_future(ref.future())] = batch
        load[batch.worker] += 1

    breaker = Breaker(files)
    exhausted = False
    try:
        while True:
            while not exhausted:
                worker = min(range(workers), key=load.__getitem__)
                if load[worker] >= BATCHES_PER_WORKER:
                    break
                chunk = list(islice(pending, sizes[worker]))
                if not chunk:
                    exhausted = True
                    break
                send(_Batch(worker, chunk))
                stats.started += len(chunk)
                stats.in_flight += len(chunk)
            if progress is not None:
                progress(stats)
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                batch = running.pop(future)
                load[batch.worker] -= 1
                try:
                    lines = future.result()
                except ray.exceptions.RayActorError:
                    # The actor died (Ray restarts it): its requests go again.
                    if batch.resends >= MAX_RESENDS:
                        raise
                    batch.resends += 1
                    send(batch)
                    continue
                for line in lines:
                    breaker.add(*line)
                    if line[1]:
                        stats.succeeded += 1
                    else:
                        stats.failed += 1
                stats.in_flight -= len(lines)
        breaker.finish()
    finally:
        for future in running:
            future.cancel()
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if own_budget is not None:
            with contextlib.suppress(Exception):
                RateBudget.remove(own_budget)
