"""The ANYAPI_LOG switch and the per-attempt log lines (request, status, attempt, timing)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import anyapi_async as aa
from anyapi_async import _logging
from anyapi_async.testing import ErrorResponse, LocalServer

from ..conftest import API_KEY

MSGS: list[Any] = [{"role": "user", "content": "hello"}]
LOGGER = logging.getLogger("anyapi_async")


@pytest.fixture
def restore_logger() -> Iterator[None]:
    """Put the library logger back as it was (level, handlers, the switch's handler)."""
    level, handlers = LOGGER.level, list(LOGGER.handlers)
    yield
    LOGGER.setLevel(level)
    LOGGER.handlers[:] = handlers


@pytest.mark.usefixtures("restore_logger")
def test_switch_sets_level_and_one_handler() -> None:
    """debug/info (any case) set the level and add one stderr handler, once."""
    before = len(LOGGER.handlers)
    assert _logging.setup_logging("DEBUG") is True
    assert _logging.setup_logging("info") is True
    assert LOGGER.level == logging.INFO
    added = LOGGER.handlers[before:]
    assert len(added) == 1 and isinstance(added[0], _logging.SwitchHandler)
    assert added[0].stream is sys.stderr
    with pytest.warns(RuntimeWarning, match="ANYAPI_LOG='chatty' is not a log level"):
        assert _logging.setup_logging("chatty") is False
    assert LOGGER.level == logging.INFO


def test_redact_url_masks_key_like_query_values() -> None:
    """Query values named like keys are masked; the rest of the URL is kept."""
    url = "https://h/v1/chat/completions?api_key=SECRET&model=x&access_token=T"
    redacted = _logging.redact_url(url)
    assert "SECRET" not in redacted and "=T" not in redacted
    assert redacted.startswith("https://h/v1/chat/completions?")
    assert "api_key=***" in redacted and "model=x" in redacted
    assert _logging.redact_url("https://h/v1/models") == "https://h/v1/models"


async def test_attempt_lines_with_status_attempt_and_time(
    server: LocalServer, no_backoff: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """A client made with the logger at INFO logs each attempt's status, number and time."""
    server.queue(ErrorResponse(503))
    with caplog.at_level(logging.INFO, logger="anyapi_async"):
        async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
            await c.chat.completions.create(
                model="m", messages=MSGS, extra_query={"api_key": API_KEY}
            )
    lines = [r.getMessage() for r in caplog.records if r.name == "anyapi_async"]
    statuses = [line for line in lines if " -> " in line]
    assert len(statuses) == 2
    assert "-> 503 (attempt 1," in statuses[0] and "-> 200 (attempt 2," in statuses[1]
    assert all(line.startswith("POST http://127.0.0.1:") and " ms)" in line for line in statuses)
    assert any(line.startswith("Retrying") for line in lines)
    assert "api_key=***" in statuses[0]
    assert all(API_KEY not in line for line in lines)


async def test_failure_line(
    server: LocalServer, no_backoff: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """A call that gives up says so, with the attempts made and the error."""
    server.queue(ErrorResponse(401, "invalid key"))
    with caplog.at_level(logging.INFO, logger="anyapi_async"):
        async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
            with pytest.raises(aa.AuthenticationError):
                await c.chat.completions.create(model="m", messages=MSGS)
    lines = [r.getMessage() for r in caplog.records]
    assert any("failed after 1 attempt(s): 401 AuthenticationError" in line for line in lines)


async def test_client_made_with_logging_off_logs_no_attempts(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The per-attempt hook is chosen when the client is made: off means none at all."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url) as c:
        with caplog.at_level(logging.INFO, logger="anyapi_async"):
            await c.chat.completions.create(model="m", messages=MSGS)
    assert not [r for r in caplog.records if " -> " in r.getMessage()]


def test_env_switch_in_a_fresh_process() -> None:
    """ANYAPI_LOG=debug prints request, status and completion lines on stderr, key masked."""
    code = textwrap.dedent(
        f"""
        import asyncio
        import anyapi_async
        from anyapi_async.testing import ANY_MODEL, LocalServer

        async def main():
            async with LocalServer(models=ANY_MODEL) as s:
                c = anyapi_async.AsyncClient(api_key={API_KEY!r}, base_url=s.base_url)
                async with c:
                    msgs = [{{"role": "user", "content": "x"}}]
                    await c.chat.completions.create(model="m", messages=msgs)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "ANYAPI_LOG": "debug"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    err = out.stderr
    assert "anyapi_async" in err and "DEBUG" in err
    assert "Request: POST http://127.0.0.1:" in err
    assert "-> 200 (attempt 1," in err
    assert "complete (attempt 1, tokens:" in err
    assert API_KEY not in err


def test_unknown_env_value_warns_once_in_a_fresh_process() -> None:
    """ANYAPI_LOG=verbose switches nothing on and says so once, naming the accepted values."""
    code = textwrap.dedent(
        """
        import anyapi_async
        from anyapi_async import _logging

        anyapi_async.AsyncClient  # loads the client module, which reads the switch
        assert _logging.setup_logging() is False  # read again: no second warning
        print("handlers:", len(_logging.logger.handlers))
        """
    )
    env = {**os.environ, "ANYAPI_LOG": "verbose"}
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    lines = [line for line in out.stderr.splitlines() if "is not a log level" in line]
    assert len(lines) == 1, out.stderr
    assert "RuntimeWarning" in lines[0]
    assert "ANYAPI_LOG='verbose'" in lines[0]
    assert "ANYAPI_LOG=debug" in lines[0] and "ANYAPI_LOG=info" in lines[0]
    assert "handlers: 0" in out.stdout


def test_empty_env_value_is_silent() -> None:
    """An empty ANYAPI_LOG is the same as none: no warning, no handler."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _logging.setup_logging("") is False
        assert _logging.setup_logging("  ") is False


async def test_cancelled_attempts_leave_nothing_in_the_hook(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Attempts cancelled mid-flight keep no state in the logging hook; later timings hold."""
    from anyapi_async.testing import Generated, Hang

    from ..batch.conftest import wait_until

    hook = _logging.AttemptLogger()
    server.set_default(Hang())
    async with aa.AsyncClient(api_key=API_KEY, base_url=server.base_url, hooks=[hook]) as c:
        tasks = [
            asyncio.ensure_future(c.chat.completions.create(model="m", messages=MSGS))
            for _ in range(20)
        ]
        await wait_until(lambda: server.in_flight == 20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(not held for held in vars(hook).values()), vars(hook)
        server.set_default(Generated())
        with caplog.at_level(logging.INFO, logger="anyapi_async"):
            await c.chat.completions.create(model="m", messages=MSGS)
    statuses = [r.getMessage() for r in caplog.records if " -> 200 " in r.getMessage()]
    assert len(statuses) >= 1 and all(line.endswith(" ms)") for line in statuses), statuses
