"""The Ray stage with ``routes=[...]``, called directly (no cluster: the stage is a plain
callable; its constructor arguments must survive pickling to reach the actors)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from anyapi_async import CircuitBreaker, Hedge
from anyapi_async.testing import ErrorResponse

from .conftest import Servers
from .test_fallback import chats

ray_module = pytest.importorskip("anyapi_async.ray", reason="the ray extra is not installed")


def rows(n: int) -> dict[str, list[Any]]:
    return {
        "custom_id": [f"r{i}" for i in range(n)],
        "body": [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
                 for i in range(n)],
    }


async def test_stage_fails_over_across_routes(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECOND_KEY", "sk-second")
    kwargs: dict[str, Any] = {
        "routes": [
            {"name": "a", "base_url": servers[0].base_url, "model": "m-a"},
            {"name": "b", "base_url": servers[1].base_url, "api_key_env": "SECOND_KEY"},
        ],
        "breaker": CircuitBreaker(failures=1, cooldown=600.0),
        "hedge": Hedge(after=30.0, max_extra=0.1),
        "concurrency": 2,
    }
    kwargs = pickle.loads(pickle.dumps(kwargs))  # as Ray ships them to an actor
    stage = ray_module.ChatCompletions(**kwargs)
    servers[0].set_default(ErrorResponse(503))
    out = await stage(rows(4))
    assert list(out["error"]) == [None] * 4
    assert chats(servers[1]) == 4
    assert chats(servers[0]) <= 2  # its breaker opened after the first failure
    # The key from the variable the route names (records mask it); the first route has none.
    assert servers[1].requests[-1].headers["Authorization"] == "Bearer ***"
    assert "Authorization" not in servers[0].requests[-1].headers
    assert "sk-second" not in repr(stage)


def test_stage_routes_are_checked_before_io() -> None:
    stage = ray_module.ChatCompletions
    with pytest.raises(ValueError, match="not both"):
        stage(routes=[{"base_url": "http://127.0.0.1:1/v1"}], base_url="http://127.0.0.1:2/v1")
    with pytest.raises(ValueError, match="unknown key"):
        stage(routes=[{"url": "x"}])
    with pytest.raises(ValueError, match="routes"):
        stage(routes=[])
    with pytest.raises(ValueError, match="with routes"):
        stage(breaker=CircuitBreaker())
