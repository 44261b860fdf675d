"""`server.workers`: ingest worker processes answer webhooks, the relay's process stores them
(relay/ingest/workers.py, relay/ingest/worker.py, relay/ingest/ipc.py).

Most tests run `relay serve` as a real process with real worker processes, the fake Slack
and a real store (both engines where the store matters); the last ones drive IngestWorkers
in this process with a stand-in store, to make the store fail on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import marshal
import os
import re
import signal
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.config.load import load_config
from relay.errors import ConfigError, StoreUnavailable
from relay.ingest import worker as worker_module
from relay.ingest import workers as workers_module
from relay.ingest.ipc import MAX_MESSAGE, Channel, Message
from relay.ingest.signature import sign
from relay.ingest.workers import IngestWorkers, WorkerOptions
from relay.metrics import Metrics
from relay.store.base import Accepted, Incoming
from tests.fakes import slack as fake_slack_module
from tests.fakes.slack import FakeSlack
from tests.process import (
    RelayProcess,
    alive,
    assert_in_order,
    free_port,
    numbered_event,
    numbered_texts,
)
from tests.waiting import until, until_async

SECRET = "workers-test-secret"
NEW_SECRET = "workers-test-secret-2"


def write_config(
    tmp_path: Path,
    slack: FakeSlack,
    port: int,
    storage: str,
    *,
    workers: int = 2,
    secret: str = SECRET,
) -> Path:
    config = tmp_path / "relay.yaml"
    config.write_text(
        f"""
server: {{host: 127.0.0.1, port: {port}, workers: {workers}}}
admin: {{port: {free_port()}}}
oneroute: {{secrets: ["{secret}"]}}
storage: {storage}
destinations:
  dest:
    type: slack
    token: {fake_slack_module.BOT_TOKEN}
    channel: {fake_slack_module.CHANNEL}
    api_url: {slack.api_url}
    max_per_second: 100
    coalesce: false
    thread_by_conversation: true
    replies:
      signing_secret: {fake_slack_module.SIGNING_SECRET}
routes:
  - to: [dest]
"""
    )
    return config


async def start_relay(
    tmp_path: Path, slack: FakeSlack, processes: list[RelayProcess], storage: str, **kw: Any
) -> RelayProcess:
    port = free_port()
    relay = RelayProcess(write_config(tmp_path, slack, port, storage, **kw), port, SECRET)
    processes.append(relay)
    await relay.start()
    workers = kw.get("workers", 2)
    if workers:  # every worker started and heard from (a slow one may still be importing)
        started = f"{workers} ingest workers answer webhooks"
        await until(lambda: started in relay.output(), within=30)
    await until(lambda: len(worker_pids(relay)) == workers)
    return relay


def socket_directory(worker: int) -> Path:
    """The relay's private directory of its own app's socket, as a worker was told it."""
    arguments = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    return Path(os.fsdecode(arguments[arguments.index(b"--relay-socket") + 1])).parent


def worker_pids(relay: RelayProcess) -> list[int]:
    """The relay's live ingest worker processes (its children running relay.ingest.worker)."""
    assert relay.process is not None
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
            if parent == relay.process.pid and b"relay.ingest.worker" in command:
                found.append(int(stat.parent.name))
    return sorted(found)


async def post(relay: RelayProcess, body: bytes, secret: str = SECRET) -> tuple[int, Any]:
    """Post on a new connection each time (the kernel spreads them over the workers)."""
    async with aiohttp.ClientSession() as session, session.post(
        f"{relay.url}/webhooks/oneroute", data=body,
        headers={"x-oneroute-signature": sign(secret, body)},
    ) as response:  # fmt: skip
        return response.status, await response.json()


async def received(relay: RelayProcess, result: str) -> float:
    _, text = await relay.get("/metrics")
    match = re.search(
        rf'relay_events_received_total{{event="newMessage",result="{result}"}} (\S+)', text
    )
    return float(match.group(1)) if match else 0.0


async def test_workers_accept_store_once_and_deliver_in_order(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess], storage: str
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, storage)
    sent = [numbered_event(c, n) for n in range(10) for c in "abc"]

    async def conversation(name: str) -> list[tuple[int, Any]]:  # in order, each its own
        return [await post(relay, numbered_event(name, n)) for n in range(10)]

    answers = [a for answers in await asyncio.gather(*map(conversation, "abc")) for a in answers]
    assert {status for status, _ in answers} == {200}
    assert {answer["status"] for _, answer in answers} == {"accepted"}
    assert len({answer["event_id"] for _, answer in answers}) == 30
    # The same body again, on other connections: the one writer sees it is a duplicate.
    again = await asyncio.gather(*(post(relay, sent[0]) for _ in range(4)))
    assert {(status, answer["status"]) for status, answer in again} == {(200, "duplicate")}
    assert {answer["event_id"] for _, answer in again} == {answers[0][1]["event_id"]}  # a-msg-0

    await until(lambda: len(fake_slack.messages) == 30)
    assert_in_order(numbered_texts([m.text for m in fake_slack.messages]), "abc", 10)
    # The workers' counts reach the relay's /metrics (sent once a second).
    async def counted() -> bool:
        return (await received(relay, "accepted"), await received(relay, "duplicate")) == (30, 4)

    await until_async(counted, within=15)
    # Everything else reaches the relay's own app through a worker, unchanged.
    assert (await relay.get("/readyz"))[0] == 200
    assert (await relay.get("/healthz"))[0] == 200
    status, _ = await relay.get("/webhooks/oneroute")
    assert status == 405
    challenge = {"type": "url_verification", "token": "x", "challenge": "c-123"}
    headers, body = fake_slack.events_request(fake_slack_module.SIGNING_SECRET, challenge)
    async with aiohttp.ClientSession() as session, session.post(
        f"{relay.url}/slack/events", data=body, headers=headers
    ) as response:
        assert (response.status, await response.json()) == (200, {"challenge": "c-123"})
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    async with aiohttp.ClientSession() as session, session.post(
        f"{relay.url}/slack/events", data=body, headers=headers
    ) as response:
        assert response.status == 401

    relay.signal(signal.SIGTERM)
    assert await relay.wait() == 0
    output = relay.output()
    assert f"(config {relay.config}, storage {storage}, 2 ingest workers)" in output
    assert "ingest worker 1 started" in output and "ingest worker 2 started" in output
    assert "stopped" in output and "Traceback" not in output


async def test_a_killed_worker_is_started_again_and_nothing_answered_200_is_lost(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, f"sqlite:///{tmp_path}/relay.db")
    first, second = worker_pids(relay)
    accepted: list[bytes] = []

    async def keep_posting() -> None:
        loop = asyncio.get_running_loop()
        for n in range(60):
            body = numbered_event("k", n)
            give_up = loop.time() + 60  # a relay that is gone fails the test, not hangs it
            while True:  # as OneRoute does: a request that got no answer is sent again
                with contextlib.suppress(aiohttp.ClientError):
                    status, _ = await post(relay, body)
                    if status == 200:
                        accepted.append(body)
                        break
                assert loop.time() < give_up, f"event {n} was never accepted:\n{relay.output()}"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)

    posting = asyncio.create_task(keep_posting())
    await until(lambda: len(accepted) >= 10)
    os.kill(first, signal.SIGKILL)
    await posting
    await until(lambda: len(worker_pids(relay)) == 2 and first not in worker_pids(relay))
    assert second in worker_pids(relay)
    await until(lambda: len(fake_slack.messages) >= 60)
    assert_in_order(numbered_texts([m.text for m in fake_slack.messages]), "k", 60)
    assert "ingest worker 1 exited (killed by SIGKILL); starting it again" in relay.output()
    _, metrics = await relay.get("/metrics")
    assert "relay_ingest_worker_restarts_total 1.0" in metrics
    assert (await post(relay, numbered_event("k", 60)))[0] == 200


async def test_a_reload_reaches_the_workers(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, f"sqlite:///{tmp_path}/relay.db")
    assert (await post(relay, numbered_event("r", 0)))[0] == 200
    relay.config.write_text(relay.config.read_text().replace(SECRET, NEW_SECRET))
    relay.signal(signal.SIGHUP)
    await until(lambda: "config reloaded" in relay.output())

    async def settled() -> bool:  # each worker has the new secret (connections spread)
        answers = await asyncio.gather(
            *(post(relay, numbered_event("r", n), NEW_SECRET) for n in range(1, 9))
        )
        return {status for status, _ in answers} == {200}

    await until_async(settled, within=15)
    refused = await asyncio.gather(*(post(relay, numbered_event("r", 99)) for _ in range(8)))
    assert {status for status, _ in refused} == {401}


async def test_workers_exit_when_the_relay_process_is_killed(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    relay = await start_relay(tmp_path, fake_slack, processes, f"sqlite:///{tmp_path}/relay.db")
    workers = worker_pids(relay)
    private = socket_directory(workers[0])
    assert private.is_dir()
    await relay.kill()
    await until(lambda: not any(alive(pid) for pid in workers), within=10)
    # The killed relay could not remove its private socket directory: its workers did.
    assert not private.exists()
    # The port is free again: a new relay (without workers) takes it.
    restarted = RelayProcess(relay.config, relay.port, SECRET)
    processes.append(restarted)
    relay.config.write_text(relay.config.read_text().replace("workers: 2", "workers: 0"))
    await restarted.start()
    assert await restarted.post(numbered_event("z", 0)) == 200


async def test_a_taken_port_is_a_clear_error(
    tmp_path: Path, fake_slack: FakeSlack, processes: list[RelayProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the relay's check still sees it
        port = taken.getsockname()[1]
        config = write_config(tmp_path, fake_slack, port, f"sqlite:///{tmp_path}/relay.db")
        relay = RelayProcess(config, port, SECRET)
        processes.append(relay)
        with pytest.raises(AssertionError, match="exited at start"):
            await relay.start(timeout=20)
    assert await relay.wait() == 1
    assert "is another relay running?" in relay.output()


@pytest.mark.parametrize("workers", ["-1", "65", "two"])
def test_workers_must_be_a_small_count(tmp_path: Path, workers: str) -> None:
    config = tmp_path / "relay.yaml"
    config.write_text(
        f"server: {{workers: {workers}}}\noneroute: {{secrets: [s]}}\n"
        "destinations: {t: {type: console}}\nroutes: [{to: [t]}]\n"
    )
    with pytest.raises(ConfigError, match="workers"):
        load_config(config)


# --- in this process, with a stand-in store --------------------------------------------------


class FailingStore:
    """Stores the first event, then fails as it is told."""

    def __init__(self) -> None:
        self.failure: Exception | None = None
        self.stored: list[Incoming] = []

    async def accept(self, incoming: Incoming) -> Accepted:
        if self.failure is not None:
            raise self.failure
        self.stored.append(incoming)
        return Accepted(len(self.stored), duplicate=False)

    async def check_writable(self) -> None:
        pass


async def test_a_failing_store_is_503_from_the_worker_and_the_worker_goes_on(
    tmp_path: Path, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = load_config(write_config(tmp_path, fake_slack, port, "sqlite:///unused.db"))
    store = FailingStore()
    woken: list[tuple[str, ...]] = []
    workers = IngestWorkers(
        store, lambda names: woken.append(tuple(names)), Metrics(), WorkerOptions()
    )
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    relay_app = web.Application()
    relay_app.router.add_get("/healthz", healthz)
    await workers.start(config, 1, relay_app)
    relay = RelayProcess(tmp_path / "relay.yaml", port, SECRET)
    try:
        status, answer = await post(relay, numbered_event("f", 0))
        assert (status, answer["status"]) == (200, "accepted")
        assert woken == [("dest",)]
        assert json.loads(store.stored[0].body)["message"]["content"] == "f-msg-0"
        store.failure = StoreUnavailable("the disk is full")
        status, answer = await post(relay, numbered_event("f", 1))
        assert (status, answer["error"]) == (503, "unavailable")
        store.failure = RuntimeError("a bug")
        status, answer = await post(relay, numbered_event("f", 2))
        assert (status, answer["error"]) == (503, "unavailable")
        assert "storing an event from an ingest worker failed" in caplog.text
        store.failure = None
        status, answer = await post(relay, numbered_event("f", 3))
        assert (status, answer["event_id"]) == (200, 2)
        assert (await relay.get("/healthz"))[0] == 200
        assert len(woken) == 2
    finally:
        await workers.close()
    assert workers.pids == []


async def test_the_channel_frames_messages_however_the_bytes_arrive() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    got: list[Message] = []
    closed = asyncio.Event()
    receiver = Channel(got.append, closed.set)
    await loop.connect_accepted_socket(lambda: receiver, ours)
    big = bytes(range(256)) * 4096  # 1 MiB, as a webhook body may be
    messages: list[Message] = [("accept", n, big if n == 3 else b"x" * n, "e", None, ("d",), 1.5)
                               for n in range(6)]
    stream = b"".join(
        struct.pack("!I", len(p)) + p for p in (marshal.dumps(m) for m in messages)
    )
    theirs.setblocking(False)
    for start in range(0, len(stream), 7777):  # frames split anywhere
        await loop.sock_sendall(theirs, stream[start : start + 7777])
    await until(lambda: len(got) == 6)
    assert got == messages
    await loop.sock_sendall(theirs, struct.pack("!I", MAX_MESSAGE + 1))  # nobody sends that
    await asyncio.wait_for(closed.wait(), 5)
    assert receiver.send(("late",)) is False
    theirs.close()


async def test_what_was_sent_before_close_arrives() -> None:
    """A worker's last counts are sent just before it closes its channel."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    got: list[Message] = []
    closed = asyncio.Event()
    receiver, sender = Channel(got.append, closed.set), Channel(lambda m: None, lambda: None)
    await loop.connect_accepted_socket(lambda: receiver, ours)
    await loop.connect_accepted_socket(lambda: sender, theirs)
    assert sender.send(("counts", {("newMessage", "accepted"): 3.0}))
    sender.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert got == [("counts", {("newMessage", "accepted"): 3.0})]


async def test_a_reload_while_a_worker_starts_reaches_it(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    port = free_port()
    old = load_config(write_config(tmp_path, fake_slack, port, "sqlite:///unused.db"))
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = load_config(
        write_config(new_dir, fake_slack, port, "sqlite:///unused.db", secret=NEW_SECRET)
    )
    workers = IngestWorkers(FailingStore(), lambda names: None, Metrics(), WorkerOptions())
    spawn = workers._spawn

    async def spawn_then_reload(worker: Any) -> None:  # a SIGHUP while the worker starts
        await spawn(worker)  # (service.py appends configure to relay.reloaded for this)
        workers.configure(new)

    workers._spawn = spawn_then_reload  # type: ignore[method-assign]
    await workers.start(old, 1, web.Application())
    relay = RelayProcess(tmp_path / "relay.yaml", port, SECRET)
    try:
        status, _ = await post(relay, numbered_event("r", 0), secret=NEW_SECRET)
        assert status == 200  # 401: the worker still verifies with the old secret
    finally:
        await workers.close()


async def test_a_stopped_worker_is_killed_and_started_again(
    tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_module, "PING_EVERY", 0.3)
    monkeypatch.setattr(workers_module, "SILENT_FOR", 3.0)  # a loaded CI stalls loops
    port = free_port()
    config = load_config(write_config(tmp_path, fake_slack, port, "sqlite:///unused.db"))
    workers = IngestWorkers(FailingStore(), lambda names: None, Metrics(), WorkerOptions())
    await workers.start(config, 1, web.Application())
    relay = RelayProcess(tmp_path / "relay.yaml", port, SECRET)
    try:
        (stopped,) = workers.pids
        os.kill(stopped, signal.SIGSTOP)  # alive, silent: its connections would wait forever
        await until(lambda: workers.pids not in ([], [stopped]), within=30)
        assert not alive(stopped)
        assert (await post(relay, numbered_event("s", 0)))[0] == 200
        assert workers.metrics.ingest_worker_restarts._value.get() == 1
    finally:
        await workers.close()


def test_a_worker_removes_the_socket_directory_only_when_nobody_serves_it(
    tmp_path: Path,
) -> None:
    """A worker whose relay is gone removes the relay's private directory, but not while a
    relay still listens on its socket (a channel can close for other reasons)."""
    private = tmp_path / "relay-private"
    private.mkdir()
    path = private / "relay.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    try:
        worker_module._remove_if_abandoned(str(path))
        assert path.exists()  # served: kept
    finally:
        server.close()  # as a killed relay leaves it: the file, and nobody listening
    worker_module._remove_if_abandoned(str(path))
    assert not private.exists()
    worker_module._remove_if_abandoned(str(path))  # gone already: nothing to do, no error
