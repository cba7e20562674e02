"""`SQLiteCache`: one file (stdlib ``sqlite3``, WAL mode) shared by the processes using it.

Reads and writes are one statement on the event loop's thread (tens of microseconds: a
hop to a thread costs more, measured in benchmarks/bench_cache.py). A write that finds
another process holding the lock does not wait on the loop: it is handed to a worker
thread of the cache's own, which waits for it. The WAL checkpoints and the eviction,
which do the file's larger I/O, run on that thread too, every few MiB written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from ._base import DEFAULT_RETRY_INTERVAL, Backoff

__all__ = ["DEFAULT_MAX_SIZE", "SQLiteCache"]

#: Bytes of live data a `SQLiteCache` file may hold before the oldest entries go.
DEFAULT_MAX_SIZE: Final = 1024 * 1024 * 1024

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS anyapi_cache ("
    " key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL,"
    " created REAL NOT NULL, expires REAL)",
    "CREATE INDEX IF NOT EXISTS anyapi_cache_created ON anyapi_cache (created)",
)
#: The loop's connection never waits for a lock (a busy write goes to the thread, a read
#: in WAL mode does not need one); the thread's waits this long (ms).
_LOOP_BUSY_MS: Final = 0
_WRITE_BUSY_MS: Final = 5000
#: Bytes written between two maintenance passes (checkpoint, expiry, eviction).
_MAINTAIN_EVERY: Final = 4 * 1024 * 1024
_INSERT: Final = (
    "INSERT OR REPLACE INTO anyapi_cache (key, value, size, created, expires)"
    " VALUES (?, ?, ?, ?, ?)"
)
#: Eviction brings the live data down to this share of max_size.
_EVICT_TO: Final = 0.9


def _connect(path: str, busy_ms: int) -> sqlite3.Connection:
    # Setting the file up waits for another process doing the same (once per connection).
    conn = sqlite3.connect(path, timeout=_WRITE_BUSY_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    give_up = time.monotonic() + _WRITE_BUSY_MS / 1000
    try:
        while True:
            try:
                _set_up(conn)
                break
            except sqlite3.OperationalError as exc:
                # Two processes switching a new file to WAL at once: SQLite may answer
                # "locked" at once rather than through the busy timeout. Try again within
                # the same budget.
                if "locked" not in str(exc) or time.monotonic() >= give_up:
                    raise
                time.sleep(0.01)
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    except BaseException:
        conn.close()
        raise
    return conn


def _set_up(conn: sqlite3.Connection) -> None:
    # Checkpoints copy the WAL into the file: the writer thread does them.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in _SCHEMA:
        conn.execute(statement)


class SQLiteCache:
    """Responses kept in one SQLite file: the embedded default.

    Several processes may use the same file at once (WAL mode: readers never wait for the
    writer). ``ttl`` (seconds, ``None``: forever) bounds how long an entry is served;
    past ``max_size`` bytes of live data the oldest entries are evicted. A file that is
    corrupt, locked or unwritable never fails a call: the client warns once and sends
    calls to the server, trying the file again every ``retry_interval`` seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        ttl: float | None = None,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        namespace: str = "",
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be > 0 seconds, or None")
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError("max_size must be an int >= 1 (bytes)")
        self.path = os.path.expanduser(os.fspath(path))
        self.ttl = ttl
        self.max_size = max_size
        #: Separates tenants sharing a file: part of every key.
        self.namespace = namespace
        self._backoff = Backoff(retry_interval)
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._written = 0
        self._maintain_every = min(_MAINTAIN_EVERY, max(1, max_size // 64))

    def _read_conn(self) -> sqlite3.Connection:
        conn = self._reader
        if conn is None:
            self._backoff.check(f"The cache file {self.path}")
            try:
                parent = os.path.dirname(self.path)
                if parent:
                    os.makedirs(parent, exist_ok=True)
                conn = self._reader = _connect(self.path, _LOOP_BUSY_MS)
            except BaseException:
                self._backoff.failed()
                raise
        return conn

    def _drop(self) -> None:
        """Close the connections after an error: the next use opens the file again."""
        self._backoff.failed()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):  # closing a broken file
                reader.close()
        # The writer only when its thread is not using it (else that write fails and
        # drops it in turn).
        if self._write_lock.acquire(blocking=False):
            try:
                writer, self._writer = self._writer, None
                if writer is not None:
                    with contextlib.suppress(sqlite3.Error):
                        writer.close()
            finally:
                self._write_lock.release()

    async def get(self, key: str) -> bytes | None:
        try:
            row = self._read_conn().execute(
                "SELECT value, expires FROM anyapi_cache WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None  # another process holds the file a moment: a miss, not a fault
            self._drop()
            raise
        except sqlite3.Error:
            self._drop()
            raise
        self._backoff.ok()
        if row is None:
            return None
        if row[1] is not None and row[1] < time.time():
            return None
        value: bytes = row[0]
        return value

    async def set(self, key: str, value: bytes) -> None:
        conn = self._read_conn()  # opens (and checks) the file, or raises while backing off
        now = time.time()
        row = (key, value, len(value) + len(key), now, now + self.ttl if self.ttl else None)
        try:
            conn.execute(_INSERT, row)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                self._drop()
                raise
            await self._on_thread(self._write, row)  # another process writes: wait there
        except sqlite3.Error:
            self._drop()
            raise
        self._backoff.ok()
        self._written += len(value)
        if self._written >= self._maintain_every:
            self._written = 0
            await self._on_thread(self._maintain)

    async def _on_thread(self, work: Callable[..., None], *args: object) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="anyapi-sqlite-cache")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        except sqlite3.Error:
            self._drop()
            raise

    def _writer_conn(self) -> sqlite3.Connection:
        conn = self._writer
        if conn is None:
            conn = self._writer = _connect(self.path, _WRITE_BUSY_MS)
        return conn

    def _write(self, row: tuple[object, ...]) -> None:
        with self._write_lock:
            self._writer_conn().execute(_INSERT, row)

    def _maintain(self) -> None:
        with self._write_lock:
            conn = self._writer_conn()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._evict(conn, time.time())

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        """Past max_size: drop expired entries, then the oldest, down to 90% of it."""
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        used = (pages - free) * page_size
        if used <= self.max_size:
            return
        conn.execute("DELETE FROM anyapi_cache WHERE expires IS NOT NULL AND expires < ?", (now,))
        live = conn.execute("SELECT COALESCE(SUM(size), 0) FROM anyapi_cache").fetchone()[0]
        excess = live - int(self.max_size * _EVICT_TO)
        if excess <= 0:
            return
        doomed = []
        for key, size in conn.execute("SELECT key, size FROM anyapi_cache ORDER BY created"):
            doomed.append((key,))
            excess -= size
            if excess <= 0:
                break
        conn.executemany("DELETE FROM anyapi_cache WHERE key = ?", doomed)

    def __len__(self) -> int:
        row = self._read_conn().execute("SELECT COUNT(*) FROM anyapi_cache").fetchone()
        return int(row[0])

    async def aclose(self) -> None:
        """Close the file and the writer thread (used again, it opens them again)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None

    def __repr__(self) -> str:
        return f"SQLiteCache({self.path!r}, ttl={self.ttl!r}, max_size={self.max_size})"
