"""`relay serve`: the store, a lane per destination, and the HTTP server, run together.

Start-up order makes every acknowledged event deliverable: the store opens (and migrates)
first, lanes start and pick up what an earlier run left pending, and only then does the
server accept new events. SIGTERM/SIGINT stop intake, let in-flight sends finish (bounded)
and exit 0; SIGHUP (or, with --watch, a change of the file) reloads the config, keeping
the old one if the new one is invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from relay import metrics, redact
from relay.config.load import load_config
from relay.config.model import Config
from relay.destinations import build_courier
from relay.errors import ConfigError, StoreUnavailable
from relay.ingest.server import Gate, Ingest, build_app
from relay.lanes import Lane, LaneSettings
from relay.logs import fields
from relay.pacing import Pacer
from relay.store import Store, store_for
from relay.watch import watch

log = logging.getLogger("relay.service")

STOP_TIMEOUT = 10.0
PRUNE_EVERY = 600.0


class Relay:
    """One running relay: config, store, lanes and the HTTP app."""

    def __init__(self, config: Config, config_file: Path, store: Store | None = None) -> None:
        self.config = config
        self.config_file = config_file
        self.store = store or store_for(config.storage)
        self.owner = uuid.uuid4().hex[:12]
        self.pacer = Pacer()
        self.lanes: dict[str, Lane] = {}
        self.ingest = Ingest(Gate.from_config(config), self.store, self._wake)
        self._tasks: list[asyncio.Task[None]] = []
        self._reloading = asyncio.Lock()
        self._stopped = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        redact.register(*self.config.secrets())
        metrics.config_loaded()
        await self.store.open()
        await self._bury_orphans(self.config)
        for name in self._enabled(self.config):
            self._start_lane(name, self.config)
        self._tasks.append(asyncio.create_task(self._prune_forever(), name="relay-prune"))

    async def stop(self) -> None:
        async with self._reloading:  # a reload under way finishes first; none starts after
            if self._stopped:
                return
            self._stopped = True
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*(lane.stop(STOP_TIMEOUT) for lane in self.lanes.values()))
            self.lanes.clear()
            await self.store.close()

    def app(self) -> web.Application:
        return build_app(
            self.ingest,
            [
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics),
            ],
        )

    # --- lanes --------------------------------------------------------------------------------

    @staticmethod
    def _enabled(config: Config) -> list[str]:
        return [name for name, d in config.destinations.items() if d.enabled]

    def _start_lane(self, name: str, config: Config) -> None:
        courier = build_courier(
            name, config.destinations[name], self.config_file.parent, config.delivery.timeout
        )
        settings = LaneSettings(owner=self.owner, give_up_after=config.delivery.give_up_after)
        lane = Lane(name, courier, self.store, self.pacer, settings)
        lane.start()
        self.lanes[name] = lane

    def _wake(self, destinations: Sequence[str]) -> None:
        for name in destinations:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.wake()

    async def _bury_orphans(self, config: Config) -> None:
        """Rows for a destination that is gone (or off) would wait forever: dead-letter them."""
        enabled = set(self._enabled(config))
        for backlog in await self.store.backlog():
            if backlog.destination in enabled:
                continue
            reason = (
                "destination_disabled"
                if backlog.destination in config.destinations
                else "destination_removed"
            )
            count = await self.store.bury_destination(backlog.destination, time.time(), reason)
            log.warning(
                "dead-lettered %d pending deliveries: %s",
                count,
                reason,
                extra=fields(destination=backlog.destination),
            )

    # --- reload -------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the config file again; on any error keep running the last good config.

        One reload at a time: SIGHUP and the file watcher may ask at once."""
        async with self._reloading:
            return not self._stopped and await self._reload()

    async def _reload(self) -> bool:
        try:
            config = load_config(self.config_file)
        except ConfigError as error:
            metrics.config_reloads.labels("failure").inc()
            metrics.config_last_reload_successful.set(0)
            log.error("reload failed; still running the previous config:\n%s", error)
            return False
        redact.register(*config.secrets())
        old = self.config
        changed = [
            name
            for name in self.lanes
            if config.destinations.get(name) != old.destinations.get(name)
            or config.delivery != old.delivery
            or name not in self._enabled(config)
        ]
        await asyncio.gather(*(self.lanes.pop(name).stop(STOP_TIMEOUT) for name in changed))
        self.config = config
        self.ingest.gate = Gate.from_config(config)
        await self._bury_orphans(config)
        for name in self._enabled(config):
            if name not in self.lanes:
                self._start_lane(name, config)
        if config.server != old.server:
            log.warning("server settings changed: they take effect on restart")
        metrics.config_reloads.labels("success").inc()
        metrics.config_loaded()
        log.info("config reloaded", extra=fields(restarted=",".join(changed) or "-"))
        return True

    # --- upkeep and probes --------------------------------------------------------------------

    async def _prune_forever(self) -> None:
        while True:
            try:
                deleted = await self.store.prune(time.time(), self.config.retention)
                if deleted:
                    log.info("pruned %d delivered events", deleted)
            except StoreUnavailable as error:
                log.error("prune failed: %s", error)
            await asyncio.sleep(PRUNE_EVERY)

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await self.store.ping()
        except StoreUnavailable as error:
            return web.json_response({"status": "unavailable", "reason": str(error)}, status=503)
        stopped = [name for name, lane in self.lanes.items() if not lane.running]
        if stopped:
            return web.json_response(
                {"status": "unavailable", "reason": f"lanes not running: {', '.join(stopped)}"},
                status=503,
            )
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        with contextlib.suppress(StoreUnavailable):
            await self._refresh_backlog()
        return web.Response(
            body=generate_latest(metrics.REGISTRY),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _refresh_backlog(self) -> None:
        now = time.time()
        seen = set()
        for backlog in await self.store.backlog():
            seen.add(backlog.destination)
            metrics.pending.labels(backlog.destination).set(backlog.pending)
            age = now - backlog.oldest_created_at if backlog.oldest_created_at else 0.0
            metrics.oldest_pending.labels(backlog.destination).set(max(0.0, age))
        for name in self.config.destinations:
            if name not in seen:
                metrics.pending.labels(name).set(0)
                metrics.oldest_pending.labels(name).set(0)
        metrics.dead_letters.set(await self.store.dead_count())


async def serve(
    config: Config, config_file: Path, banner: str | None = None, watch_file: bool = False
) -> int:
    """Run until SIGTERM/SIGINT; reload on SIGHUP (and when the file changes, with
    `watch_file`). The exit code."""
    relay = Relay(config, config_file)
    try:
        await relay.start()
    except StoreUnavailable as error:
        log.error("cannot open the store: %s", error)
        return 1
    from relay.ingest.listen import listen  # the socket and every client deadline

    try:
        listener = await listen(
            relay.app(), config.server.host, config.server.port, shutdown_timeout=STOP_TIMEOUT
        )
    except OSError as error:
        log.error(
            "cannot listen on %s:%d: %s (is another relay running? change server.port)",
            config.server.host,
            config.server.port,
            error.strerror or error,
        )
        await relay.stop()
        return 1
    if banner:
        print(banner, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        task = asyncio.create_task(relay.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    watcher = asyncio.create_task(watch(config_file, relay.reload)) if watch_file else None
    await stop.wait()
    log.info("stopping: no new events; finishing sends in flight")
    await listener.close()  # intake stops first; requests mid-write are answered
    await relay.stop()
    if watcher is not None:  # after stop(): a reload it started has finished
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    log.info("stopped")
    return 0
