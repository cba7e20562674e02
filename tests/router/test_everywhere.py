"""The router where a client goes: the JSONL job runner, ``anyapi batch --routes`` and
``anyapi chat --routes``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from anyapi_async import AllRoutesFailedError, Route, Router, run_jsonl_job
from anyapi_async._jobs.plan import failure_kind
from anyapi_async.testing import ErrorResponse

from .conftest import Clients, Servers
from .test_fallback import chats

TIMEOUT = 60
needs_tomllib = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="--routes reads TOML with tomllib (3.11+)"
)


def write_jobs(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"custom_id": f"r{i}", "body": {
            "model": "m", "messages": [{"role": "user", "content": f"q{i}"}]
        }})
        for i in range(n)
    ]
    path.write_text("".join(line + "\n" for line in lines))
    return path


async def test_jsonl_job_through_a_router(
    servers: Servers, clients: Clients, tmp_path: Path
) -> None:
    a, b, _ = clients
    router = Router([Route(a, model="m-a", name="a"), Route(b, model="m-b", name="b")])
    servers[0].set_default(ErrorResponse(503))
    summary = await run_jsonl_job(
        write_jobs(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl", router=router,
        concurrency=2,
    )
    assert summary.succeeded == 6 and summary.failed == 0
    assert chats(servers[1]) == 6
    assert {r.json["model"] for r in servers[1].requests} == {"m-b"}
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"r{i}" for i in range(6)]


def test_all_routes_unreachable_is_an_endpoint_failure_for_jobs() -> None:
    from anyapi_async import APIConnectionError, InternalServerError

    down = AllRoutesFailedError("x", [("a", APIConnectionError()), ("b", APIConnectionError())])
    assert failure_kind(down) == failure_kind(APIConnectionError()) != ""
    mixed = AllRoutesFailedError(
        "x", [("a", APIConnectionError()),
              ("b", InternalServerError("e", status_code=500))],
    )
    assert failure_kind(mixed) == ""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYAPI_")}
    env.update(extra)
    return env


async def anyapi(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return proc.returncode, out.decode(), err.decode()


def routes_file(path: Path, servers: Servers) -> Path:
    path.write_text(
        "[breaker]\nfailures = 2\ncooldown = 600.0\n\n"
        f'[[route]]\nname = "a"\nbase_url = "{servers[0].base_url}"\nmodel = "m-a"\n\n'
        f'[[route]]\nname = "b"\nbase_url = "{servers[1].base_url}"\nmodel = "m-b"\n'
    )
    return path


@needs_tomllib
async def test_batch_with_routes(servers: Servers, tmp_path: Path) -> None:
    servers[0].set_default(ErrorResponse(503))
    source = write_jobs(tmp_path / "in.jsonl", 5)
    routes = routes_file(tmp_path / "routes.toml", servers)
    status, out, err = await anyapi(
        "batch", str(source), "--routes", str(routes), "--no-progress", "--concurrency", "1"
    )
    assert status == 0, err
    assert "5 succeeded" in out
    assert chats(servers[0]) == 2  # the breaker opened after two failures
    assert chats(servers[1]) == 5


@needs_tomllib
async def test_batch_with_routes_and_a_cache(servers: Servers, tmp_path: Path) -> None:
    """--cache applies to --routes: a finished job rerun into a new output sends nothing."""
    source = write_jobs(tmp_path / "in.jsonl", 3)
    routes = routes_file(tmp_path / "routes.toml", servers)
    cache = str(tmp_path / "responses.sqlite")
    for output in ("first.jsonl", "second.jsonl"):
        status, out, err = await anyapi(
            "batch", str(source), "-o", str(tmp_path / output), "--routes", str(routes),
            "--cache", cache, "--no-progress", "--concurrency", "1",
        )  # fmt: skip
        assert status == 0, err
        assert "3 succeeded" in out
    assert chats(servers[0]) == 3  # the first run only: the rerun was answered by the cache
    assert chats(servers[1]) == 0


@needs_tomllib
async def test_chat_with_routes(servers: Servers, tmp_path: Path) -> None:
    servers[0].queue(ErrorResponse(500))
    routes = routes_file(tmp_path / "routes.toml", servers)
    status, out, err = await anyapi("chat", "Hello", "--routes", str(routes), "--no-stream")
    assert status == 0, err
    assert out.strip()
    assert servers[1].requests[-1].json["model"] == "m-b"


@needs_tomllib
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no routes"),
        ('[[route]]\napi_key = "sk-x"\n', "api_key_env"),
        ("[[route]]\n[colour]\n", "unknown table"),
        ("[[route\n", "not valid TOML"),
        ('[hedge]\nafter = "fast"\n[[route]]\n', "quantile"),
    ],
)
async def test_bad_routes_files_are_refused_clearly(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    status, _, err = await anyapi("chat", "Hello", "--routes", str(path))
    assert status != 0
    assert message in err
    assert "sk-x" not in err


@needs_tomllib
async def test_routes_and_base_url_conflict(servers: Servers, tmp_path: Path) -> None:
    routes = routes_file(tmp_path / "routes.toml", servers)
    status, _, err = await anyapi(
        "chat", "Hello", "--routes", str(routes), "--base-url", servers[0].base_url
    )
    assert status != 0 and "--base-url" in err
    assert chats(servers[0]) == 0
