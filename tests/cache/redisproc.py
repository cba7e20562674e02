"""A ``redis-server`` the tests start on a free loopback port (and the skip marks when absent).

``.ci/run`` installs redis-server; without the binary (or redis-py) the tests using it skip,
saying which is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")

try:
    import redis  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_REDIS_PY = False
else:
    HAVE_REDIS_PY = True

REDIS_MARKS = [
    pytest.mark.skipif(
        REDIS_SERVER is None,
        reason="redis-server is not installed (apt-get install redis-server; .ci/run does)",
    ),
    pytest.mark.skipif(
        not HAVE_REDIS_PY, reason="redis-py is not installed (pip install 'anyapi-async[redis]')"
    ),
]


class RedisServer:
    """A redis-server process on 127.0.0.1, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        # Wait on its own word that it listens (no polling, no sleep).
        for line in self.proc.stdout:
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server did not start (exit code {self.proc.wait()})")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None


def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()
