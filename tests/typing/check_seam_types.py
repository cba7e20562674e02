"""Static checks of post/get and the raw responses: run by mypy."""

from __future__ import annotations

from typing import Any

import msgspec
from typing_extensions import assert_type

import anyapi_async as aa

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


class Item(msgspec.Struct):
    name: str


async def seam(client: aa.AsyncClient) -> None:
    assert_type(await client.post("/x", body={}, cast_to=bytes), bytes)
    assert_type(await client.post("/x", body=b"{}", cast_to=Item), Item)
    assert_type(await client.get("/models", cast_to=aa.ModelList), aa.ModelList)
    assert_type(
        await client.post("/x", body=Item(name="a"), cast_to=Item, stream=True),
        aa.AsyncStream[Item],
    )
    assert_type(
        await client.post("/chat/completions", cast_to=aa.ChatCompletionChunk, stream=True),
        aa.AsyncStream[aa.ChatCompletionChunk],
    )


async def raw(client: aa.AsyncClient) -> None:
    r = await client.chat.completions.with_raw_response.create(model="m", messages=MSGS)
    assert_type(r, aa.APIResponse[aa.ChatCompletion])
    assert_type(r.parse(), aa.ChatCompletion)
    assert_type(r.content, bytes)
    assert_type(r.status_code, int)
    assert_type(r.http, aa.ResponseInfo)
    s = await client.chat.completions.with_raw_response.create(
        model="m", messages=MSGS, stream=True
    )
    assert_type(s.parse(), aa.AsyncStream[aa.ChatCompletionChunk])
    async with client.chat.completions.with_streaming_response.create(
        model="m", messages=MSGS, stream=True
    ) as response:
        assert_type(response, aa.StreamedAPIResponse[aa.AsyncStream[aa.ChatCompletionChunk]])
        async for line in response.iter_lines():
            assert_type(line, str)
        assert_type(await response.parse(), aa.AsyncStream[aa.ChatCompletionChunk])
