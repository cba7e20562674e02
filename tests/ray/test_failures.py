"""A worker killed mid-run: Ray restarts it and retries its batches; each row comes out once."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from anyapi_async.testing import Generated

from ._helpers import PidReportingStage
from .conftest import RAY_MARKS, ThreadedServer
from .test_stage import KEY, body

pytestmark = RAY_MARKS

ROWS = 80
WAIT_SECONDS = 60.0


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_killed_actor_rows_are_answered_once(ray_server: ThreadedServer, tmp_path: Path) -> None:
    """SIGKILL one actor while its requests are in flight: every row once in the output."""
    ray_server.run(lambda: ray_server.server.set_default(Generated(first_byte_delay=0.1)))
    pids = tmp_path / "pids"
    pids.mkdir()
    ds = ray.data.from_items(
        [{"custom_id": f"r{i:03}", "body": body(i)} for i in range(ROWS)], override_num_blocks=8
    ).map_batches(
        PidReportingStage,
        batch_size=5,
        fn_constructor_kwargs={
            "pid_dir": str(pids),
            "base_url": ray_server.base_url,
            "api_key": KEY,
            "concurrency": 2,
        },
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.25,
    )
    killed: list[int] = []

    def kill_one() -> None:
        wait_for(lambda: len(ray_server.chat_requests()) >= 10, "requests in flight")
        victim = int(next(iter(pids.iterdir())).name)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    killer = threading.Thread(target=kill_one)
    killer.start()
    rows = list(ds.iter_rows())
    killer.join(WAIT_SECONDS)
    assert killed, "no actor was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    ids = sorted(str(r["custom_id"]) for r in rows)
    assert ids == [f"r{i:03}" for i in range(ROWS)]
    assert all(r["status_code"] == 200 and r["error"] is None for r in rows)
    # The restarted actor is a new process, which reported itself too.
    assert len(list(pids.iterdir())) >= 3
