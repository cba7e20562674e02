"""``anyapi chat --json-schema FILE``: the reply's object as it grows, in a terminal.

In a terminal the object is pretty-printed and redrawn in place as its JSON streams in
(only the lines that changed, each cut to the terminal's width, the last screenful when it
is taller); at the end the whole document replaces the live view. Into a pipe or a file
only the final document is written, so ``anyapi chat ... --json-schema s.json | jq`` works.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ._partial import NOTHING, PartialJSON
from ._schema import clean_schema_name, decode_fenced

if TYPE_CHECKING:
    from ._chat_stream import ChatCompletionStream

__all__ = ["LiveView", "ReplyNotJSON", "load_response_format", "show_json"]

ELLIPSIS: Final = "…"


class ReplyNotJSON(ValueError):
    """The reply is not the JSON document the schema asked for (the message says why)."""


def load_response_format(path: str) -> dict[str, Any]:
    """The ``response_format`` for the JSON schema in ``path``; `ValueError` says what is wrong.

    The file holds a JSON schema, a ``{"name", "schema", "strict"?}`` object, or a whole
    ``{"type": "json_schema", "json_schema": {...}}`` response format.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the JSON schema {path}: {exc.strerror or exc}") from None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"the JSON schema {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the JSON schema {path} must be a JSON object")
    if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), dict):
        return value
    if isinstance(value.get("schema"), dict) and isinstance(value.get("name"), str):
        return {"type": "json_schema", "json_schema": value}
    title = value.get("title")
    name = title if isinstance(title, str) and title else Path(path).stem
    name = clean_schema_name(name)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": value}}


def _width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit(line: str, columns: int) -> str:
    """``line`` cut to ``columns`` terminal cells, ending in an ellipsis when cut."""
    if line.isascii():
        return line if len(line) <= columns else line[: columns - 1] + ELLIPSIS
    widths = [_width(char) for char in line]
    if sum(widths) <= columns:
        return line
    used = 0
    for i, width in enumerate(widths):
        if used + width > columns - 1:
            return line[:i] + ELLIPSIS
        used += width
    return line  # pragma: no cover - the sum above exceeded columns


class LiveView:
    """Redraws a block of text in place with ANSI escapes; output only, no terminal I/O.

    `frame` returns what to write to show new text: the cursor goes up to the first line
    that changed, clears to the end of the screen and writes the rest. Lines are cut to
    the width and only the last ``rows - 1`` are shown, so the cursor never has to reach a
    line that scrolled off the screen.
    """

    def __init__(self, size: Callable[[], os.terminal_size] = shutil.get_terminal_size) -> None:
        self._size = size
        self._shown: list[str] = []

    def frame(self, text: str) -> str:
        """The escapes and text that turn the screen's block into ``text``."""
        columns, rows = self._size()
        lines = [fit(line, max(columns - 1, 8)) for line in text.splitlines()]
        lines = lines[-max(rows - 1, 1) :]
        keep = 0
        for old, new in zip(self._shown, lines, strict=False):
            if old != new:
                break
            keep += 1
        if keep == len(lines) == len(self._shown):
            return ""
        up = len(self._shown) - keep
        self._shown = lines
        head = f"\x1b[{up}A\r" if up else ""
        return head + "\x1b[J" + "".join(line + "\n" for line in lines[keep:])

    def clear(self) -> str:
        """The escapes that erase the block (the cursor ends where it began)."""
        up = len(self._shown)
        self._shown = []
        return f"\x1b[{up}A\r\x1b[J" if up else ""


def _render(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _decode(content: str) -> Any:
    return decode_fenced(content, msgspec.json.decode)


async def show_json(
    stream: ChatCompletionStream,
    write: Callable[[str], None],
    *,
    live: bool,
    size: Callable[[], os.terminal_size] = shutil.get_terminal_size,
) -> None:
    """Read ``stream``; with ``live``, redraw the partial object; then write the document.

    A reply that is not JSON (or was cut before its JSON ended) raises `ReplyNotJSON`.
    """
    parser = None
    if live:
        try:
            parser = PartialJSON()
        except ImportError as exc:
            print(f"anyapi: note: to see the object grow, {exc}", file=sys.stderr)
    view = LiveView(size)
    if parser is None:
        await stream.until_done()
    else:
        async for text in stream.text_deltas():
            parser.feed(text)
            if not parser.due():
                continue
            try:
                snapshot = parser.snapshot()
            except ValueError:
                continue  # not JSON (yet); the end says what it was
            if snapshot is not NOTHING:
                write(view.frame(_render(snapshot)))
                parser.restart_clock()
    write(view.clear())
    final = await stream.get_final_completion()
    message = final.choices[0].message if final.choices else None
    if message is None or message.refusal or not message.content:
        return  # the caller reports a refusal
    try:
        value = _decode(message.content)
    except msgspec.DecodeError as exc:
        cut = final.choices[0].finish_reason == "length"
        why = f"is not JSON: {exc}"
        if cut:
            why = "was cut at --max-tokens before its JSON was complete"
        raise ReplyNotJSON(f"the reply {why}") from None
    write(_render(value) + "\n")
