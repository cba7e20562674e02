"""Deterministic text for the local server: tokens, logprobs and token counts.

The default reply is a seeded pick of sentences from a fixed set. Tokens look like a real
tokenizer's: words carry their leading space, punctuation stands apart, long words are split
into pieces, and some tokens are multi-byte UTF-8 (accents, emoji), so a client reading the
stream byte by byte meets characters split across network reads. Everything is a pure
function of a ``random.Random``, so equal seeds give equal replies.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "MIN_REPLY_TOKENS",
    "count_prompt_tokens",
    "logprob_entry",
    "reply_tokens",
    "seed_for",
    "text_of",
    "tokenize",
]

#: A default reply has between MIN_REPLY_TOKENS and MIN + SPREAD - 1 tokens, ending on a
#: sentence boundary, unless max_tokens or stop cut it first.
MIN_REPLY_TOKENS: Final = 48
REPLY_TOKEN_SPREAD: Final = 48

#: Sentences of the default reply. Each has a multi-byte UTF-8 character (an accent, a
#: typographic dash or quote, an emoji) and some long words split into several tokens, as in
#: real model output.
_SENTENCES: Final = (
    "The local server answers every request with the same words — for the same seed.",
    "Each token arrives in its own event, one small piece at a time… like rain.",
    "A careful reader waits for the blank line that ends an event; a naïve one doesn't.",
    "Déjà vu is a feature here: replay the seed and the story repeats.",
    "The café on the corner serves espresso, crème brûlée and a buttery croissant.",
    "Somewhere a deploy went out at dawn 🚀 and nobody noticed.",
    "Streams finish with a reason, and the reason is usually “stop”.",
    "Retries are polite when they wait — and rude when they hammer.",
    "Logprobs tell you how sure the model was, token by token ✨.",
    "The harbor lights flickered while the ferry crossed to Zürich.",
    "Good tests fail loudly and pass quietly ✅ without sleeping.",
    "Tool calls arrive as fragments, and the fragments add up to JSON — eventually.",
    "Every connection is reused until someone closes it… politely.",
    "The jalapeño salsa was hotter than the benchmark results 🌶️.",
    "A timeout is a promise about silence, not about length — remember that.",
    "Unicode isn't hard — it just has more bytes per character than you expected.",
    "The river kept its own schedule, indifferent to our deadlines 🌊.",
    "Backoff doubles each time, but never beyond its ceiling — that's the deal.",
    "Smörgåsbord is a wonderful word to split across network reads.",
    "Keep-alive comments are friendly, yet an idle stream is still idle 💤.",
    "Structured output means the reply matches the schema you asked for — exactly.",
    "The garden grew quietly ☕ while the build finished.",
    "Small, deterministic replies make flaky tests disappear 🎉.",
    "Nothing here leaves the machine; the network is just a loopback — 127.0.0.1.",
    "Ask for several choices and each one tells a different story 📚.",
    "A cut connection must never look like a finished answer — never.",
    "Rate limits reset eventually, so the client waits and tries again ⏳.",
    "The façade of the old station glows orange at sunset 🌅.",
)
_PARAGRAPH: Final = "\n\n"
#: Candidate alternatives for top_logprobs (more than the API maximum of 20).
_ALTERNATIVES: Final = (
    " the", " a", " and", " of", " to", ",", ".", " in", " is", " it", " that", " for",
    " on", " with", " as", " was", " we", " you", " this", " be", " at", " or", " an", " by",
)  # fmt: skip
_ALT_BYTES: Final = {alt: list(alt.encode()) for alt in _ALTERNATIVES}


_WORD_RE: Final = re.compile(r"\w+|[^\w\s]")
# Every character matches one alternative, so "".join(tokenize(t)) == t.
_TOKEN_RE: Final = re.compile(r"\s?\w{1,8}|\s?[^\w\s]{1,3}|\s+")
_SPACED: Final = tuple(tuple(_TOKEN_RE.findall(" " + s)) for s in _SENTENCES)
_UNSPACED: Final = tuple(tuple(_TOKEN_RE.findall(s)) for s in _SENTENCES)


def seed_for(*parts: object) -> int:
    """A stable 64-bit seed from strings and ints (Python's ``hash`` varies per process)."""
    joined = "\x1f".join(map(str, parts)).encode()
    return zlib.crc32(joined) | (zlib.adler32(joined) << 32)


def reply_tokens(rng: random.Random, length: int | None = None) -> list[str]:
    """Seeded sentences of about ``length`` tokens (random when None), ending a sentence."""
    if length is None:
        length = MIN_REPLY_TOKENS + rng.randrange(REPLY_TOKEN_SPREAD)
    tokens: list[str] = []
    random_ = rng.random
    spaced, unspaced, count = _SPACED, _UNSPACED, len(_SPACED)
    # The first sentence, and one after a paragraph break, has no leading space.
    tokens.extend(unspaced[int(random_() * count)])
    while len(tokens) < length:
        if random_() < 0.15:
            tokens.append(_PARAGRAPH)
            tokens.extend(unspaced[int(random_() * count)])
        else:
            tokens.extend(spaced[int(random_() * count)])
    return tokens


def tokenize(text: str) -> list[str]:
    """Split arbitrary text (a fixed reply, JSON) into token-sized pieces."""
    return _TOKEN_RE.findall(text)


def logprob_entry(token: str, rng: random.Random, top: int) -> dict[str, Any]:
    """One ``logprobs.content`` entry; ``top_logprobs`` starts with the chosen token.

    The chosen token's probability is in [0.35, 1), each alternative has half the mass
    left by the previous one, so the list is sorted descending and sums to at most 1.
    Every entry draws exactly two numbers from ``rng``, whatever ``top`` is, so the
    logprobs of a reply do not depend on how many alternatives were asked for.
    """
    prob = 0.35 + 0.6499 * rng.random()
    index = int(rng.random() * len(_ALTERNATIVES))
    logprob = math.log(prob)
    token_bytes = list(token.encode())
    alternatives: list[dict[str, Any]] = []
    if top > 0:
        alternatives.append({"token": token, "logprob": logprob, "bytes": token_bytes})
        rest = 1.0 - prob
        while len(alternatives) < top:
            alt = _ALTERNATIVES[index % len(_ALTERNATIVES)]
            index += 1
            if alt != token:
                rest *= 0.5
                alternatives.append(
                    {"token": alt, "logprob": math.log(rest), "bytes": _ALT_BYTES[alt]}
                )
    return {"token": token, "logprob": logprob, "bytes": token_bytes, "top_logprobs": alternatives}


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def count_prompt_tokens(messages: Sequence[Any], extra: Iterable[str] = ()) -> int:
    """Approximate prompt tokens: words and punctuation, plus per-message overhead."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += 4
        if isinstance(message, Mapping):
            total += len(_WORD_RE.findall(text_of(message.get("content"))))
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                total += len(_WORD_RE.findall(repr(calls)))
    for text in extra:
        total += len(_WORD_RE.findall(text))
    return total
