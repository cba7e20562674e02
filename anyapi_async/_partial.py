"""Snapshots of a JSON document while it streams in, for live structured output.

`PartialJSON` takes the text of a reply piece by piece and gives JSON-like snapshots
(dicts, lists, strings, numbers, booleans, ``None``) of what has arrived. It builds on
jiter's partial mode (``pip install 'anyapi-async[partial]'``), the parser the openai and
anthropic SDKs use, and adds what makes the snapshots safe to show one after another:

- **They only grow.** A string being streamed appears partly filled and a key appears as
  soon as its string, object or array value starts; a number, ``true``, ``false`` or
  ``null`` appears once it is complete, since ``4`` may still become ``42`` (jiter alone
  would show ``4``, then drop the key at ``4.``, then show ``4.5``).
- **The work stays linear.** jiter re-parses the whole text, so parsing after every chunk
  of a long reply would be quadratic (a 20 KB reply in 8,700 chunks: 0.6 s of CPU). A
  snapshot is due when the text has grown by ``1/GROWTH_DIVISOR`` of its length since
  the last one, or ``MAX_DELAY`` seconds of reading have passed since the consumer took
  the last one: every chunk while the reply is short, a bounded number of parses per
  doubling when it is long, never a long wait, and a slow consumer catches up.
- **Fences are tolerated** like `ResponseSchema.decode` does: a leading ```` ```json ````
  line and a closing fence are ignored.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import msgspec

__all__ = ["GROWTH_DIVISOR", "MAX_DELAY", "MAX_DEPTH", "NOTHING", "PartialJSON", "require_jiter"]

#: A snapshot is due once the text grew by at least len(text) / GROWTH_DIVISOR characters.
GROWTH_DIVISOR: Final = 32
#: ...or this many seconds passed since the last one, whatever the growth.
MAX_DELAY: Final = 0.05
#: The throttle's clock (tests replace it).
clock = time.monotonic
#: How deep jiter reads arrays and objects; a snapshot of a deeper text raises `ValueError`.
MAX_DEPTH: Final = 200
JITER_HINT: Final = "live partial objects need jiter: pip install 'anyapi-async[partial]'"


class _Nothing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


#: What `PartialJSON.snapshot` returns while no value has started yet.
NOTHING: Final = _Nothing()

# Inside a string only these two characters change the scanner's state; outside, a quote.
_IN_STRING: Final = re.compile(r'["\\]')
# What a number, true, false or null still being written at the very end is made of.
_SCALAR_CHARS: Final = "-+.0123456789eEabcdefghijklmnopqrstuvwxyz"
_FENCE_START: Final = re.compile(r"\s*```[a-zA-Z0-9_-]*[ \t]*(?:\n|\Z)")
_JSON: Final = msgspec.json.Decoder()


def require_jiter() -> Any:
    """The jiter module, or an `ImportError` saying how to install it."""
    try:
        import jiter
    except ImportError:
        raise ImportError(JITER_HINT) from None
    return jiter


class PartialJSON:
    """A JSON text arriving in pieces, and snapshots of the value it holds so far.

    Example:

    ```python
    parser = PartialJSON()
    for piece in ['{"name": "Ad', 'a", "age": 3', "6}"]:
        parser.feed(piece)
        print(parser.snapshot())  # {'name': 'Ad'}, {'name': 'Ada'}, {'name': 'Ada', 'age': 36}
    ```

    Raises `ImportError` when jiter is not installed.
    """

    __slots__ = (
        "_escape",
        "_fence",
        "_from_json",
        "_in_string",
        "_parsed_at",
        "_parsed_len",
        "_pieces",
        "_text",
        "_text_len",
    )

    def __init__(self) -> None:
        self._from_json = require_jiter().from_json
        self._pieces: list[str] = []
        self._text = ""
        self._text_len = 0
        self._in_string = False
        self._escape = False  # the last character was a backslash inside a string
        self._fence: bool | None = None  # unknown until the first non-blank characters
        self._parsed_len = 0
        self._parsed_at = 0.0

    @property
    def text(self) -> str:
        """Everything fed so far."""
        if self._pieces:
            self._text += "".join(self._pieces)
            self._pieces.clear()
        return self._text

    def feed(self, piece: str) -> None:
        """Append ``piece``; cheap (a scan for quotes and backslashes)."""
        if not piece:
            return
        self._pieces.append(piece)
        self._text_len += len(piece)
        pos = 0
        end = len(piece)
        in_string = self._in_string
        if self._escape:
            self._escape = False
            pos = 1  # the escaped character; a \uXXXX's digits hold no quote or backslash
        while pos < end:
            if in_string:
                match = _IN_STRING.search(piece, pos)
                if match is None:
                    break
                if match.group() == "\\":
                    if match.end() == end:
                        self._escape = True
                        break
                    pos = match.end() + 1
                    continue
                in_string = False
                pos = match.end()
            else:
                pos = piece.find('"', pos)
                if pos < 0:
                    break
                in_string = True
                pos += 1
        self._in_string = in_string

    def due(self) -> bool:
        """Whether enough arrived since the last snapshot for a new one to be worth parsing."""
        grown = self._text_len - self._parsed_len
        if grown <= 0:
            return False
        if grown * GROWTH_DIVISOR >= self._text_len:
            return True
        return clock() - self._parsed_at >= MAX_DELAY

    def restart_clock(self) -> None:
        """Count `MAX_DELAY` from now: call it when the consumer of a snapshot is back.

        A consumer slower than the stream then finds chunks waiting, and the next snapshot
        waits for real growth (or `MAX_DELAY` of reading) instead of coming after a single
        chunk, so the reader catches up with the stream rather than falling behind it.
        """
        self._parsed_at = clock()

    def _body(self, text: str, in_string: bool) -> str:
        if self._fence is None:
            stripped = text.lstrip()
            if not stripped:
                return ""
            if stripped[0] != "`" or (len(stripped) >= 3 and not stripped.startswith("```")):
                self._fence = False
            else:
                match = _FENCE_START.match(text)
                if match is None:
                    return ""  # "```jso": the fence line is not complete yet
                self._fence = True
        if self._fence:
            match = _FENCE_START.match(text)
            text = text[match.end() :] if match is not None else ""
            if not in_string:
                text = text.rstrip().rstrip("`")
        return text

    def snapshot(self) -> Any:
        """The value so far (`NOTHING` before one starts); marks a snapshot as taken.

        Raises `ValueError` when the text so far cannot be the start of a JSON document.
        """
        self._parsed_len = self._text_len
        self._parsed_at = clock()
        text = self._body(self.text, self._in_string)
        if not self._in_string:
            # Outside a string, only a scalar can end the text without a delimiter.
            text = text.rstrip() if text[-1:].isspace() else text.rstrip(_SCALAR_CHARS)
        if not text:
            return NOTHING
        try:
            return self._from_json(text.encode(), partial_mode="trailing-strings")
        except ValueError:
            if not text.strip():
                return NOTHING
            raise

    def complete(self) -> Any:
        """The whole document, once all of it arrived; raises `ValueError` if it is not JSON.

        A document nested deeper than jiter reads (`MAX_DEPTH`) is read by msgspec, which
        goes as deep as Python's recursion limit allows (a `ValueError` beyond that).
        """
        text = self._body(self.text, in_string=False).encode()
        try:
            return self._from_json(text)
        except ValueError:
            pass  # not JSON, or too deep for jiter: msgspec tells which
        try:
            return _JSON.decode(text)
        except RecursionError:
            raise ValueError("the JSON document is nested too deeply to read") from None
