"""`server.workers: N`: N ingest worker processes answer webhooks; this process stores.

One relay process answers a few thousand webhooks a second: HTTP, the signature, the JSON
and the log line of every request share one core (one GIL) with the store's writes and the
lanes. With workers, those per-request parts run in N processes (relay/ingest/worker.py)
that share the webhook port (SO_REUSEPORT, bound here), and this process keeps what must
be one: the store's single writer (group commit, duplicate check), the lanes, answers,
the console. A worker hands each event over a socketpair; it is answered 200 only once this
process has stored it. Requests other than the webhook's reach this process's own app over
a Unix socket in a private directory.

Workers that exit are started again (their socket stays open here, so connections wait
in its queue meanwhile); a reload sends them the new config; stopping tells them to finish
the requests under way before the store closes. BENCHMARKS.md "Ingest workers" has the
figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from relay.config.model import Config
from relay.errors import StoreUnavailable
from relay.ingest.ipc import Channel, Message
from relay.ingest.listen import bind_shared
from relay.metrics import Metrics
from relay.store.base import Incoming, IngestStore

log = logging.getLogger("relay.ingest")

START_TIMEOUT = 30.0
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after exits in quick succession
STEADY = 60.0  # a worker that ran this long starts the delays over
PING_EVERY = 2.0
SILENT_FOR = 10.0  # a worker that answers nothing this long (stopped, hung) is killed
KILL_WAIT = 5.0


@dataclass(frozen=True)
class WorkerOptions:
    """How workers log and run: the same as this process."""

    log_level: str = "INFO"
    log_format: str = "text"
    uvloop: bool = False
    stop_timeout: float = 10.0


class _Worker:
    """One worker process and its channel, as seen from here."""

    def __init__(self, number: int, sockets: list[socket.socket]) -> None:
        self.number = number
        self.sockets = sockets
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.ready: asyncio.Future[int] | None = None
        self.heard_at = 0.0  # monotonic time of its last message


class IngestWorkers:
    def __init__(
        self,
        store: IngestStore,
        wake: Callable[[Sequence[str]], None],
        metrics: Metrics,
        options: WorkerOptions,
    ) -> None:
        self.store = store
        self.wake = wake
        self.metrics = metrics
        self.options = options
        self._config: Config | None = None
        self._workers: list[_Worker] = []
        self._keepers: list[asyncio.Task[None]] = []
        self._accepting: set[asyncio.Task[None]] = set()
        self._directory: str | None = None
        self._site_runner: web.AppRunner | None = None
        self._closing = False

    @property
    def pids(self) -> list[int]:
        """The running workers' process ids."""
        return [
            w.process.pid for w in self._workers if w.process and w.process.returncode is None
        ]

    async def start(self, config: Config, count: int, app: web.Application) -> None:
        """Bind the port (OSError if taken), serve `app` (the relay's own) on the private
        Unix socket, start `count` workers and wait until each is listening.
        Raises RuntimeError when a worker does not start."""
        self._config = config
        groups = await bind_shared(config.server.host, config.server.port, count)
        self._workers = [_Worker(n + 1, group) for n, group in enumerate(groups)]
        try:
            self._directory = tempfile.mkdtemp(prefix="relay-")  # 0700: only this user
            self._site_runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._site_runner.setup()
            await web.UnixSite(self._site_runner, self._socket_path).start()
            for worker in self._workers:
                await self._spawn(worker)
            for worker in self._workers:
                assert worker.ready is not None
                await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
        except (TimeoutError, ConnectionError, OSError) as error:
            await self.close()
            raise RuntimeError(f"an ingest worker did not start ({error or 'timeout'})") from None
        self._keepers = [
            asyncio.create_task(self._keep(worker), name=f"relay-ingest-worker-{worker.number}")
            for worker in self._workers
        ]

    @property
    def _socket_path(self) -> str:
        assert self._directory is not None
        return str(Path(self._directory) / "relay.sock")

    def configure(self, config: Config) -> None:
        """Send a reloaded config to every worker (its gate: secrets, addresses, routes)."""
        self._config = config
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.send(("config", pickle.dumps(config)))

    async def close(self) -> None:
        """Tell every worker to stop (each answers its requests under way, which this
        process still stores), wait for them, then close the sockets. Never raises."""
        self._closing = True
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        await asyncio.gather(*(self._stop(w) for w in self._workers), return_exceptions=True)
        if self._accepting:
            await asyncio.gather(*self._accepting, return_exceptions=True)
        for worker in self._workers:
            for sock in worker.sockets:
                sock.close()
        if self._site_runner is not None:
            await self._site_runner.cleanup()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    # --- one worker ---------------------------------------------------------------------------

    async def _spawn(self, worker: _Worker) -> None:
        assert self._config is not None
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        ready = worker.ready = loop.create_future()
        ready.add_done_callback(_retrieved)  # only start() awaits it; a restart's may fail
        channel = Channel(
            lambda message: self._on_message(worker, channel, message),
            lambda: self._on_closed(worker, ready),
        )
        worker.heard_at = time.monotonic()
        listening = [sock.fileno() for sock in worker.sockets]
        arguments = [
            "--number", str(worker.number),
            "--channel", str(theirs.fileno()),
            "--listen", ",".join(map(str, listening)),
            "--relay-socket", self._socket_path,
            "--stop-timeout", str(self.options.stop_timeout),
            "--log-level", self.options.log_level,
            "--log-format", self.options.log_format,
        ]  # fmt: skip
        if self.options.uvloop:
            arguments.append("--uvloop")
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "relay.ingest.worker",
                *arguments,
                pass_fds=[theirs.fileno(), *listening],
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        await loop.connect_accepted_socket(lambda: channel, ours)
        worker.channel = channel
        channel.send(("config", pickle.dumps(self._config)))

    async def _keep(self, worker: _Worker) -> None:
        """Start the worker again whenever it exits, with growing delays if it keeps doing so."""
        failures = 0
        started = time.monotonic()
        while True:
            assert worker.process is not None
            watching = asyncio.create_task(self._watch(worker, worker.process))
            try:
                code = await worker.process.wait()
            finally:
                watching.cancel()
            if self._closing:
                return
            failures = 0 if time.monotonic() - started > STEADY else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            log.error(
                "ingest worker %d exited (%s); starting it again in %g s",
                worker.number,
                _exit_reason(code),
                delay,
            )
            if worker.channel is not None:
                worker.channel.close()
            await asyncio.sleep(delay)
            if self._closing:  # e.g. a SIGTERM to every process reached the worker first
                return
            self.metrics.ingest_worker_restarts.inc()
            started = time.monotonic()
            try:
                await self._spawn(worker)
            except OSError as error:
                log.error("cannot start ingest worker %d: %s", worker.number, error)
                failures += 1

    async def _watch(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        """Ping the worker; kill it when it has said nothing for SILENT_FOR (stopped or
        hung: the kernel keeps giving it connections). _keep then starts it again."""
        assert worker.ready is not None
        try:  # a worker that is still starting says nothing yet
            await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT)
        except ConnectionError:  # its channel closed: it is exiting
            return
        except TimeoutError:
            log.error("ingest worker %d did not start in time; killing it", worker.number)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return
        worker.heard_at = time.monotonic()
        number = 0
        while process.returncode is None:
            await asyncio.sleep(PING_EVERY)
            if time.monotonic() - worker.heard_at > SILENT_FOR and process.returncode is None:
                log.error(
                    "ingest worker %d has not answered for %g s; killing it",
                    worker.number,
                    SILENT_FOR,
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                return
            if worker.channel is not None:
                number += 1
                worker.channel.send(("ping", number))

    async def _stop(self, worker: _Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        if worker.channel is not None:
            worker.channel.send(("stop",))
        try:
            await asyncio.wait_for(process.wait(), self.options.stop_timeout + 5.0)
        except TimeoutError:
            log.error("ingest worker %d did not stop in time; killing it", worker.number)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            try:  # bounded: stopping the relay must not hang on one child's exit status
                await asyncio.wait_for(process.wait(), KILL_WAIT)
            except TimeoutError:
                log.error("ingest worker %d: no exit status after SIGKILL", worker.number)

    # --- messages -----------------------------------------------------------------------------

    def _on_message(self, worker: _Worker, channel: Channel, message: Message) -> None:
        try:
            self._handle(worker, channel, message)
        except Exception:  # one odd message must not end the channel (or this process)
            log.exception("ingest worker %d sent a message that could not be read", worker.number)

    def _handle(self, worker: _Worker, channel: Channel, message: Message) -> None:
        worker.heard_at = time.monotonic()
        kind = message[0]
        if kind == "accept":
            task = asyncio.create_task(self._accept(channel, message))
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)
        elif kind == "counts":
            for (event, result), count in message[1].items():
                self.metrics.add_received(event, result, count)
        elif kind == "pong":
            pass  # heard: that is all
        elif kind == "ready":
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(message[1])
        else:
            log.error("ingest worker %d sent an unknown message %r", worker.number, kind)

    async def _accept(self, channel: Channel, message: Message) -> None:
        _, number, body, name, conversation, destinations, received_at = message
        incoming = Incoming(body, name, conversation, tuple(destinations), received_at)
        try:
            accepted = await self.store.accept(incoming)
        except StoreUnavailable as error:
            channel.send(("refused", number, str(error)))
            return
        except Exception as error:  # a bug: the worker answers 503, the log says what
            log.exception("storing an event from an ingest worker failed")
            channel.send(("refused", number, f"storing the event failed ({type(error).__name__})"))
            return
        channel.send(("accepted", number, accepted.event_id, accepted.duplicate))
        if not accepted.duplicate and incoming.destinations:
            self.wake(incoming.destinations)

    def _on_closed(self, worker: _Worker, ready: asyncio.Future[int]) -> None:
        if not ready.done():  # this channel's worker, not one started since
            ready.set_exception(ConnectionError(f"ingest worker {worker.number} exited"))
        if not self._closing:
            log.warning("lost the channel to ingest worker %d", worker.number)


def _retrieved(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"

