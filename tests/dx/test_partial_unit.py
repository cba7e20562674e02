"""PartialJSON without sockets: every prefix of a document, escapes, fences, the throttle."""

from __future__ import annotations

import json
import sys
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyapi_async import PartialJSON, _partial
from anyapi_async._partial import GROWTH_DIVISOR, MAX_DELAY, NOTHING

from ._grow import grows

DOC = (
    '{"name": "Ad\\u00e9 \\"Lovelace\\" \\ud83d\\ude00 río \\\\ \\n", "age": 36, '
    '"ratio": -1.5e3, "tags": ["x", "ñ"], "ok": true, "none": null, "nested": {"k": []}}'
)


def snapshots(pieces: list[str]) -> tuple[list[Any], Any]:
    """A snapshot after every piece (the worst case: no throttle), and the whole value."""
    parser = PartialJSON()
    taken: list[Any] = []
    for piece in pieces:
        parser.feed(piece)
        snapshot = parser.snapshot()
        if snapshot is not NOTHING:
            taken.append(snapshot)
    return taken, parser.complete()


def test_every_prefix_grows_and_ends_with_the_document() -> None:
    """Character by character (mid-escape, mid-surrogate-pair, mid-number) snapshots grow."""
    taken, whole = snapshots(list(DOC))
    assert whole == json.loads(DOC)
    assert taken[-1] == whole
    for old, new in pairwise(taken):
        assert grows(old, new), (old, new)
    names = [s["name"] for s in taken if "name" in s]
    assert "Ad" in names and 'Adé "Lovelace" 😀 río \\ \n' in names
    # A number appears only once it is complete, never as a prefix of itself.
    assert {s.get("age") for s in taken} == {None, 36}
    assert {s.get("ratio") for s in taken} == {None, -1500.0}


def test_keys_appear_as_soon_as_their_value_starts() -> None:
    """A key shows with an empty string, list or object as soon as the value opens."""
    taken, _ = snapshots(['{"a": "', '", "b": [', '], "c": {', '}, "d": 1', "}"])
    assert taken == [
        {"a": ""},
        {"a": "", "b": []},
        {"a": "", "b": [], "c": {}},
        {"a": "", "b": [], "c": {}},  # "d": 1 might still be 12
        {"a": "", "b": [], "c": {}, "d": 1},
    ]


def test_fenced_reply() -> None:
    """A ```json fence around the document is ignored, as parse() ignores it."""
    text = '```json\n{"a": "b", "n": [1, 2]}\n```'
    taken, whole = snapshots(list(text))
    assert whole == {"a": "b", "n": [1, 2]}
    assert taken[0] == {} and taken[-1] == whole
    for old, new in pairwise(taken):
        assert grows(old, new)


def test_prose_is_not_json() -> None:
    """Text that cannot start a JSON document raises ValueError; blank text is NOTHING."""
    parser = PartialJSON()
    parser.feed("   ")
    assert parser.snapshot() is NOTHING
    parser.feed("Sure! Here")
    with pytest.raises(ValueError, match=r"."):
        parser.snapshot()


def test_snapshots_are_throttled_on_long_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short texts are due on every piece; a long one after 1/GROWTH_DIVISOR growth or
    MAX_DELAY seconds, whichever comes first."""
    now = [100.0]
    monkeypatch.setattr(_partial, "clock", lambda: now[0])
    parser = PartialJSON()
    parser.feed('{"essay": "')
    assert parser.due()
    parser.snapshot()
    assert not parser.due()  # nothing new
    parser.feed("x" * 10_000)
    assert parser.due()
    parser.snapshot()
    parser.feed("y")
    assert not parser.due()
    now[0] += MAX_DELAY * 1.5
    assert parser.due()  # little growth, but time enough
    parser.snapshot()
    parser.feed("z" * (11_000 // GROWTH_DIVISOR))
    assert parser.due()  # no time, but growth enough
    assert parser.snapshot() == {"essay": "x" * 10_000 + "y" + "z" * (11_000 // GROWTH_DIVISOR)}
    # A slow consumer: time passed while it used the snapshot, not while reading.
    now[0] += MAX_DELAY * 10
    parser.restart_clock()
    parser.feed("w")
    assert not parser.due()


def test_missing_jiter_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without jiter, an ImportError names the extra to install."""
    monkeypatch.setitem(sys.modules, "jiter", None)
    with pytest.raises(ImportError, match=r"pip install 'anyapi-async\[partial\]'"):
        PartialJSON()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    value=st.dictionaries(st.text(max_size=6), json_values, max_size=5) | st.lists(json_values),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 2]),
    cuts=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=40),
)
def test_any_document_any_split(
    value: Any, ascii_only: bool, indent: int | None, cuts: list[int]
) -> None:
    """Any object or array, escaped or not, cut anywhere: snapshots grow to the value."""
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    pieces, pos, i = [], 0, 0
    while pos < len(text):
        size = cuts[i % len(cuts)]
        pieces.append(text[pos : pos + size])
        pos, i = pos + size, i + 1
    taken, whole = snapshots(pieces)
    assert whole == value
    assert taken[-1] == value
    for old, new in pairwise(taken):
        assert grows(old, new), (old, new)


def test_long_numbers_appear_whole() -> None:
    """A number of any length is shown only once complete, never by its prefix."""
    big = 10**80 + 12345
    taken, whole = snapshots(list(json.dumps({"n": big, "s": "x"})))
    assert {s.get("n") for s in taken} == {None, big} and whole == {"n": big, "s": "x"}


def test_deeper_than_jiter_reads() -> None:
    """Past MAX_DEPTH snapshots raise ValueError, complete() still reads the document, and
    one deeper than Python can recurse is a ValueError too, never a RecursionError."""
    depth = _partial.MAX_DEPTH + 100
    parser = PartialJSON()
    parser.feed("[" * depth + "]" * depth)
    with pytest.raises(ValueError, match="recursion limit"):
        parser.snapshot()
    whole = parser.complete()
    for _ in range(depth - 1):
        assert isinstance(whole, list) and len(whole) == 1
        whole = whole[0]
    assert whole == []
    too_deep = PartialJSON()
    too_deep.feed("[" * 10_000 + "]" * 10_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        too_deep.complete()
