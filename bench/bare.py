"""The baseline: a bare aiohttp handler that reads the body and answers 200.

The ceiling for this stack (aiohttp on one event loop, no signature, no parsing, no store),
served like the relay (AppRunner, no access log, 1 MiB limit). Run as its own process:

    python -m bench.bare --port 8081 [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from bench.common import PATH

ANSWER = b'{"status":"accepted"}'


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(port: int) -> None:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(PATH, handle)
    app.router.add_get("/healthz", healthz)
    await serve_app(app, port)


async def serve_app(app: web.Application, port: int, reuse_port: bool = False) -> None:
    """Serve `app` on 127.0.0.1:port as the relay is served (AppRunner, no access log)
    until SIGTERM or SIGINT."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True, reuse_port=reuse_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
