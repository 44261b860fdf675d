"""`relay serve`: the store, a lane per destination, and the HTTP server, run together.

Start-up order makes every acknowledged event deliverable: the store opens (and migrates)
first, lanes start and pick up what an earlier run left pending, and only then does the
server accept new events. SIGTERM/SIGINT stop intake, let in-flight sends finish (bounded)
and exit 0, whatever state the lanes are in; SIGHUP (or, with --watch, a change of the
file) reloads the config: everything new is built and checked first (templates included),
and only then are the lanes that changed swapped, so an invalid config never stops one.
A supervisor restarts any lane whose task ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from relay.answers.echo import EchoFilter
from relay.answers.intake import AnswerIntake, answer_lane
from relay.answers.wiring import Answering, answer_couriers, answer_lanes, taking_replies
from relay.config.load import load_config
from relay.config.model import Config
from relay.console.api import Source as ConsoleSource
from relay.console.app import build_console, start_console
from relay.destinations import build_courier
from relay.errors import ConfigError, ConfigIssue, Reason, StoreUnavailable, TemplateError
from relay.ingest.listen import Listener, listen
from relay.ingest.server import Gate, Ingest, build_app
from relay.ingest.workers import IngestWorkers, WorkerOptions
from relay.integrations.base import BuildContext, Courier
from relay.integrations.telegram.config import TelegramDestination
from relay.integrations.telegram.topics import with_topics
from relay.lanes import Lane, LaneSettings
from relay.logs import fields
from relay.metrics import Metrics
from relay.pacing import Pacer
from relay.redact import Redactor
from relay.store import Store, store_for
from relay.watch import watch

log = logging.getLogger("relay.service")

STOP_TIMEOUT = 10.0
PRUNE_EVERY = 600.0
SUPERVISE_EVERY = 1.0
READY_CACHE = 1.0  # /readyz writes to the store at most this often (it is public)


@dataclass(frozen=True)
class Plan:
    """A config and the couriers built from it, checked before anything running changes."""

    config: Config
    couriers: dict[str, Courier[Any]]

    def signature(self, name: str) -> tuple[Any, ...]:
        """What a lane depends on: a change means it is rebuilt on reload."""
        courier = self.couriers[name]
        destination = self.config.destinations.get(name)
        if destination is None:  # an answer lane: its destination and OneRoute's API
            answers = name.partition(":")[2]
            return (self.config.destinations[answers], self.config.oneroute, self.config.delivery)
        return (destination, self.config.delivery, courier.fingerprint)


class Relay:
    """One running relay: config, store, lanes and the HTTP app."""

    def __init__(
        self,
        config: Config,
        config_file: Path,
        store: Store | None = None,
        *,
        redactor: Redactor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.config_file = config_file
        self.redactor = redactor or Redactor()
        self.redactor.register(*config.secrets())
        self.metrics = metrics or Metrics()
        self.store = store or store_for(config.storage, exclusive=True)
        self.owner = uuid.uuid4().hex[:12]
        self.pacer = Pacer()
        self.lanes: dict[str, Lane] = {}
        echo = EchoFilter(self.store, enabled=lambda: bool(taking_replies(self.config)))
        self.ingest = Ingest(Gate.from_config(config), echo, self._wake, metrics=self.metrics)
        self.answering = Answering(AnswerIntake(self.store, self._wake), self.store, self.owner)
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.reloaded: list[Callable[[Config], None]] = []  # told of each config reloaded
        self._reloading = asyncio.Lock()
        self._stopped = False
        self._ready: tuple[float, str | None] = (float("-inf"), None)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start the lanes. Raises StoreUnavailable, or ConfigError when a
        template file cannot be read."""
        plan = self._plan(self.config)
        self.metrics.config_loaded()
        await self.store.open()
        await self._bury_orphans(self.config)
        for name, courier in plan.couriers.items():
            self._start_lane(name, courier, plan)
        await self.answering.start(self.config)
        self._tasks.append(asyncio.create_task(self._prune_forever(), name="relay-prune"))
        self._tasks.append(asyncio.create_task(self._supervise(), name="relay-supervisor"))

    async def stop(self) -> None:
        """Stop intake's helpers and every lane, close the store. Never raises."""
        async with self._reloading:  # a reload under way finishes first; none starts after
            if self._stopped:
                return
            self._stopped = True
            await self.answering.close()  # no more answers taken in; lanes finish sends
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(
                *(lane.stop(STOP_TIMEOUT) for lane in self.lanes.values()), return_exceptions=True
            )
            self.lanes.clear()
            try:
                await self.store.close()
            except Exception:
                log.exception("could not close the store cleanly")

    def app(self) -> web.Application:
        return build_app(
            self.ingest,
            [
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.serve_metrics),
                web.post("/slack/events", self.answering.slack_events),
            ],
        )

    def console_source(self) -> ConsoleSource:
        """What the operator console reads (relay/console/): the config and lanes in force."""
        return ConsoleSource(
            self.store,
            self.redactor,
            config=lambda: self.config,
            lanes=lambda: self.lanes,
            wake=self._wake,
            base=self.config_file.parent,
        )

    def console_app(self) -> web.Application:
        token = self.config.admin.token
        return build_console(self.console_source(), token and token.get_secret_value())

    # --- lanes --------------------------------------------------------------------------------

    @staticmethod
    def _enabled(config: Config) -> list[str]:
        """The lanes a config runs: its enabled destinations, and their answer lanes."""
        return [name for name, d in config.destinations.items() if d.enabled] + answer_lanes(config)

    def _plan(self, config: Config) -> Plan:
        """Build every enabled destination's courier; raises ConfigError naming what failed."""
        context = BuildContext(
            base=self.config_file.parent, timeout=config.delivery.timeout, redactor=self.redactor
        )
        couriers: dict[str, Courier[Any]] = {}
        problems: list[ConfigIssue] = []
        takes_replies = taking_replies(config)
        for name, destination in config.destinations.items():
            if not destination.enabled:
                continue
            try:
                couriers[name] = build_courier(name, destination, context)
            except (OSError, TemplateError) as error:  # the file changed since it was checked
                problems.append(ConfigIssue(("destinations", name), f"template: {error}"))
                continue
            if isinstance(destination, TelegramDestination) and destination.topic_per_conversation:
                couriers[name] = with_topics(couriers[name], self.store, name)
            if name in takes_replies:
                couriers[name].remember = self._remembering(name)
        if problems:
            raise ConfigError(str(self.config_file), tuple(problems))
        couriers.update(answer_couriers(config, self.store, self.metrics, config.delivery.timeout))
        return Plan(config, couriers)

    def _remembering(self, destination: str) -> Callable[[str, str], Awaitable[None]]:
        async def remember(ref: str, conversation: str) -> None:
            await self.store.remember_sent(destination, ref, conversation, time.time())

        return remember

    def _start_lane(self, name: str, courier: Courier[Any], plan: Plan) -> None:
        delivery = plan.config.delivery
        settings = LaneSettings(
            owner=self.owner, give_up_after=delivery.give_up_after, lane_ttl=delivery.lane_lease
        )
        lane = Lane(
            name,
            courier,
            self.store,
            self.pacer,
            settings,
            metrics=self.metrics,
            redactor=self.redactor,
        )
        lane.start()
        self.lanes[name] = lane
        self._signatures[name] = plan.signature(name)

    def _wake(self, destinations: Sequence[str]) -> None:
        for name in destinations:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.wake()

    async def _supervise(self) -> None:
        """Restart any lane whose task ended while it was meant to run."""
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            for name, lane in list(self.lanes.items()):
                if lane.running or lane.stopping:
                    continue
                problem = _task_problem(lane.task)
                log.error(
                    "the lane's task ended (%s); restarting it",
                    problem,
                    extra=fields(destination=name),
                )
                self.metrics.lane_restarts.labels(name).inc()
                lane.start()

    async def _bury_orphans(self, config: Config) -> None:
        """Rows for a destination that is gone (or off) would wait forever: dead-letter them."""
        enabled = set(self._enabled(config))
        for backlog in await self.store.backlog():
            if backlog.destination in enabled:
                continue
            reason = (
                Reason.DESTINATION_DISABLED
                if backlog.destination.removeprefix(answer_lane("")) in config.destinations
                else Reason.DESTINATION_REMOVED
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
            self.redactor.register(*config.secrets())
            plan = self._plan(config)
        except ConfigError as error:
            self.metrics.reload_failed()
            log.error("reload failed; still running the previous config:\n%s", error)
            return False
        old = self.config
        changed = [
            name
            for name in self.lanes
            if name not in plan.couriers or plan.signature(name) != self._signatures.get(name)
        ]
        await asyncio.gather(*(self.lanes.pop(name).stop(STOP_TIMEOUT) for name in changed))
        self.config = config
        self.ingest.gate = Gate.from_config(config)
        for listener in self.reloaded:
            listener(config)
        await self.answering.reload(config)
        await self._bury_orphans(config)
        for name, courier in plan.couriers.items():
            if name in self.lanes:
                await courier.close()  # unchanged: the running lane keeps its own
            else:
                self._start_lane(name, courier, plan)
        if config.server != old.server or config.storage != old.storage:
            log.warning("server and storage settings changed: they take effect on restart")
        if config.admin != old.admin:
            log.warning("admin settings changed: the console's listener takes them on restart")
        self.metrics.config_reloads.labels("success").inc()
        self.metrics.config_loaded()
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
            except Exception:  # a bug must not end upkeep for the life of the process
                log.exception("prune failed")
            await asyncio.sleep(PRUNE_EVERY)

    async def _writable(self) -> str | None:
        """Why the store cannot take an event now (None: it can); probed at most once per
        READY_CACHE, as /readyz is public and each probe is a write."""
        checked_at, problem = self._ready
        now = time.monotonic()
        if now - checked_at < READY_CACHE:
            return problem
        try:
            await self.store.check_writable()
            problem = None
        except StoreUnavailable as error:
            problem = str(error)
        self._ready = (time.monotonic(), problem)
        return problem

    async def readyz(self, request: web.Request) -> web.Response:
        problem = await self._writable()
        if problem is not None:
            return web.json_response({"status": "unavailable", "reason": problem}, status=503)
        stopped = [name for name, lane in self.lanes.items() if not lane.running]
        if stopped:
            return web.json_response(
                {"status": "unavailable", "reason": f"lanes not running: {', '.join(stopped)}"},
                status=503,
            )
        body: dict[str, Any] = {"status": "ready"}
        paused = self._paused()
        if paused:
            body["paused"] = paused
        return web.json_response(body)

    def _paused(self) -> dict[str, dict[str, Any]]:
        """Lanes waiting because the platform said so (they still accept events)."""
        now = time.time()
        paused = {}
        for name, lane in self.lanes.items():
            pause = lane.paused()
            if pause is not None:
                paused[name] = {"seconds": round(pause.until - now, 1), "reason": pause.detail}
        return paused

    async def serve_metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        with contextlib.suppress(StoreUnavailable):
            await self._refresh_backlog()
        paused = self._paused()
        for name in self.config.destinations:
            self.metrics.lane_paused.labels(name).set(paused.get(name, {}).get("seconds", 0.0))
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def _refresh_backlog(self) -> None:
        now = time.time()
        seen = set()
        for backlog in await self.store.backlog():
            seen.add(backlog.destination)
            self.metrics.pending.labels(backlog.destination).set(backlog.pending)
            age = now - backlog.oldest_created_at if backlog.oldest_created_at else 0.0
            self.metrics.oldest_pending.labels(backlog.destination).set(max(0.0, age))
        for name in self.config.destinations:
            if name not in seen:
                self.metrics.pending.labels(name).set(0)
                self.metrics.oldest_pending.labels(name).set(0)
        self.metrics.dead_letters.set(await self.store.dead_count())


async def _start_workers(relay: Relay, options: WorkerOptions) -> IngestWorkers:
    """Start `server.workers` ingest worker processes on the relay's port (OSError when it
    is taken, RuntimeError when a worker does not start)."""
    workers = IngestWorkers(relay.ingest.store, relay._wake, relay.metrics, options)
    relay.reloaded.append(workers.configure)  # first: a reload while they start reaches them
    await workers.start(relay.config, relay.config.server.workers, relay.app())
    log.info(
        "%d ingest workers answer webhooks", relay.config.server.workers,
        extra=fields(pids=",".join(map(str, workers.pids))),
    )  # fmt: skip
    return workers


def _task_problem(task: asyncio.Task[None] | None) -> str:
    if task is None:
        return "never started"
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return f"{type(error).__name__}: {error}" if error else "returned"


async def serve(
    config: Config,
    config_file: Path,
    banner: str | None = None,
    watch_file: bool = False,
    redactor: Redactor | None = None,
    worker_options: WorkerOptions | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; reload on SIGHUP (and when the file changes, with
    `watch_file`). The exit code."""
    relay = Relay(config, config_file, redactor=redactor)
    try:
        await relay.start()
    except StoreUnavailable as error:
        log.error("cannot open the store: %s", error)
        return 1
    except ConfigError as error:
        log.error("cannot start:\n%s", error)
        return 1
    # From here a signal stops or reloads the relay (workers may answer before all are up).
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
    listener: Listener | IngestWorkers
    try:
        if config.server.workers:
            listener = await _start_workers(relay, worker_options or WorkerOptions())
        else:
            listener = await listen(
                relay.app(), config.server.host, config.server.port, shutdown_timeout=STOP_TIMEOUT
            )
    except RuntimeError as error:
        log.error("cannot start: %s", error)
        await relay.stop()
        return 1
    except OSError as error:
        log.error(
            "cannot listen on %s:%d: %s (is another relay running? change server.port)",
            config.server.host,
            config.server.port,
            error.strerror or error,
        )
        await relay.stop()
        return 1
    console = await start_console(relay.console_source(), config.admin)
    if banner:
        print(banner, flush=True)
    watcher = asyncio.create_task(watch(config_file, relay.reload)) if watch_file else None
    await stop.wait()
    log.info("stopping: no new events; finishing sends in flight")
    try:
        await listener.close()  # intake stops first; requests mid-write are answered
    except Exception:
        log.exception("could not stop the HTTP server cleanly")
    if console is not None:
        try:
            await console.close()
        except Exception:
            log.exception("could not stop the operator console cleanly")
    await relay.stop()
    if watcher is not None:  # after stop(): a reload it started has finished
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    log.info("stopped")
    return 0
