"""The cache wherever requests are sent: batch(), the JSONL runner, `anyapi batch`/`chat`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from anyapi_async import AsyncClient, run_jsonl_job
from anyapi_async.cache import MemoryCache, SQLiteCache
from anyapi_async.testing import LocalServer


def requests_of(n: int) -> list[dict[str, Any]]:
    return [
        {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 4}
        for i in range(n)
    ]


def write_job(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": body})
        for i, body in enumerate(requests_of(n))
    ]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def answers(path: Path) -> dict[str, Any]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {line["custom_id"]: line["response"]["body"] for line in lines}


async def run_batch(client: AsyncClient, n: int) -> dict[int, Any]:
    out: dict[int, Any] = {}
    async with client.chat.completions.batch(requests_of(n), concurrency=5) as run:
        async for r in run:
            assert r.ok and r.completion is not None
            out[r.index] = r.completion.to_dict()
    return out


async def test_batch_reruns_from_the_cache(server: LocalServer) -> None:
    async with AsyncClient(base_url=server.base_url, cache=MemoryCache()) as client:
        first = await run_batch(client, 20)
        second = await run_batch(client, 20)
    assert len(server.requests) == 20
    assert second == first and len(first) == 20


async def test_a_finished_job_rerun_into_a_new_output_sends_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    source = write_job(tmp_path / "in.jsonl", 30)
    cache_path = tmp_path / "cache.sqlite"
    first = await run_jsonl_job(source, tmp_path / "out1.jsonl", base_url=server.base_url,
                                cache=SQLiteCache(cache_path))
    assert first.succeeded == 30 and len(server.requests) == 30
    second = await run_jsonl_job(source, tmp_path / "out2.jsonl", base_url=server.base_url,
                                 cache=SQLiteCache(cache_path))
    assert second.succeeded == 30 and len(server.requests) == 30
    assert answers(tmp_path / "out2.jsonl") == answers(tmp_path / "out1.jsonl")


async def test_the_job_refuses_a_cache_beside_a_client(
    server: LocalServer, tmp_path: Path
) -> None:
    source = write_job(tmp_path / "in.jsonl", 1)
    async with AsyncClient(base_url=server.base_url) as client:
        with pytest.raises(ValueError, match="AsyncClient\\(cache="):
            await run_jsonl_job(source, tmp_path / "o.jsonl", client=client, cache=MemoryCache())
    assert server.requests == []


async def cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYAPI_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return proc.returncode, out.decode(), err.decode()


async def test_anyapi_batch_cache_rerun_sends_nothing(server: LocalServer, tmp_path: Path) -> None:
    source = write_job(tmp_path / "in.jsonl", 12)
    cache = str(tmp_path / "c.sqlite")
    for output in ("a.jsonl", "b.jsonl"):
        status, _, _ = await cli("batch", str(source), "-o", str(tmp_path / output),
                                 "--base-url", server.base_url, "--cache", cache, "--no-progress")
        assert status == 0
    assert len(server.requests) == 12
    assert answers(tmp_path / "b.jsonl") == answers(tmp_path / "a.jsonl")


async def test_anyapi_chat_cache(server: LocalServer, tmp_path: Path) -> None:
    cache = str(tmp_path / "c.sqlite")
    outs = []
    for _ in range(2):
        status, out, _ = await cli("chat", "Hello there", "--max-tokens", "8", "--model", "m",
                                   "--base-url", server.base_url, "--cache", cache)
        assert status == 0
        outs.append(out)
    assert outs[0] == outs[1] and outs[0].strip()
    assert len(server.requests_for("/chat/completions")) == 1
