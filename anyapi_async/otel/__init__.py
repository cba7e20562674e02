"""OpenTelemetry spans, metrics and events for chat completions (GenAI semantic conventions).

```python
from anyapi_async import AsyncClient
from anyapi_async.otel import instrument

client = instrument(AsyncClient())      # global providers, or pass tracer_provider=... etc.
```

Follows the OpenTelemetry GenAI semantic conventions (Development status, now kept in the
``semantic-conventions-genai`` repository): one ``CLIENT`` span
``chat {gen_ai.request.model}`` per call, covering its retries and their waits; the
duration, token and streaming metrics with the advised bucket boundaries; and, when content
capture is on, the ``gen_ai.client.inference.operation.details`` event. By default the
names are those of semantic-conventions v1.41.0 (``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``...); ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``
switches to the latest release's (``gen_ai.client.inference.*``), as the conventions' own
transition plan asks. The names are constants of this package rather than those of
``opentelemetry-semantic-conventions``, whose GenAI names are deprecated there.

This module needs ``opentelemetry-api`` (``pip install 'anyapi-async[otel]'``); nothing
imports it unless the application does. See docs/observability.md.
"""

from __future__ import annotations

try:
    import opentelemetry.trace  # noqa: F401  (the dependency check, before anything else)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "anyapi_async.otel needs OpenTelemetry: pip install 'anyapi-async[otel]'"
    ) from exc

from ._attributes import error_type as error_type
from ._attributes import provider_for as provider_for
from ._instrument import instrument as instrument
from ._instrument import is_instrumented as is_instrumented
from ._instrument import uninstrument as uninstrument
from ._semconv import *  # noqa: F403  (every name, as the single module had them)

__all__ = ["instrument", "is_instrumented", "uninstrument"]
