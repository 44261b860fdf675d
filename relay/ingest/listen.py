"""Where `relay serve` listens: the socket, aiohttp's runner, and every deadline a client
could otherwise stretch — set here, in one place (README "HTTP endpoints" lists them).

- `idle` is aiohttp's `keepalive_timeout`. Since aiohttp 3.14.4 (pyproject's floor) it is
  armed when a connection opens, not only after a first answer, and it closes a
  connection whose next request head has not fully arrived by then: a client that
  connects and says nothing, or trickles a header line every few seconds, is dropped after
  `idle` seconds. aiohttp's own default is 3630 s.
- the body must then arrive within relay.ingest.server.BODY_TIMEOUT (10 s, answered 408).
- `linger`: after an answer given before the body was read (403, 413, 404), the rest of
  the body is read and dropped for at most this long, then the connection is closed.
- the request line and each header at most 8190 bytes, at most 64 headers (else 400).
  aiohttp logs every request it cannot parse with a traceback, which lets any client
  write a screenful of log per line it sends: such a request is one warning line here.

`host: "::"` listens on IPv6 and IPv4 alike. asyncio sets IPV6_V6ONLY on every IPv6
socket it creates, so that socket is made here (relay/demo.py prints a curl to 127.0.0.1
for such a config, which must then work).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from relay.ingest.fdlimit import FDExhaustionLog
from relay.logs import fields

__all__ = ["HTTPLimits", "Listener", "bind_shared", "listen", "serve_sockets"]

IDLE_TIMEOUT = 15.0  # OneRoute sends its request at once; 15 s still lets it reuse a connection
LINGER = 2.0
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64  # a webhook carries a dozen, a proxy adds a few


@dataclass(frozen=True)
class HTTPLimits:
    """aiohttp's per-connection limits; tests shorten `idle` to keep the suite fast."""

    idle: float = IDLE_TIMEOUT
    linger: float = LINGER
    max_line_size: int = MAX_LINE_SIZE
    max_field_size: int = MAX_FIELD_SIZE
    max_headers: int = MAX_HEADERS

    def __post_init__(self) -> None:
        if self.idle <= 0:
            raise ValueError("idle must be positive: 0 would never close an idle connection")

    def handler_options(self) -> dict[str, Any]:
        """Keyword arguments of aiohttp's RequestHandler (through AppRunner)."""
        return {
            "logger": _RequestErrors(server_logger),
            "keepalive_timeout": self.idle,
            "lingering_time": self.linger,
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
            "max_headers": self.max_headers,
        }


class _RequestErrors(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with a malformed request logged as one line: the client's
    mistake (or probe) is no news of the relay's, and its bytes are not repeated."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            self.logger.warning(
                "refused: malformed HTTP request (%d, %s)",
                error.code,
                type(error).__name__,
                extra=fields(client=str(args[0]) if args else None),
            )
            return
        self.logger.exception(msg, *args, **kwargs)


class Listener:
    """A running site: its runner, the addresses it listens on, and close()."""

    def __init__(self, runner: web.AppRunner, fd_log: FDExhaustionLog) -> None:
        self.runner = runner
        self._fd_log = fd_log

    @property
    def addresses(self) -> list[Any]:
        return list(self.runner.addresses)

    @property
    def port(self) -> int:
        return int(self.addresses[0][1])

    async def close(self) -> None:
        """Stop accepting, answer the requests under way (bounded), then close."""
        try:
            await self.runner.cleanup()
            await self._fd_log.settle()
        finally:
            self._fd_log.uninstall()


async def listen(
    app: web.Application,
    host: str,
    port: int,
    *,
    limits: HTTPLimits | None = None,
    shutdown_timeout: float = 10.0,
) -> Listener:
    """Serve `app` on host:port with `limits`; OSError when the address cannot be used."""

    def site(runner: web.AppRunner) -> web.BaseSite:
        if _is_ipv6_any(host):
            return web.SockSite(runner, _dual_stack_socket(port))
        return web.TCPSite(runner, host, port, reuse_address=True)

    return await _serve(app, [site], limits, shutdown_timeout)


async def serve_sockets(
    app: web.Application,
    sockets: list[socket.socket],
    *,
    limits: HTTPLimits | None = None,
    shutdown_timeout: float = 10.0,
) -> Listener:
    """Serve `app` on sockets already bound (an ingest worker's, see bind_shared)."""
    sites = [functools.partial(web.SockSite, sock=sock) for sock in sockets]
    return await _serve(app, sites, limits, shutdown_timeout)


async def _serve(
    app: web.Application,
    sites: list[Callable[[web.AppRunner], web.BaseSite]],
    limits: HTTPLimits | None,
    shutdown_timeout: float,
) -> Listener:
    limits = limits or HTTPLimits()
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        **limits.handler_options(),
    )
    await runner.setup()
    try:
        for site in sites:
            await site(runner).start()
    except BaseException:
        await runner.cleanup()
        raise
    fd_log = FDExhaustionLog()
    fd_log.install(asyncio.get_running_loop())
    return Listener(runner, fd_log)


async def bind_shared(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """`count` sets of sockets on host:port for the ingest workers, bound but not yet
    listening (each worker listens on its own set). SO_REUSEPORT lets them share the port
    and the kernel spread connections over them evenly; one socket shared by all would go
    to whichever process accepts first, and asyncio accepts up to 100 at a time.

    The port is first bound once without SO_REUSEPORT, so that anything already listening
    there (another relay) is an OSError here, as without workers."""
    loop = asyncio.get_running_loop()
    if _is_ipv6_any(host):
        _dual_stack_socket(port).close()
        return [[_dual_stack_socket(port, reuse_port=True)] for _ in range(count)]
    probe = await loop.create_server(asyncio.Protocol, host, port, reuse_address=True)
    probe.close()
    await probe.wait_closed()
    groups = []
    try:
        for _ in range(count):
            server = await loop.create_server(
                asyncio.Protocol, host, port, reuse_address=True, reuse_port=True,
                start_serving=False,
            )  # fmt: skip
            groups.append([sock.dup() for sock in server.sockets])
            server.close()
    except BaseException:
        for group in groups:
            for sock in group:
                sock.close()
        raise
    return groups


def _is_ipv6_any(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name, or "" (every interface, one socket per family: asyncio's way)
    return address.version == 6 and address.is_unspecified


def _dual_stack_socket(port: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
