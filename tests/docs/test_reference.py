"""The built API reference (docs/reference.md, mkdocstrings) has an entry for every public name.

Building needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings[python]), which the
``test`` extra does not install: without it these tests skip and say so. CI (``.ci/run``)
installs ``.[dev,docs]`` and runs this file with ``ANYAPI_DOCS_TESTS=required``, which turns
the skip into a failure, so the check cannot silently stop running there.

An entry is the HTML anchor mkdocstrings gives an object, its public path
(``id="anyapi_async.testing.LocalServer"``). The names are each module's ``__all__``;
``anyapi_async.ray``'s is read from its source, since importing it needs the ``ray`` extra
(mkdocstrings reads the source too, without importing it).
"""

from __future__ import annotations

import ast
import html
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import anyapi_async

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "anyapi_async", "anyapi_async.testing", "anyapi_async.cache", "anyapi_async.otel",
    "anyapi_async.ray",
]
REQUIRED = os.environ.get("ANYAPI_DOCS_TESTS") == "required"
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def public_names(module: str) -> list[str]:
    """``module.__all__``, from the module, or from its source when it needs a missing extra."""
    try:
        return list(importlib.import_module(module).__all__)
    except ImportError:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                return list(ast.literal_eval(node.value))
        raise AssertionError(f"{module} has no literal __all__ to read") from None


@pytest.fixture(scope="module")
def reference_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """docs/reference.md as ``mkdocs build --strict`` renders it."""
    missing = _missing_docs_packages()
    if missing:
        why = (
            f"building the docs needs the docs extra (pip install -e '.[docs]'); missing: "
            f"{', '.join(missing)}. CI installs it and runs this test."
        )
        if REQUIRED:
            pytest.fail(f"ANYAPI_DOCS_TESTS=required, but {why}", pytrace=False)
        pytest.skip(why)
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (site / "reference" / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def anchors(reference_html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', reference_html))


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_has_an_entry(module: str, anchors: set[str]) -> None:
    names = public_names(module)
    assert names, f"{module}.__all__ is empty"
    missing = [name for name in names if f"{module}.{name}" not in anchors]
    assert missing == [], f"docs/reference.md has no entry for these names of {module}"


def test_every_create_parameter_has_an_entry(anchors: set[str]) -> None:
    """create()'s keyword parameters (CompletionCreateParams' keys) are listed."""
    params = anyapi_async.CompletionCreateParams
    keys = sorted(params.__required_keys__ | params.__optional_keys__)
    for key in ("temperature", "max_tokens", "seed", "stop", "timeout", "extra_body", "tools"):
        assert key in keys
    missing = [k for k in keys if f"anyapi_async.CompletionCreateParams.{k}" not in anchors]
    assert missing == []


def test_attributes_show_no_implementation(reference_html: str) -> None:
    """Attributes set in ``__init__`` show their name and type, not the code setting them."""
    entry = re.compile(r'id="([^"]+)" class="doc doc-heading">(.*?)</h\d>(.*?)(?=<h\d|$)', re.S)
    shown = []
    for ident, heading, body in entry.findall(reference_html):
        if "instance-attribute" in heading:
            first_line = html.unescape(re.sub(r"<[^>]+>", "", body)).strip().split("\n")[0]
            if " = " in first_line:
                shown.append(f"{ident}: {first_line}")
    assert 'id="anyapi_async.AsyncClient.base_url"' in reference_html
    assert "check_base_url" not in reference_html
    assert shown == []
