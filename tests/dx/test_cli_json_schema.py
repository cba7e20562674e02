"""``anyapi chat --json-schema FILE``: the final document in a pipe, the live view in a TTY."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import struct
import sys
import termios
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from anyapi_async import AsyncClient
from anyapi_async._live_json import (
    LiveView,
    ReplyNotJSON,
    fit,
    load_response_format,
    show_json,
)
from anyapi_async.testing import Generated, LocalServer

from ._grow import grows
from .test_cli import arun, clean_env

SCHEMA: dict[str, Any] = {
    "title": "Person",
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 30, "maxLength": 40},
        "bio": {"type": "string", "minLength": 120, "maxLength": 150},
        "languages": {"type": "array", "items": {"type": "string"}, "minItems": 3},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "bio", "languages", "age"],
}
PROMPT = "Describe Ada Lovelace"
_ESCAPE = re.compile(r"\x1b\[(\d*)([AJ])|\r|\n|[^\x1b\r\n]+")


class Screen:
    """Just enough of a terminal for LiveView's escapes: cursor up, CR, clear below, text."""

    def __init__(self) -> None:
        self.lines: list[str] = [""]
        self.row = 0

    def write(self, data: str) -> None:
        for match in _ESCAPE.finditer(data):
            token = match.group()
            if match.group(2) == "A":
                self.row = max(0, self.row - int(match.group(1) or 1))
            elif match.group(2) == "J":
                del self.lines[self.row + 1 :]
                self.lines[self.row] = ""
            elif token == "\r":
                pass  # the block always starts at column 0, so CR is where we are
            elif token == "\n":
                self.row += 1
                if self.row == len(self.lines):
                    self.lines.append("")
            else:
                self.lines[self.row] += token

    @property
    def text(self) -> list[str]:
        return self.lines[:-1] if self.lines[-1] == "" else self.lines


def size(columns: int, rows: int) -> Any:
    return lambda: os.terminal_size((columns, rows))


def write_schema(tmp_path: Path, value: object = SCHEMA) -> str:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(value))
    return str(path)


async def expected_document(client: AsyncClient, path: str) -> Any:
    """What the deterministic local server answers with this schema."""
    response_format: Any = load_response_format(path)
    reply = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], response_format=response_format
    )
    return json.loads(reply.choices[0].message.content or "")


# --- the renderer -------------------------------------------------------------------------


def test_live_view_redraws_growing_json_in_place() -> None:
    """Frame after frame, the emulated screen shows exactly the latest text, and only the
    changed lines are rewritten."""
    screen = Screen()
    view = LiveView(size(80, 40))
    texts = [
        json.dumps(value, indent=2)
        for value in (
            {},
            {"name": "Ad"},
            {"name": "Ada"},
            {"name": "Ada", "tags": []},
            {"name": "Ada", "tags": ["m"]},
            {"name": "Ada", "tags": ["math", "poetry"]},
        )
    ]
    for text in texts:
        frame = view.frame(text)
        screen.write(frame)
        assert screen.text == text.splitlines()
    # The last frame moved up only past the lines that changed (the tail of the list).
    assert frame.startswith("\x1b[3A\r\x1b[J")
    assert view.frame(texts[-1]) == ""  # nothing changed, nothing written
    screen.write(view.clear())
    assert screen.text == []


def test_live_view_fits_the_terminal() -> None:
    """Long lines are cut with an ellipsis (wide characters count twice); a tall text
    shows its last rows - 1 lines, so the cursor never climbs past the screen's top."""
    screen = Screen()
    view = LiveView(size(20, 5))
    text = "\n".join(["a" * 40, "数" * 30, *[f"line {i}" for i in range(10)]])
    screen.write(view.frame(text))
    assert screen.text == [f"line {i}" for i in range(6, 10)]
    assert fit("a" * 40, 19) == "a" * 18 + "…"
    assert fit("数" * 30, 19) == "数" * 9 + "…"
    assert fit("ok é", 19) == "ok é"
    screen.write(view.frame(text + "\nline 10"))
    assert screen.text == [f"line {i}" for i in range(7, 11)]


def test_schema_file_forms(tmp_path: Path) -> None:
    """A bare schema, a {name, schema} object and a whole response_format are accepted."""
    bare = load_response_format(write_schema(tmp_path))
    assert bare == {"type": "json_schema", "json_schema": {"name": "Person", "schema": SCHEMA}}
    named = {"name": "P", "schema": SCHEMA, "strict": False}
    assert load_response_format(write_schema(tmp_path, named))["json_schema"] == named
    whole = {"type": "json_schema", "json_schema": named}
    assert load_response_format(write_schema(tmp_path, whole)) == whole
    untitled = load_response_format(write_schema(tmp_path, {"type": "object"}))
    assert untitled["json_schema"]["name"] == "person"  # the file's stem
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_response_format(write_schema(tmp_path, [1]))


# --- the command --------------------------------------------------------------------------


async def test_pipe_gets_one_final_document(
    tmp_path: Path, anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """Into a pipe: exactly one pretty JSON document, the server's reply, no escapes."""
    path = write_schema(tmp_path)
    expected = await expected_document(anyapi_client, path)
    anyapi_server.reset()
    anyapi_server.set_default(Generated(split_seed=5))
    status, out, err = await arun(
        "chat", PROMPT, "--json-schema", path, "--model", "m", "--base-url", anyapi_server.base_url
    )
    assert status == 0, err
    assert "\x1b" not in out and err == ""
    assert json.loads(out) == expected
    assert out == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    body = anyapi_server.requests_for("/chat/completions")[-1].json
    assert body["stream"] is True
    assert body["response_format"]["json_schema"] == {"name": "Person", "schema": SCHEMA}


async def test_terminal_gets_a_live_view(
    tmp_path: Path, anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """In a pseudo-terminal: the object is redrawn as it grows, then the whole document."""
    path = write_schema(tmp_path)
    expected = await expected_document(anyapi_client, path)
    anyapi_server.set_default(Generated(pace=0.005))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anyapi_async", "chat", PROMPT, "--json-schema", path,
        "--model", "m", "--base-url", anyapi_server.base_url,
        stdout=slave, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    os.close(slave)

    def read_all() -> bytes:
        data = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data.append(chunk)
        return b"".join(data)

    try:
        raw, (_, err) = await asyncio.wait_for(
            asyncio.gather(asyncio.to_thread(read_all), proc.communicate()), 60
        )
    finally:
        os.close(master)
        if proc.returncode is None:  # never leave the CLI behind a failed test
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and err == b"", err
    out = raw.decode().replace("\r\n", "\n")
    screen = Screen()
    frames = out.split("\x1b[J")
    assert len(frames) > 4, out  # several redraws
    # Replay everything but the final document: each state on screen is a growing object.
    shown: list[Any] = []
    head = out[: out.rindex("\x1b[J")]
    for part in re.split(r"(?=\x1b\[\d+A)", head):
        screen.write(part)
        if screen.text:
            shown.append(json.loads("\n".join(screen.text)))
    assert len(shown) > 3
    for old, new in pairwise(shown):
        assert grows(old, new), (old, new)
    bios = [s["bio"] for s in shown if "bio" in s]
    assert any(0 < len(bio) < len(expected["bio"]) for bio in bios)  # seen partly filled
    # The live view is cleared and the whole document printed in its place.
    final = out[out.rindex("\x1b[J") + len("\x1b[J") :]
    assert json.loads(final) == expected


async def test_bad_schema_file_fails_before_any_request(
    tmp_path: Path, anyapi_server: LocalServer
) -> None:
    """A missing or invalid file is a one-line usage error and nothing is sent."""
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = ((str(tmp_path / "none.json"), "cannot read"), (str(bad), "not valid JSON"))
    for path, message in cases:
        status, out, err = await arun(
            "chat", PROMPT, "--json-schema", path, "--base-url", anyapi_server.base_url
        )
        assert status == 2 and out == ""
        assert err.startswith("anyapi: error: ") and message in err and err.count("\n") == 1
    assert anyapi_server.requests_for("/chat/completions") == []


async def test_reply_that_is_not_json_is_an_error(
    tmp_path: Path, anyapi_server: LocalServer
) -> None:
    """A prose reply ends with status 1 and one line, not a half-printed document."""
    anyapi_server.queue(Generated(text="I would rather not."))
    status, out, err = await arun(
        "chat", PROMPT, "--json-schema", write_schema(tmp_path),
        "--base-url", anyapi_server.base_url,
    )  # fmt: skip
    assert status == 1 and out == ""
    assert err.startswith("anyapi: error: the reply is not JSON") and err.count("\n") == 1


async def test_terminal_without_jiter_still_prints_the_document(
    tmp_path: Path,
    anyapi_client: AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No jiter: a one-line note on stderr, no live view, the final document all the same."""
    path = write_schema(tmp_path)
    expected = await expected_document(anyapi_client, path)
    monkeypatch.setitem(sys.modules, "jiter", None)
    written: list[str] = []
    response_format: Any = load_response_format(path)
    async with anyapi_client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": PROMPT}], response_format=response_format
    ) as stream:
        await show_json(stream, written.append, live=True, size=size(80, 24))
    assert "".join(written) == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    err = capsys.readouterr().err
    assert err == (
        "anyapi: note: to see the object grow, live partial objects need jiter: "
        "pip install 'anyapi-async[partial]'\n"
    )


async def test_show_json_raises_its_own_error_without_the_cli(
    tmp_path: Path, anyapi_server: LocalServer, anyapi_client: AsyncClient
) -> None:
    """A prose reply raises ReplyNotJSON (a ValueError), and the CLI stays unloaded."""
    anyapi_server.queue(Generated(text="I would rather not."))
    loaded = {m for m in sys.modules if m.startswith("anyapi_async._cli")}
    response_format: Any = load_response_format(write_schema(tmp_path))
    written: list[str] = []
    async with anyapi_client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": PROMPT}], response_format=response_format
    ) as stream:
        with pytest.raises(ReplyNotJSON, match=r"^the reply is not JSON: "):
            await show_json(stream, written.append, live=False)
    assert written == [""]  # nothing but the (empty) clearing of a view never drawn
    assert {m for m in sys.modules if m.startswith("anyapi_async._cli")} == loaded
