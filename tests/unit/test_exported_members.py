"""The public surface: every name API.md promises, a sorted __all__, a cheap import."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import anyapi_async

API_MD_NAMES = [
    "AsyncClient",
    "AsyncStream",
    "ChatCompletion",
    "ChatCompletionChunk",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "APIResponseValidationError",
    "Timeout",
]


def test_api_md_names_exist() -> None:
    """Every name of the contract is exported, and is the class of that name."""
    for name in API_MD_NAMES:
        assert name in anyapi_async.__all__, name
        obj = getattr(anyapi_async, name)
        assert isinstance(obj, type), name
        assert obj.__name__ == name


def test_lazy_names_have_one_list() -> None:
    """The type checker's view of the lazy names (TYPE_CHECKING imports) is the _LAZY table."""
    tree = ast.parse(Path(anyapi_async.__file__).read_text())
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported = {
        alias.asname or alias.name: node.module
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == anyapi_async._LAZY
    assert set(anyapi_async._LAZY) <= set(anyapi_async.__all__)
    for name, module in anyapi_async._LAZY.items():
        source = importlib.import_module(f"anyapi_async.{module}")
        assert getattr(anyapi_async, name) is getattr(source, name), name


def test_version_comes_from_the_leaf_module() -> None:
    """__version__ is the one in _version.py, which hatch reads too."""
    from anyapi_async._version import __version__

    assert anyapi_async.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert 'path = "anyapi_async/_version.py"' in pyproject


def test_all_is_importable_and_public_module() -> None:
    """Each exported name resolves, classes report the public module path."""
    for name in anyapi_async.__all__:
        obj = getattr(anyapi_async, name)
        if isinstance(obj, type) and obj is not anyapi_async.NotGiven:  # msgspec's UnsetType
            assert obj.__module__ == "anyapi_async", name


def test_client_surface() -> None:
    """The client methods and attributes of API.md exist."""
    client = anyapi_async.AsyncClient(api_key="k", base_url="http://127.0.0.1:9/v1")
    completions = client.chat.completions
    for attr in ("create", "stream"):
        assert callable(getattr(completions, attr))
    for attr in ("aclose", "with_options", "__aenter__", "__aexit__"):
        assert callable(getattr(client, attr))
    assert client.max_retries == 2
    assert client.timeout == anyapi_async.Timeout(60)


def test_import_loads_only_what_a_request_needs() -> None:
    """`import anyapi_async` loads no CLI, testing server, batch, tools or parsing code."""
    code = "import sys, anyapi_async; print(' '.join(sorted(sys.modules)))"
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    for heavy in (
        "anyapi_async.testing",
        "anyapi_async._cli",
        "anyapi_async._demo",
        "anyapi_async._batch",
        "anyapi_async._jobs",
        "anyapi_async._tools",
        "anyapi_async._parsing",
        "anyapi_async._schema",
        "anyapi_async._ratelimit",
        "argparse",
        "tqdm",
        "openai",
    ):
        assert heavy not in modules, heavy


def test_tools_load_schemas_without_the_parse_results() -> None:
    """Describing tools loads the schema module, not parse()'s results or the stream helpers."""
    code = (
        "import sys, anyapi_async; anyapi_async.function_tool; print(' '.join(sorted(sys.modules)))"
    )
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert {"anyapi_async._tools", "anyapi_async._schema"} <= modules
    assert "anyapi_async._parsing" not in modules
    assert "anyapi_async._chat_stream" not in modules
