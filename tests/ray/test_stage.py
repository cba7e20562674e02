"""ChatCompletions as a Ray Data stage against the local server: rows, errors, concurrency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray

from anyapi_async.ray import ChatCompletions
from anyapi_async.testing import ErrorResponse, Generated

from .conftest import RAY_MARKS, ThreadedServer

pytestmark = RAY_MARKS

KEY = "sk-ray-test-SECRET"


def body(i: int) -> dict[str, Any]:
    return {
        "model": "anyapi-local",
        "messages": [{"role": "user", "content": f"question {i}"}],
        "max_tokens": 8,
    }


def stage(server: ThreadedServer, **kwargs: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "api_key": KEY, **kwargs}


def run(
    server: ThreadedServer,
    rows: list[dict[str, Any]],
    *,
    actors: int = 2,
    batch_size: int = 8,
    batch_format: str = "default",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    ds = ray.data.from_items(rows, override_num_blocks=4).map_batches(
        ChatCompletions,
        batch_size=batch_size,
        batch_format=batch_format,
        fn_constructor_kwargs=stage(server, **kwargs),
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=0.25,
    )
    return sorted(ds.take_all(), key=lambda row: str(row["custom_id"]))


@pytest.mark.parametrize(("as_text", "batch_format"), [(False, "default"), (True, "pyarrow")])
def test_rows_come_back_with_their_answers(
    ray_server: ThreadedServer, as_text: bool, batch_format: str
) -> None:
    """Every row keeps its columns and gains its completion; dict and JSON-text bodies."""
    rows = [
        {"custom_id": f"r{i:02}", "tag": i, "body": json.dumps(body(i)) if as_text else body(i)}
        for i in range(20)
    ]
    out = run(ray_server, rows, concurrency=4, batch_format=batch_format)
    assert [r["custom_id"] for r in out] == [f"r{i:02}" for i in range(20)]
    assert [r["tag"] for r in out] == list(range(20))
    sent = {json.dumps(r.json["messages"]) for r in ray_server.chat_requests()}
    assert len(sent) == 20
    for row in out:
        completion = json.loads(row["response"])
        assert completion["object"] == "chat.completion"
        assert row["error"] is None and row["status_code"] == 200 and row["attempts"] == 1
        assert row["request_id"].startswith("req_")


def test_failed_rows_are_error_rows(ray_server: ThreadedServer) -> None:
    """A 400, a bad body and a good row: two error rows, one answer, nothing raised."""
    ray_server.queue(ErrorResponse(400, message="bad thing"))
    rows = [
        {"custom_id": "a", "body": json.dumps(body(0))},
        {"custom_id": "b", "body": json.dumps({"messages": []})},
        {"custom_id": "c", "body": "{not json"},
    ]
    out = {r["custom_id"]: r for r in run(ray_server, rows, actors=1, batch_size=3)}
    assert out["a"]["status_code"] == 400 and out["a"]["response"] is None
    error = json.loads(out["a"]["error"])
    assert "bad thing" in error["message"] and error["body"]["error"]["message"] == "bad thing"
    for cid, words in (("b", "model"), ("c", "not valid JSON")):
        err = json.loads(out[cid]["error"])
        assert err["type"] == "invalid_request" and words in err["message"]
        assert out[cid]["attempts"] == 0 and out[cid]["status_code"] is None
    assert len(ray_server.chat_requests()) == 1


def test_concurrency_bounds_each_actor(ray_server: ThreadedServer) -> None:
    """2 actors x concurrency 3: never more than 6 requests at the server at once."""
    ray_server.run(lambda: ray_server.server.set_default(Generated(first_byte_delay=0.05)))
    rows = [{"custom_id": f"r{i:03}", "body": body(i)} for i in range(60)]
    out = run(ray_server, rows, actors=2, batch_size=10, concurrency=3)
    assert all(r["status_code"] == 200 for r in out)
    peak = ray_server.run(lambda: ray_server.server.max_in_flight)
    assert 2 <= peak <= 6


def test_stage_repr_hides_the_key() -> None:
    """The key travels to the actors but never shows in a repr."""
    stage_ = ChatCompletions(base_url="http://127.0.0.1:1/v1", api_key=KEY, rpm=60)
    assert KEY not in repr(stage_)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"rpm": -1}, "rpm"),
        ({"max_retries": -2}, "retries"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_refused_at_once(kwargs: dict[str, Any], match: str) -> None:
    """Settings are checked when the stage is built, before any actor sends anything."""
    with pytest.raises(ValueError, match=match):
        ChatCompletions(base_url="http://127.0.0.1:1/v1", api_key=KEY, **kwargs)


def test_parquet_in_parquet_out(ray_server: ThreadedServer, tmp_path: Path) -> None:
    """Struct bodies read from Parquet (nulls for other rows' keys) go out without the nulls."""
    rows = [
        {"custom_id": "a", "body": {**body(0), "temperature": 0.5}},
        {"custom_id": "b", "body": {**body(1), "seed": 7}},
    ]
    source = tmp_path / "in"
    ray.data.from_items(rows).write_parquet(str(source))
    ds = ray.data.read_parquet(str(source)).map_batches(
        ChatCompletions,
        batch_size=8,
        batch_format="pandas",
        fn_constructor_kwargs=stage(ray_server),
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=0.25,
    )
    ds.write_parquet(str(tmp_path / "out"))
    out = {r["custom_id"]: r for r in ray.data.read_parquet(str(tmp_path / "out")).take_all()}
    assert set(out) == {"a", "b"}
    assert all(
        r["status_code"] == 200 and json.loads(r["response"])["choices"] for r in out.values()
    )
    sent = {r.json["messages"][0]["content"]: r.json for r in ray_server.chat_requests()}
    assert sent["question 0"]["temperature"] == 0.5 and "seed" not in sent["question 0"]
    assert sent["question 1"]["seed"] == 7 and "temperature" not in sent["question 1"]
