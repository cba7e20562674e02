"""The Ray integration is optional: nothing imports Ray until anyapi_async.ray is used."""

from __future__ import annotations

import subprocess
import sys


def test_import_and_a_client_do_not_load_ray() -> None:
    """`import anyapi_async`, a client and a batch run load neither Ray nor anyapi_async.ray."""
    code = (
        "import sys, anyapi_async\n"
        "c = anyapi_async.AsyncClient(api_key='k', base_url='http://127.0.0.1:9/v1')\n"
        "c.chat.completions.batch([])\n"
        "from anyapi_async import _jobs\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    modules = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "anyapi_async._batch" in modules  # the script did run
    assert not {m for m in modules if m == "ray" or m.startswith(("ray.", "anyapi_async.ray"))}
