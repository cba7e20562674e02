"""Relay a model's token stream to a browser with Server-Sent Events (aiohttp.web).

    python examples/web_relay.py --local          # then open http://127.0.0.1:8080
    ANYAPI_API_KEY=sk-... python examples/web_relay.py --port 8000

``GET /`` serves a page whose JavaScript opens an ``EventSource`` on
``/chat?prompt=...``; that handler streams the completion and writes each text piece as
an SSE ``message`` event the moment it arrives, then a ``done`` event with the usage (or an
``apierror`` event). One `AsyncClient` serves every browser. When a browser goes away,
leaving ``async with`` closes the upstream stream, so no tokens are paid for in vain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from _common import add_target_arguments, open_client
from aiohttp import web

from anyapi_async import APIError, AsyncClient

CLIENT = web.AppKey("client", AsyncClient)
MODEL = web.AppKey("model", str)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>anyapi-async · SSE relay</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; }
  input { width: 75%; font: inherit; }
  #reply { white-space: pre-wrap; border: 1px solid #ccc; padding: 1rem; min-height: 6rem; }
  #status { color: #666; }
</style>
</head>
<body>
<h1>Token stream relay</h1>
<form id="ask">
  <input id="prompt" name="prompt" value="Tell me about rivers" autocomplete="off">
  <button id="send">Ask</button>
</form>
<p id="reply"></p>
<p id="status">idle</p>
<script>
const form = document.getElementById("ask");
const reply = document.getElementById("reply");
const status = document.getElementById("status");
window.received = [];          // [milliseconds, text] per event: the end-to-end test reads it
let source = null;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (source) source.close();
  reply.textContent = "";
  window.received = [];
  status.textContent = "streaming";
  const prompt = document.getElementById("prompt").value;
  source = new EventSource("/chat?prompt=" + encodeURIComponent(prompt));
  source.onmessage = (e) => {
    const text = JSON.parse(e.data);
    window.received.push([performance.now(), text]);
    reply.textContent += text;   // textContent: model output is never parsed as HTML
  };
  source.addEventListener("done", (e) => {
    const done = JSON.parse(e.data);
    source.close();            // or EventSource would reconnect and ask again
    status.textContent = `done: ${done.completion_tokens} tokens, ${done.finish_reason}`;
  });
  source.addEventListener("apierror", (e) => {
    source.close();
    status.textContent = "error: " + JSON.parse(e.data).message;
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      source.close();
      status.textContent = "error: connection lost";
    }
  };
});
</script>
</body>
</html>
"""


def sse(data: object, event: str | None = None) -> bytes:
    """One SSE event; JSON keeps newlines inside the text from ending the ``data:`` line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def index(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def chat(request: web.Request) -> web.StreamResponse:
    prompt = request.query.get("prompt", "").strip()
    if not prompt:
        raise web.HTTPBadRequest(text="the prompt query parameter is required")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
        }
    )
    await response.prepare(request)
    # The browser going away raises ConnectionResetError (aiohttp's ClientConnectionResetError)
    # at a write: leaving `async with` in relay() closed the upstream stream, and there is no
    # one left to tell, so it is no error to log.
    with contextlib.suppress(ConnectionResetError):
        await relay(request.app[CLIENT], request.app[MODEL], prompt, response)
    return response


async def relay(
    client: AsyncClient, model: str, prompt: str, response: web.StreamResponse
) -> None:
    """Stream the completion of ``prompt`` into ``response`` as SSE events."""
    try:
        async with client.chat.completions.stream(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=300,
            stream_options={"include_usage": True},
        ) as stream:
            async for text in stream.text_deltas():
                await response.write(sse(text))
            final = await stream.get_final_completion()
    except APIError as exc:
        await response.write(sse({"message": str(exc)}, event="apierror"))
        return
    usage = final.usage
    await response.write(
        sse(
            {
                "finish_reason": final.choices[0].finish_reason if final.choices else None,
                "completion_tokens": usage.completion_tokens if usage else None,
            },
            event="done",
        )
    )


def create_app(client: AsyncClient, model: str) -> web.Application:
    """The relay app; ``client`` is shared by every request and closed by its owner."""
    app = web.Application()
    app[CLIENT] = client
    app[MODEL] = model
    app.router.add_get("/", index)
    app.router.add_get("/chat", chat)
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
