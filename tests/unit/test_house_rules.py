"""The house rule: no module of the package reads another module's underscored names.

An AST walk over ``anyapi_async/``. A module "owns" the underscored names it defines: its
functions, classes and module variables, ``self._x``/``cls._x`` it assigns, and the
``__slots__`` it declares. Reading ``x._name`` where ``x`` is not ``self``/``cls`` and
``_name`` is not owned by the module, or ``from .mod import _name`` (a name, not a
submodule), is a missing seam.
"""

from __future__ import annotations

import ast
from pathlib import Path

import anyapi_async

PACKAGE = Path(anyapi_async.__file__).parent

#: (module, attribute, why). Keep it short; each entry is a measured exception.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # urllib's SplitResult is a namedtuple: _replace is its public API.
        ("_settings.py", "_replace"),
        ("_logging.py", "_replace"),
        # The per-chunk loop sets KeepsBody's slot itself: keep_response() would add a
        # function call per chunk (~40 ns on a ~3 us chunk), and that loop must not slow.
        ("_streaming.py", "_raw"),
    }
)


def _owned(tree: ast.AST) -> set[str]:
    own: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
            and isinstance(node.ctx, ast.Store)
        ):
            own.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Name)
                    and target.id == "__slots__"
                    and isinstance(node.value, (ast.Tuple, ast.List))
                ):
                    own.update(
                        e.value
                        for e in node.value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    )
    return own


def _is_module(path: Path, level: int, module: str | None, name: str) -> bool:
    base = path.parent
    for _ in range(level - 1):
        base = base.parent
    if module:
        base = base.joinpath(*module.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def violations(path: Path, source: str | None = None) -> list[str]:
    """Each read of another module's underscored name in ``path`` (or ``source`` as it)."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    own = _owned(tree)
    rel = path.relative_to(PACKAGE).as_posix()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in own:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if (rel, name) in ALLOWED:
                continue
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            for alias in node.names:
                name = alias.name
                if not name.startswith("_") or name.startswith("__"):
                    continue
                if _is_module(path, node.level, node.module, name):
                    continue
                found.append(f"{rel}:{node.lineno}: from {node.module} import {name}")
    return found


def test_no_module_reads_another_modules_private_names() -> None:
    """Every module reaches the others through public (or public-in-package) names only."""
    found = [v for path in sorted(PACKAGE.rglob("*.py")) for v in violations(path)]
    assert found == []


def test_the_check_catches_a_private_read() -> None:
    """The walk flags ``client._semaphore`` and ``from ._client import _is_loopback``."""
    source = (
        "from ._client import _is_loopback\n"
        "from . import _jobs\n"
        "def f(client):\n"
        "    return client._semaphore\n"
        "class C:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def g(self, other):\n"
        "        return other._mine\n"
    )
    found = violations(PACKAGE / "_probe.py", source)
    assert sorted(found) == [
        "_probe.py:1: from _client import _is_loopback",
        "_probe.py:4: client._semaphore",
    ]


def test_messages_is_a_leaf() -> None:
    """_messages imports only value modules, and the tool runner no longer needs _resources."""
    tree = ast.parse((PACKAGE / "_messages.py").read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    }
    assert imported == {"_types"}
    for name in ("_tools", "_tool_stream"):
        source = (PACKAGE / f"{name}.py").read_text(encoding="utf-8")
        assert "_resources import check_messages" not in source
        assert "_resources import build_body" not in source
