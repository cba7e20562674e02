"""Relay live structured output and tool-runner events to a browser (aiohttp.web, SSE).

    pip install 'anyapi-async[partial]'
    python examples/live_relay.py --local          # then open http://127.0.0.1:8080
    ANYAPI_API_KEY=sk-... python examples/live_relay.py --port 8000

``GET /`` serves a page with two buttons. **Extract** opens an ``EventSource`` on
``/extract?text=...``: the handler streams ``stream_parse(..., response_format=Contact)``
and sends each ``partial_objects()`` snapshot as a ``snapshot`` event, so the page shows
the object filling in field by field; a ``done`` event carries the validated object.
**Ask the agent** opens ``/agent?prompt=...``: the handler iterates ``stream_tools()``
and forwards its text pieces (``text``) and tool calls (``tool``: start, result, error)
as they happen, then ``done``. API errors become an ``apierror`` event. When a browser
goes away, leaving ``async with`` closes the upstream stream and cancels running tools.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Literal

import msgspec
from _common import add_target_arguments, open_client
from aiohttp import web

from anyapi_async import APIError, AsyncClient, function_tool

CLIENT = web.AppKey("client", AsyncClient)
MODEL = web.AppKey("model", str)


class Contact(msgspec.Struct):
    """A person to get back to, extracted from free text."""

    name: str
    company: str | None
    email: str | None
    topics: list[str]
    urgency: Literal["low", "normal", "high"]
    summary: str


@function_tool
async def get_weather(city: str) -> dict[str, float | str]:
    """The current weather in a city, temperature in °C.

    Args:
        city: the city's name, e.g. "Oslo".
    """
    await asyncio.sleep(0)  # a real tool would await an HTTP call here
    return {"city": city, "celsius": 18.5, "sky": "clear"}


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>anyapi-async · live objects and tool events</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; }
  textarea { width: 100%; font: inherit; }
  pre { background: #f6f6f6; padding: 1rem; min-height: 4rem; white-space: pre-wrap; }
  #status { color: #666; }
  .tool { font-family: monospace; }
</style>
</head>
<body>
<h1>Live objects and tool events</h1>
<textarea id="input" rows="3">Hi, Ada Lovelace from Analytical Engines (ada@engines.example) here.
Please call me about the Bernoulli numbers program this week.
What does get_weather say for London?</textarea>
<p><button id="extract">Extract</button> <button id="agent">Ask the agent</button></p>
<pre id="object"></pre>
<ol id="events"></ol>
<p id="answer"></p>
<p id="status">idle</p>
<script>
const $ = (id) => document.getElementById(id);
window.snapshots = [];   // [milliseconds, snapshot] per event: the end-to-end test reads them
window.final = null;
window.log = [];         // agent events, in order
let source = null;

function open(path, handlers) {
  if (source) source.close();
  $("status").textContent = "streaming";
  source = new EventSource(path + encodeURIComponent($("input").value));
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  }
  source.addEventListener("apierror", (e) => {
    source.close();
    $("status").textContent = "error: " + JSON.parse(e.data).message;
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      source.close();
      $("status").textContent = "error: connection lost";
    }
  };
}

$("extract").addEventListener("click", () => {
  window.snapshots = []; window.final = null;
  $("object").textContent = "";
  open("/extract?text=", {
    snapshot: (value) => {
      window.snapshots.push([performance.now(), value]);
      $("object").textContent = JSON.stringify(value, null, 2);  // text: never parsed as HTML
    },
    done: (value) => {
      source.close();  // or EventSource would reconnect and ask again
      window.final = value;
      $("object").textContent = JSON.stringify(value, null, 2);
      $("status").textContent = "done: extracted";
    },
  });
});

$("agent").addEventListener("click", () => {
  window.log = [];
  $("events").textContent = ""; $("answer").textContent = "";
  open("/agent?prompt=", {
    text: (delta) => { window.log.push(["text", delta]); $("answer").textContent += delta; },
    tool: (event) => {
      window.log.push(["tool", event]);
      const item = document.createElement("li");
      item.className = "tool";
      item.textContent = event.phase === "start"
        ? `${event.name}(${event.arguments})` : `${event.name} ${event.phase}: ${event.output}`;
      $("events").appendChild(item);
    },
    done: (info) => {
      source.close();
      window.log.push(["done", info]);
      $("status").textContent = `done: ${info.rounds} rounds`;
    },
  });
});
</script>
</body>
</html>
"""


def sse(event: str, data: object) -> bytes:
    """One SSE event; JSON keeps newlines inside the data from ending the ``data:`` line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
        }
    )
    await response.prepare(request)
    return response


def query(request: web.Request, name: str) -> str:
    value = request.query.get(name, "").strip()
    if not value:
        raise web.HTTPBadRequest(text=f"the {name} query parameter is required")
    return value


async def index(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def extract(request: web.Request) -> web.StreamResponse:
    text = query(request, "text")
    response = await open_sse(request)
    # A browser going away raises ConnectionResetError at the next write: leaving `async
    # with` closed the upstream stream, and no one is left to tell (no error to log).
    with contextlib.suppress(ConnectionResetError):
        await relay_extract(request.app, text, response)
    return response


async def relay_extract(app: web.Application, text: str, response: web.StreamResponse) -> None:
    try:
        async with app[CLIENT].chat.completions.stream_parse(
            model=app[MODEL],
            messages=[
                {"role": "system", "content": "Extract the contact from the message."},
                {"role": "user", "content": text},
            ],
            response_format=Contact,
            max_tokens=600,
        ) as stream:
            async for snapshot in stream.partial_objects():
                await response.write(sse("snapshot", snapshot))
            contact = await stream.get_final_parsed()
    except APIError as exc:  # ContentValidationError too: a reply that does not decode
        await response.write(sse("apierror", {"message": str(exc)}))
        return
    await response.write(sse("done", msgspec.to_builtins(contact)))


async def agent(request: web.Request) -> web.StreamResponse:
    prompt = query(request, "prompt")
    response = await open_sse(request)
    with contextlib.suppress(ConnectionResetError):  # the browser left: as in extract()
        await relay_agent(request.app, prompt, response)
    return response


async def relay_agent(app: web.Application, prompt: str, response: web.StreamResponse) -> None:
    try:
        async with app[CLIENT].chat.completions.stream_tools(
            model=app[MODEL],
            messages=[{"role": "user", "content": prompt}],
            tools=[get_weather],
            max_rounds=4,
        ) as run:
            async for event in run:
                if event.type == "text.delta":
                    await response.write(sse("text", event.delta))
                elif event.type == "tool_call.start":
                    start = {"phase": "start", "name": event.name, "arguments": event.arguments}
                    await response.write(sse("tool", start))
                elif event.type in ("tool_call.result", "tool_call.error"):
                    phase = "result" if event.type == "tool_call.result" else "error"
                    result = event.result
                    ended = {"phase": phase, "name": result.name, "output": result.output}
                    await response.write(sse("tool", ended))
                elif event.type == "run.done":
                    await response.write(sse("done", {"rounds": event.result.rounds}))
    except APIError as exc:
        await response.write(sse("apierror", {"message": str(exc)}))


def create_app(client: AsyncClient, model: str) -> web.Application:
    """The relay app; ``client`` is shared by every request and closed by its owner."""
    app = web.Application()
    app[CLIENT] = client
    app[MODEL] = model
    app.router.add_get("/", index)
    app.router.add_get("/extract", extract)
    app.router.add_get("/agent", agent)
    return app


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    async with open_client(args) as client:
        runner = web.AppRunner(create_app(client, args.model))
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.host, args.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            # The first line is the address: scripts and the test read it.
            print(f"serving on http://{host}:{port}/", flush=True)
            await asyncio.Event().wait()  # until Ctrl-C
        finally:
            await runner.cleanup()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how this server stops
        sys.exit(asyncio.run(main()))
