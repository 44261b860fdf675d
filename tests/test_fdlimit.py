"""Out of file descriptors: one log line per episode (relay/ingest/fdlimit.py), not the
thousands of tracebacks asyncio's accept loop writes by itself; the relay recovers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.ingest.fdlimit import FDExhaustionLog
from relay.ingest.signature import sign
from tests.process import free_port
from tests.waiting import until

SECRET = "fdlimit-test-secret"
OPEN_FILES = 32  # the relay needs about 12 at rest
Recorded = list[dict[str, Any]]


def emfile(message: str = "socket.accept() out of system resource") -> dict[str, Any]:
    return {"message": message, "exception": OSError(24, "Too many open files")}


@contextlib.contextmanager
def installed(quiet: float, remind_first: float) -> Iterator[tuple[FDExhaustionLog, Recorded]]:
    """An FDExhaustionLog on a fresh loop whose previous handler records what it gets."""
    loop = asyncio.new_event_loop()
    passed: Recorded = []
    loop.set_exception_handler(lambda loop, context: passed.append(context))
    handler = FDExhaustionLog(quiet=quiet, remind_first=remind_first)
    handler.install(loop)
    try:
        yield handler, passed
    finally:
        handler.uninstall()
        loop.close()


def relay_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "relay.ingest"]


def test_one_line_then_reminders_at_growing_intervals_other_errors_pass_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "relay.ingest")
    with installed(quiet=60, remind_first=0.1) as (handler, passed):
        loop = handler._loop
        assert loop is not None
        # The handler reads the loop's clock: the test moves it, so a burst is a burst
        # however long a loaded machine takes over it (a real 0.1 s could pass within it).
        now = loop.time()
        loop.time = lambda: now  # type: ignore[method-assign]

        async def episode() -> None:
            nonlocal now
            for _ in range(5000):
                loop.call_exception_handler(emfile())
            other = {"message": "boom", "exception": ValueError("x")}
            loop.call_exception_handler(other)
            loop.call_exception_handler({"message": "reset", "exception": OSError(104, "reset")})
            assert len(passed) == 2 and passed[0] is other  # anything else: as before
            lines = relay_lines(caplog)
            assert len(lines) == 1 and "out of file descriptors (EMFILE" in lines[0], lines
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            assert "LimitNOFILE" in lines[0] and f"Open-file limit {limit}" in lines[0]
            # Still failing: a reminder at the first error after 0.1 s, then after 0.2 s.
            now += 0.09
            loop.call_exception_handler(emfile())
            assert len(relay_lines(caplog)) == 1  # not yet
            now += 0.06
            for _ in range(4):
                loop.call_exception_handler(emfile())
            lines = relay_lines(caplog)
            assert len(lines) == 2 and lines[1].startswith("still out of file descriptors")
            assert "5001 more failures" in lines[1]  # the burst's 4999, one early, this one
            now += 0.19
            loop.call_exception_handler(emfile())
            assert len(relay_lines(caplog)) == 2  # not yet: the interval has doubled
            now += 0.06
            loop.call_exception_handler(emfile())
            lines = relay_lines(caplog)
            assert len(lines) == 3 and "5 more failures" in lines[2], lines

        loop.run_until_complete(episode())


def test_quiet_ends_an_episode_and_the_next_error_starts_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "relay.ingest")
    with installed(quiet=0.2, remind_first=3600) as (handler, _):
        loop = handler._loop
        assert loop is not None

        async def two_episodes() -> None:
            for _ in range(3):
                loop.call_exception_handler(emfile())
            await until(lambda: len(relay_lines(caplog)) == 2, within=10)
            assert "episode over (3 failures" in relay_lines(caplog)[1]
            loop.call_exception_handler(emfile("accept failed"))
            lines = relay_lines(caplog)
            assert len(lines) == 3 and lines[2].startswith("out of file descriptors"), lines

        loop.run_until_complete(two_episodes())


def test_uninstall_gives_the_loop_its_previous_handler_back() -> None:
    with installed(quiet=60, remind_first=60) as (handler, passed):
        loop = handler._loop
        assert loop is not None and loop.get_exception_handler() is handler
        handler.uninstall()
        loop.call_exception_handler(emfile())
        assert len(passed) == 1


# --- the real process ---------------------------------------------------------------------------


def limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


async def post(port: int, n: int) -> int:
    body = json.dumps({"event": "newMessage", "n": n}).encode()
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}/webhooks/oneroute", data=body,
        headers={"x-oneroute-signature": sign(SECRET, body)},
    ) as response:
        return response.status


async def answered(port: int, n: int, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncio.wait_for(post(port, n), timeout=5)
        except (aiohttp.ClientError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_relay_out_of_file_descriptors_logs_one_line_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "relay.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f'oneroute: {{secrets: ["{SECRET}"]}}\nstorage: sqlite:///{tmp_path}/relay.db\n'
        "destinations: {out: {type: console}}\nroutes: [{to: [out]}]\n"
    )
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - started, not waited on
            [sys.executable, "-m", "relay", "serve", "-c", str(config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=limit_open_files,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    clients: list[socket.socket] = []
    try:
        assert await answered(port, 0, within=20) == 200, log.read_text()
        for _ in range(3 * OPEN_FILES):  # far more connections than the relay may open
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            clients.append(client)
        await asyncio.sleep(1.5)  # asyncio retries accept() every second meanwhile
        for client in clients:
            client.close()
        clients.clear()
        assert await answered(port, 1, within=20) == 200, log.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        for client in clients:
            client.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text(errors="replace")
    mentions = [line for line in text.splitlines() if "Too many open files" in line]
    assert len(mentions) == 1, f"{len(mentions)} lines about it:\n{text[-3000:]}"
    assert "out of file descriptors (EMFILE" in mentions[0]
    assert f"Open-file limit {OPEN_FILES}" in mentions[0]
    assert "Traceback" not in text, text[-3000:]
