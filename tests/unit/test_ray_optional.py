"""The Ray integration is optional: nothing imports Ray until anyapi_async.ray is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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


def test_engine_ray_without_ray_says_what_to_install(tmp_path: Path) -> None:
    """`anyapi batch --engine ray` without the extra: one line naming it, status 2."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"model": "m", "messages": [{"role": "user", "content": "hi"}]}\n')
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if the extra were not installed\n"
        "from anyapi_async._cli import main\n"
        f"sys.exit(main(['batch', {str(source)!r}, '--engine', 'ray',"
        " '--base-url', 'http://127.0.0.1:9/v1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert "pip install 'anyapi-async[ray]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "in.output.jsonl").exists()
