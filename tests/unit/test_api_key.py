"""resolve_api_key(): the one place the client, the CLI and the job runner find the key."""

from __future__ import annotations

import pytest

import anyapi_async as aa
from anyapi_async._settings import resolve_api_key


def test_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit key is used as given; the environment is only the fallback."""
    monkeypatch.setenv("ANYAPI_API_KEY", "sk-env")
    assert resolve_api_key("sk-arg") == "sk-arg"
    assert resolve_api_key() == "sk-env"


def test_pasted_blank_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key pasted with a trailing newline works, for the client as for the CLI."""
    monkeypatch.setenv("MY_KEY", "  sk-pasted\n")
    assert resolve_api_key(env="MY_KEY") == "sk-pasted"
    monkeypatch.setenv("ANYAPI_API_KEY", "sk-pasted\n")
    client = aa.AsyncClient(base_url="https://api.example/v1")
    assert "sk-pasted" not in repr(client)


def test_inner_space_is_refused_without_echoing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key with a space inside is refused, naming the variable and not the key."""
    monkeypatch.setenv("MY_KEY", "sk-SECRET part")
    with pytest.raises(ValueError, match="MY_KEY holds a space") as caught:
        resolve_api_key(env="MY_KEY")
    assert "SECRET" not in str(caught.value)


def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key: None for a loopback server, else an error naming the variable."""
    monkeypatch.delenv("ANYAPI_API_KEY", raising=False)
    assert resolve_api_key(None, "http://127.0.0.1:8000/v1") is None
    assert resolve_api_key(None, "http://localhost/v1") is None
    with pytest.raises(ValueError, match="set the ANYAPI_API_KEY environment variable"):
        resolve_api_key(None, "https://api.anyapi.ai/v1")
    with pytest.raises(ValueError, match="ANYAPI_API_KEY"):
        aa.AsyncClient(base_url="https://api.anyapi.ai/v1")
