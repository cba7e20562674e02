"""The shape of the anyapi_async.otel package: its public names, and what imports what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from anyapi_async import otel

PACKAGE = Path(otel.__file__).parent

#: Every public name of the single ``anyapi_async/otel.py`` module the package replaced.
NAMES_BEFORE_THE_SPLIT = (
    "ANYAPI_ATTEMPTS", "ANYAPI_BATCH_CUSTOM_ID", "ANYAPI_BATCH_INDEX", "ANYAPI_BATCH_IN_FLIGHT",
    "ANYAPI_BATCH_OUTCOME", "ANYAPI_BATCH_RATE_LIMITED", "ANYAPI_BATCH_RATE_LIMIT_WAIT",
    "ANYAPI_BATCH_REQUESTS", "ANYAPI_RATE_LIMITED", "ANYAPI_RATE_LIMIT_WAIT", "ANYAPI_REQUEST_ID",
    "ANYAPI_RETRY_EVENT", "ANYAPI_RETRY_WAIT", "ANYAPI_STREAM_CHUNKS", "ANYAPI_STREAM_END",
    "CHAT_PATH", "CaptureContent", "DURATION_BUCKETS", "ENV_CAPTURE_CONTENT", "ERROR_TYPE",
    "EVENT_DETAILS", "GEN_AI_CLIENT_OPERATION_DURATION",
    "GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK", "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK",
    "GEN_AI_CLIENT_TOKEN_USAGE", "GEN_AI_INPUT_MESSAGES", "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES", "GEN_AI_OUTPUT_TYPE", "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_CHOICE_COUNT", "GEN_AI_REQUEST_FREQUENCY_PENALTY", "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL", "GEN_AI_REQUEST_PRESENCE_PENALTY", "GEN_AI_REQUEST_SEED",
    "GEN_AI_REQUEST_STOP_SEQUENCES", "GEN_AI_REQUEST_STREAM", "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_K", "GEN_AI_REQUEST_TOP_P", "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID", "GEN_AI_RESPONSE_MODEL", "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK",
    "GEN_AI_SYSTEM_INSTRUCTIONS", "GEN_AI_TOKEN_TYPE", "GEN_AI_TOOL_DEFINITIONS",
    "GEN_AI_USAGE_AUDIO_INPUT_TOKENS", "GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS", "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS", "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS", "INSTRUMENTATION_NAME",
    "KNOWN_PROVIDERS", "OPENAI_API_TYPE", "OPENAI_REQUEST_SERVICE_TIER",
    "OPENAI_RESPONSE_SERVICE_TIER", "OPENAI_RESPONSE_SYSTEM_FINGERPRINT", "OPERATION_CHAT",
    "PROVIDER_ANYAPI", "SERVER_ADDRESS", "SERVER_PORT", "TOKEN_BUCKETS", "error_type", "instrument",
    "is_instrumented", "provider_for", "uninstrument",
)


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_every_name_of_the_old_module_is_still_there() -> None:
    """The split kept every public name importable from anyapi_async.otel."""
    missing = [name for name in NAMES_BEFORE_THE_SPLIT if not hasattr(otel, name)]
    assert missing == []
    assert otel.__all__ == ["instrument", "is_instrumented", "uninstrument"]
    assert otel.DURATION_BUCKETS[0] == 0.01 and otel.GEN_AI_PROVIDER_NAME == "gen_ai.provider.name"


@pytest.mark.parametrize("module", ["_semconv", "_attributes", "_content"])
def test_pure_modules_import_no_opentelemetry(module: str) -> None:
    """The names, the attribute mapping and the content shapes need no OpenTelemetry."""
    assert not [name for name in _imports(module) if name.startswith("opentelemetry")]


def test_only_the_hook_in_module_touches_the_client_seams() -> None:
    """Everything that hooks into the client lives in _instrument (one place to re-point)."""
    seams = {"Observer", "observe", "yields_chunks"}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        used = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        if path.stem != "_instrument":
            assert not used & seams, path.name
    assert seams <= {
        alias.name
        for node in ast.walk(ast.parse((PACKAGE / "_instrument.py").read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
