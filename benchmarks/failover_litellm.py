"""The failover benchmark's litellm variant: run by a Python that has litellm (not this
package). ``python benchmarks/failover_litellm.py PORT_A PORT_B PORT_C N CONCURRENCY``
prints one JSON line: latencies of successes, failures, CPU seconds.

litellm's ``Router`` with the same three deployments in the same order and its documented
fallback settings: one model group per deployment, ``fallbacks`` from the first to the
other two, everything else at its defaults (``num_retries``, ``allowed_fails``,
``cooldown_time``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request


async def main(ports: list[int], n: int, concurrency: int) -> None:
    import litellm
    from litellm import Router

    litellm.suppress_debug_info = True
    names = ["a", "b", "c"]
    router = Router(
        model_list=[
            {
                "model_name": name,
                "litellm_params": {
                    "model": "openai/m",
                    "api_base": f"http://127.0.0.1:{port}/v1",
                    "api_key": "sk-benchmark",
                },
            }
            for name, port in zip(names, ports, strict=True)
        ],
        fallbacks=[{"a": ["b", "c"]}],
    )
    messages = [{"role": "user", "content": "hi"}]
    latencies: list[float] = []
    failures = 0
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal failures
        async with semaphore:
            started = time.perf_counter()
            try:
                await router.acompletion(model="a", messages=messages, max_tokens=5)
            except Exception:
                failures += 1
            else:
                latencies.append(time.perf_counter() - started)

    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu = time.process_time() - cpu
    print(json.dumps({"latencies": latencies, "failures": failures, "cpu": cpu}))


def reset(port: int) -> None:
    """Start the endpoints' schedule now (litellm takes seconds to import)."""
    import litellm  # noqa: F401 - imported before the clock starts

    request = urllib.request.Request(f"http://127.0.0.1:{port}/_reset", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


if __name__ == "__main__":
    ports = [int(p) for p in sys.argv[1:4]]
    reset(ports[0])
    asyncio.run(main(ports, int(sys.argv[4]), int(sys.argv[5])))
