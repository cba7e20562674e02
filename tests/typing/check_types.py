"""Static checks of the public surface: run by `mypy --strict tests/typing` in CI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import assert_type

import anyapi_async as aa

MSGS: list[Any] = [{"role": "user", "content": "hi"}]


async def overloads(client: aa.AsyncClient, flag: bool) -> None:
    plain = await client.chat.completions.create(model="m", messages=MSGS)
    assert_type(plain, aa.ChatCompletion)
    streamed = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
    assert_type(streamed, aa.AsyncStream[aa.ChatCompletionChunk])
    either = await client.chat.completions.create(model="m", messages=MSGS, stream=flag)
    assert_type(either, aa.ChatCompletion | aa.AsyncStream[aa.ChatCompletionChunk])
    async with streamed:
        async for chunk in streamed:
            assert_type(chunk, aa.ChatCompletionChunk)
            assert_type(chunk.choices[0].delta.content, str | None)
    async with client.chat.completions.stream(model="m", messages=MSGS) as s:
        async for text in s.text_deltas():
            assert_type(text, str)
        final = await s.get_final_completion()
        assert_type(final, aa.ChatCompletion)
    usage = plain.usage
    if usage is not None:
        assert_type(usage.total_tokens, int)
    assert_type(plain.choices[0].message.content, str | None)


async def typed_params(client: aa.AsyncClient) -> None:
    await client.chat.completions.create(
        model="m",
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=10,
        tool_choice="auto",
        response_format={"type": "json_object"},
        timeout=aa.Timeout(5, total=30),
        extra_body={"provider": {"order": ["a"]}},
    )


async def phase_one_of_issue_13(client: aa.AsyncClient) -> None:
    completion = await client.chat.completions.create(
        model="m", messages=MSGS, extra_query={"api-version": None}
    )
    assert_type(completion.to_dict(), dict[str, Any])
    assert_type(await client.models.retrieve("m"), aa.Model)
    assert_type((await client.models.list()).to_dict(), dict[str, Any])
    copy = aa.AsyncClient(api_key="k", default_query={"api-version": "1"}).with_options(
        default_query={"a": "b"}
    )
    assert_type(copy.default_query, Mapping[str, str])
    completions: aa.Completions = client.chat.completions
    assert_type(completions, aa.Completions)
    from anyapi_async.testing import instant_retries, set_instant_retries

    with instant_retries() as waits:
        assert_type(waits, list[float])
    set_instant_retries(False)
