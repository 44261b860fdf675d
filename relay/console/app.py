"""The console's aiohttp application and its own listener (`admin.host`/`admin.port`), so
the public webhook port serves none of it.

The console helps; it is not needed to relay. When its port cannot be had, `relay serve`
says so and goes on relaying without it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from relay.config.model import Admin
from relay.console.api import API, Source
from relay.console.auth import guard
from relay.console.pages import Pages, is_open

log = logging.getLogger("relay.console")

SHUTDOWN_TIMEOUT = 2.0  # a console poll in flight at shutdown: not worth waiting for


def build_console(source: Source, token: str | None) -> web.Application:
    api = API(source)
    app = web.Application(middlewares=[guard(token, is_open), api.bad_requests])
    app.add_routes(api.routes())
    app.add_routes(Pages(token_required=token is not None).routes())
    return app


class ConsoleListener:
    def __init__(self, runner: web.AppRunner) -> None:
        self.runner = runner

    @property
    def port(self) -> int:
        return int(next(iter(self.runner.addresses))[1])

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_console(source: Source, admin: Admin) -> ConsoleListener | None:
    """Serve the console on admin.host:admin.port; None (logged) when the port cannot be had."""
    token = admin.token.get_secret_value() if admin.token is not None else None
    runner = web.AppRunner(
        build_console(source, token),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, admin.host, admin.port, reuse_address=True).start()
    except OSError as error:
        await runner.cleanup()
        log.error(
            "the operator console cannot listen on %s:%d (%s); relaying goes on without it"
            " (change admin.port)",
            admin.host,
            admin.port,
            error.strerror or error,
        )
        return None
    listener = ConsoleListener(runner)
    log.info("operator console on http://%s:%d/", admin.host, listener.port)
    return listener
