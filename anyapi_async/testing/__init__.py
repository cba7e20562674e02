"""A local AnyAPI-compatible server for demos and for testing code that uses the client.

``LocalServer`` is a real aiohttp server on 127.0.0.1 that answers chat completions
(streaming or not) and model listings with deterministic replies, can be scripted with
exact responses and faults, and records what it received. ``python -m anyapi_async.testing``
runs one from the command line; the pytest plugin offers ``anyapi_server`` and
``anyapi_client`` fixtures. See docs/testing.md.

This package never imports the client at import time, and ``import anyapi_async`` does not
import it.
"""

from __future__ import annotations

from ._instant import instant_retries, set_instant_retries
from ._record import RecordedRequest
from ._request import JSON_OBJECT_SCHEMA
from ._schema import SchemaTooLarge, sample_schema
from ._script import (
    ErrorResponse,
    FaultOptions,
    Faults,
    Generated,
    Hang,
    JSONResponse,
    RawResponse,
    Redirect,
    Scripted,
    SSEResponse,
)
from ._server import ANY_MODEL, DEFAULT_MODEL, RESET_PATH, LocalServer

__all__ = [
    "ANY_MODEL",
    "DEFAULT_MODEL",
    "JSON_OBJECT_SCHEMA",
    "ErrorResponse",
    "FaultOptions",
    "Faults",
    "Generated",
    "Hang",
    "JSONResponse",
    "LocalServer",
    "RESET_PATH",
    "RawResponse",
    "RecordedRequest",
    "Redirect",
    "SSEResponse",
    "SchemaTooLarge",
    "Scripted",
    "instant_retries",
    "sample_schema",
    "set_instant_retries",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
