"""Calls flow one way: the package's import graph has no cycle in any of the three views.

The check is the shared tool ``../shared/tools/import_graph.py`` (beside the repository, as
STYLE.md describes; CI has a copy there too). It reads the source and imports nothing. Its
views: ``run-time`` (module-level imports), ``run-time+local`` (with imports inside
functions: a loop hidden by a local import is still a loop) and ``all`` (with
``TYPE_CHECKING`` imports: who knows whom).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import anyapi_async

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT.parent / "shared" / "tools" / "import_graph.py"
VIEWS = ("run-time", "run-time+local", "all")


@pytest.fixture(scope="module")
def graph() -> dict[str, Any]:
    """The tool's JSON report on the package as imported by these tests."""
    if not TOOL.is_file():
        pytest.skip(
            f"the import-graph tool is not beside the repository ({TOOL}): "
            "it ships with the development checkout, not with an unpacked sdist"
        )
    package = Path(anyapi_async.__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, str(TOOL), str(package), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_tool_reports_every_view(graph: dict[str, Any]) -> None:
    """The report is about this package and has the three views the checks below read."""
    assert graph["package"] == "anyapi_async"
    assert graph["modules"] > 10
    assert set(VIEWS) <= set(graph["views"])


@pytest.mark.parametrize("view", VIEWS)
def test_no_import_cycle(graph: dict[str, Any], view: str) -> None:
    """No cycle between the package's modules in ``view``; the message lists each loop."""
    cycles = graph["views"][view]["cycles"]
    described = "\n".join(
        f"  {', '.join(c['modules'])}\n" + "".join(f"    {e}\n" for e in c["edges"])
        for c in cycles
    )
    assert not cycles, f"{len(cycles)} import cycle(s) in view {view!r}:\n{described}"
