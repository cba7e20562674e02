"""pytest fixtures for testing code against ``LocalServer``, registered as a pytest11 plugin.

``anyapi_server`` is a running ``LocalServer`` (one per test) that serves every model id
(``models=ANY_MODEL``), so tests of client code need not list theirs; ``anyapi_client`` is
an ``AsyncClient`` pointed at it (``max_retries=0``), closed after the test. Override the
``anyapi_server_options`` fixture to pass ``LocalServer`` keyword arguments (``"models":
[...]`` to have unknown models refused with 404). The async
fixtures need pytest-asyncio; without it, using them fails with a clear message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from ._server import ANY_MODEL, LocalServer

if TYPE_CHECKING:
    from anyapi_async import AsyncClient

__all__ = ["anyapi_client", "anyapi_server", "anyapi_server_options"]

_NEEDS_ASYNCIO = (
    "the anyapi_server and anyapi_client fixtures need pytest-asyncio: "
    "pip install pytest-asyncio (or anyapi-async[test])"
)


def _async_fixture(func: Callable[..., Any]) -> Any:
    """``pytest_asyncio.fixture``, or a fixture that fails clearly without pytest-asyncio."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - only without pytest-asyncio

        def unavailable() -> None:
            pytest.fail(_NEEDS_ASYNCIO, pytrace=False)

        unavailable.__doc__ = func.__doc__
        return pytest.fixture(name=func.__name__)(unavailable)
    return pytest_asyncio.fixture(func)


@pytest.fixture
def anyapi_server_options() -> dict[str, Any]:
    """Keyword arguments for the ``anyapi_server`` fixture's ``LocalServer``."""
    return {}


@_async_fixture
async def anyapi_server(anyapi_server_options: dict[str, Any]) -> AsyncIterator[LocalServer]:
    """A running ``LocalServer`` on 127.0.0.1 serving any model, closed after the test."""
    async with LocalServer(**{"models": ANY_MODEL, **anyapi_server_options}) as server:
        yield server


@_async_fixture
async def anyapi_client(anyapi_server: LocalServer) -> AsyncIterator[AsyncClient]:
    """An ``AsyncClient`` for ``anyapi_server`` (key ``sk-test``, no retries), closed after."""
    from anyapi_async import AsyncClient  # lazily: the server must not need the client

    async with AsyncClient(
        api_key="sk-test", base_url=anyapi_server.base_url, max_retries=0
    ) as client:
        yield client
