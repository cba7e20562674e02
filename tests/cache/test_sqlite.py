"""SQLiteCache: one file, several processes, bounded, and never a failed call."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from anyapi_async import AsyncClient, ChatCompletion
from anyapi_async.cache import SQLiteCache
from anyapi_async.testing import LocalServer

from .conftest import MESSAGES


async def ask(client: AsyncClient) -> ChatCompletion:
    completion: ChatCompletion = await client.chat.completions.create(
        model="m1", messages=MESSAGES
    )
    return completion


def hit(completion: ChatCompletion) -> bool:
    assert completion.http is not None
    return completion.http.cache_hit


async def test_a_second_client_on_the_same_file_is_served_from_it(
    server: LocalServer, tmp_path: Path
) -> None:
    path = tmp_path / "sub" / "cache.sqlite"
    async with AsyncClient(base_url=server.base_url, cache=SQLiteCache(path)) as client:
        first = await ask(client)
        stream = await client.chat.completions.create(model="m1", messages=MESSAGES,
                                                       stream=True)
        async with stream:
            live = [c.to_dict() async for c in stream]
    async with AsyncClient(base_url=server.base_url, cache=SQLiteCache(path)) as client:
        second = await ask(client)
        stream = await client.chat.completions.create(model="m1", messages=MESSAGES,
                                                       stream=True)
        async with stream:
            replayed = [c.to_dict() async for c in stream]
    assert hit(second) and second.to_dict() == first.to_dict()
    assert replayed == live
    assert len(server.requests) == 2


async def test_namespaces_separate_tenants_of_one_file(
    server: LocalServer, tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite"
    for namespace in ("a", "b", "a"):
        cache = SQLiteCache(path, namespace=namespace)
        async with AsyncClient(base_url=server.base_url, cache=cache) as client:
            await ask(client)
    assert len(server.requests) == 2


async def test_entries_expire_after_ttl(server: LocalServer, tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.sqlite", ttl=1e-6)
    async with AsyncClient(base_url=server.base_url, cache=cache) as client:
        await ask(client)
        assert not hit(await ask(client))
    assert len(server.requests) == 2


async def test_the_file_stays_under_max_size_dropping_the_oldest(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.sqlite", max_size=200_000)
    value = b"x" * 10_000
    for i in range(60):
        await cache.set(f"key-{i:02d}", value)
    kept = len(cache)
    assert 5 < kept < 20
    assert await cache.get("key-59") == value
    assert await cache.get("key-00") is None
    await cache.aclose()
    assert len(cache) == kept  # reopened after aclose


async def test_a_corrupt_file_warns_once_and_calls_still_succeed(
    server: LocalServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 200)
    cache = SQLiteCache(path, retry_interval=0)
    caplog.set_level(logging.WARNING, logger="anyapi_async")
    async with AsyncClient(base_url=server.base_url, cache=cache) as client:
        for _ in range(3):
            assert not hit(await ask(client))
        assert len(server.requests) == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "SQLiteCache" in warnings[0].getMessage()
        # The file is repaired: the cache works again.
        path.unlink()
        await ask(client)
        assert hit(await ask(client))
    assert len(server.requests) == 4


_WRITER = """
import asyncio, sys
from anyapi_async.cache import SQLiteCache

async def main() -> None:
    cache = SQLiteCache(sys.argv[1])
    me = sys.argv[2]
    for i in range(200):
        await cache.set(f"{me}-{i}", f"{me}:{i}".encode() * 50)
        other = await cache.get(f"{'b' if me == 'a' else 'a'}-{i // 2}")
        assert other is None or other.startswith(b"a:" if me == "b" else b"b:")
    await cache.aclose()
    print("ok")

asyncio.run(main())
"""


def test_two_processes_write_and_read_one_file_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, path, me], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for me in ("a", "b")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    import asyncio

    async def check() -> None:
        cache = SQLiteCache(path)
        for me in ("a", "b"):
            for i in (0, 199):
                assert await cache.get(f"{me}-{i}") == f"{me}:{i}".encode() * 50
        assert len(cache) == 400
        await cache.aclose()

    asyncio.run(check())


async def test_a_write_while_another_process_holds_the_lock_waits_off_the_loop(
    tmp_path: Path,
) -> None:
    import asyncio
    import sqlite3

    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    await cache.set("first", b"1")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock, as another process would
    try:
        write = asyncio.ensure_future(cache.set("second", b"2"))
        await asyncio.sleep(0)
        # The loop is free while the write waits: a read is answered meanwhile.
        assert await cache.get("first") == b"1"
        assert not write.done()
    finally:
        other.execute("COMMIT")
        other.close()
    await write
    assert await cache.get("second") == b"2"
    await cache.aclose()
