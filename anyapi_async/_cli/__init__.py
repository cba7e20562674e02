"""The ``anyapi`` command: chat, models, demo and batch.

``anyapi ...`` and ``python -m anyapi_async ...`` are the same program. Errors end the
program with one line on stderr and a non-zero status, never a traceback: 1 for API and
connection errors, 2 for usage and configuration mistakes, 130 on Ctrl-C; ``anyapi batch``
adds 1 when items failed and 3 when the job stopped early. `.parser` holds every
subcommand's options, `.program` runs one; each subcommand is a module (`.chat`, `.models`,
`.demo`, `.batch`) calling the library (``anyapi batch`` calls `anyapi_async._jobs`), and
`.errors` is the leaf they share.
"""

from __future__ import annotations

from .parser import DEFAULT_BATCH_CONCURRENCY, DEFAULT_MODEL, build_parser
from .program import main

__all__ = ["DEFAULT_BATCH_CONCURRENCY", "DEFAULT_MODEL", "build_parser", "main"]
